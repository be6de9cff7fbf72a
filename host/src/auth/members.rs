//! Table `members`: each user's role in each project.

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::access::Role;
use crate::storage::meta::{KEY_END, MetaResult, Reader};

const TABLE: TableDefinition<(&str, &str), &str> = TableDefinition::new("members");

pub(super) fn create(tx: &WriteTransaction) -> MetaResult<()> {
    tx.open_table(TABLE)?;
    Ok(())
}

/// Gives `user` `role` in `project` (replacing any earlier role).
pub fn set(tx: &WriteTransaction, project: &str, user: &str, role: Role) -> MetaResult<()> {
    tx.open_table(TABLE)?
        .insert((project, user), role.as_str())?;
    Ok(())
}

/// Removes `user` from `project`; returns whether they were a member.
pub fn remove(tx: &WriteTransaction, project: &str, user: &str) -> MetaResult<bool> {
    Ok(tx.open_table(TABLE)?.remove((project, user))?.is_some())
}

/// `user`'s role in `project`.
pub fn role(tx: &impl Reader, project: &str, user: &str) -> MetaResult<Option<Role>> {
    Ok(tx
        .open(TABLE)?
        .get((project, user))?
        .and_then(|v| Role::parse(v.value())))
}

/// The members of `project` with their roles, by name.
pub fn list(tx: &impl Reader, project: &str) -> MetaResult<Vec<(String, Role)>> {
    let table = tx.open(TABLE)?;
    let mut out = Vec::new();
    for entry in table.range((project, "")..(project, KEY_END))? {
        let (k, v) = entry?;
        if let Some(role) = Role::parse(v.value()) {
            out.push((k.value().1.to_owned(), role));
        }
    }
    Ok(out)
}

/// Removes every membership of `project` (when it is deleted).
pub fn remove_project(tx: &WriteTransaction, project: &str) -> MetaResult<()> {
    for (user, _) in list(tx, project)? {
        remove(tx, project, &user)?;
    }
    Ok(())
}

/// Removes every membership of `user` (when the user is deleted).
pub fn remove_user(tx: &WriteTransaction, user: &str) -> MetaResult<()> {
    let keys: Vec<(String, String)> = {
        let table = tx.open_table(TABLE)?;
        let mut keys = Vec::new();
        for entry in table.iter()? {
            let (k, _) = entry?;
            let (p, u) = k.value();
            if u == user {
                keys.push((p.to_owned(), u.to_owned()));
            }
        }
        keys
    };
    for (p, u) in keys {
        remove(tx, &p, &u)?;
    }
    Ok(())
}
