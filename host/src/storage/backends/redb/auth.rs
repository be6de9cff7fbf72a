//! The auth tables in redb: users, projects and robots as JSON records by name; members
//! keyed by `(project, user)` with the role's name as the value.

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};

use super::{RedbTx, backend};
use crate::storage::meta::schema::{Component, Migration};
use crate::storage::meta::{self, KEY_END, MetaResult, Reader, encode};
use crate::storage::store::StoreResult;
use crate::storage::tables::auth::{
    AuthRead, AuthWrite, FailureWindow, ProjectRecord, RobotRecord, Role, UserRecord,
};

const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
const PROJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("projects");
const MEMBERS: TableDefinition<(&str, &str), &str> = TableDefinition::new("members");
const ROBOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("robots");
/// Counters: `revision`.
const STATE: TableDefinition<&str, u64> = TableDefinition::new("auth_state");
/// Failed logins by key: (window start in ms, failures).
const FAILURES: TableDefinition<&str, (u64, u32)> = TableDefinition::new("login_failures");

/// The auth tables, versioned on their own (the same component and version as before
/// they moved behind the storage interface, so existing data directories open as they are).
pub(super) const SCHEMA: Component = Component {
    name: "auth",
    current: 3,
    migrations: &[
        Migration {
            from: 0,
            apply: create_v1,
        },
        Migration {
            from: 1,
            apply: add_revision,
        },
        Migration {
            from: 2,
            apply: add_login_failures,
        },
    ],
};

fn create_v1(tx: &WriteTransaction) -> MetaResult<()> {
    tx.open_table(USERS)?;
    tx.open_table(PROJECTS)?;
    tx.open_table(MEMBERS)?;
    tx.open_table(ROBOTS)?;
    Ok(())
}

/// Version 2: the revocation counter every node watches.
fn add_revision(tx: &WriteTransaction) -> MetaResult<()> {
    tx.open_table(STATE)?;
    Ok(())
}

/// Version 3: failed logins, shared by every node (they were counted per process).
fn add_login_failures(tx: &WriteTransaction) -> MetaResult<()> {
    tx.open_table(FAILURES)?;
    Ok(())
}

fn members_of<T: Reader>(tx: &T, project: &str) -> StoreResult<Vec<(String, Role)>> {
    let table = tx.open(MEMBERS)?;
    let mut out = Vec::new();
    for entry in table
        .range((project, "")..(project, KEY_END))
        .map_err(backend)?
    {
        let (k, v) = entry.map_err(backend)?;
        // A role this build does not know grants nothing.
        if let Some(role) = Role::parse(v.value()) {
            out.push((k.value().1.to_owned(), role));
        }
    }
    Ok(out)
}

impl<T: Reader> AuthRead for RedbTx<T> {
    fn user(&self, name: &str) -> StoreResult<Option<UserRecord>> {
        Ok(meta::get_named(&self.0, USERS, "users", name)?)
    }

    fn users(&self) -> StoreResult<Vec<(String, UserRecord)>> {
        Ok(meta::list_named(&self.0, USERS, "users")?)
    }

    fn user_count(&self) -> StoreResult<u64> {
        self.0.open(USERS)?.len().map_err(backend)
    }

    fn project(&self, name: &str) -> StoreResult<Option<ProjectRecord>> {
        Ok(meta::get_named(&self.0, PROJECTS, "projects", name)?)
    }

    fn projects(&self) -> StoreResult<Vec<ProjectRecord>> {
        let named: Vec<(String, ProjectRecord)> = meta::list_named(&self.0, PROJECTS, "projects")?;
        Ok(named.into_iter().map(|(_, record)| record).collect())
    }

    fn role(&self, project: &str, user: &str) -> StoreResult<Option<Role>> {
        Ok(self
            .0
            .open(MEMBERS)?
            .get((project, user))
            .map_err(backend)?
            .and_then(|v| Role::parse(v.value())))
    }

    fn members(&self, project: &str) -> StoreResult<Vec<(String, Role)>> {
        members_of(&self.0, project)
    }

    fn robot(&self, name: &str) -> StoreResult<Option<RobotRecord>> {
        Ok(meta::get_named(&self.0, ROBOTS, "robots", name)?)
    }

    fn robots(&self) -> StoreResult<Vec<(String, RobotRecord)>> {
        Ok(meta::list_named(&self.0, ROBOTS, "robots")?)
    }

    fn login_failures(&self, key: &str) -> StoreResult<Option<FailureWindow>> {
        Ok(self.0.open(FAILURES)?.get(key).map_err(backend)?.map(|v| {
            let (started, failures) = v.value();
            FailureWindow { started, failures }
        }))
    }

    fn revision(&self) -> StoreResult<u64> {
        Ok(self
            .0
            .open(STATE)?
            .get("revision")
            .map_err(backend)?
            .map(|v| v.value())
            .unwrap_or(0))
    }
}

impl AuthWrite for RedbTx<WriteTransaction> {
    fn put_user(&self, name: &str, record: &UserRecord) -> StoreResult<()> {
        self.0
            .open_table(USERS)
            .map_err(backend)?
            .insert(name, encode(record).as_slice())
            .map_err(backend)?;
        Ok(())
    }

    fn remove_user(&self, name: &str) -> StoreResult<bool> {
        let existed = self
            .0
            .open_table(USERS)
            .map_err(backend)?
            .remove(name)
            .map_err(backend)?
            .is_some();
        // Memberships are keyed by project first: finding one user's takes a scan, which
        // deleting a user can afford.
        let mut members = self.0.open_table(MEMBERS).map_err(backend)?;
        let mut theirs = Vec::new();
        for entry in members.iter().map_err(backend)? {
            let (k, _) = entry.map_err(backend)?;
            let (project, user) = k.value();
            if user == name {
                theirs.push(project.to_owned());
            }
        }
        for project in theirs {
            members.remove((project.as_str(), name)).map_err(backend)?;
        }
        Ok(existed)
    }

    fn put_project(&self, record: &ProjectRecord) -> StoreResult<()> {
        self.0
            .open_table(PROJECTS)
            .map_err(backend)?
            .insert(record.name.as_str(), encode(record).as_slice())
            .map_err(backend)?;
        Ok(())
    }

    fn remove_project(&self, name: &str) -> StoreResult<bool> {
        let existed = self
            .0
            .open_table(PROJECTS)
            .map_err(backend)?
            .remove(name)
            .map_err(backend)?
            .is_some();
        let mut members = self.0.open_table(MEMBERS).map_err(backend)?;
        // Every key of the project, whatever its value says (an unknown role included).
        let mut users = Vec::new();
        for entry in members
            .range((name, "")..(name, KEY_END))
            .map_err(backend)?
        {
            users.push(entry.map_err(backend)?.0.value().1.to_owned());
        }
        for user in users {
            members.remove((name, user.as_str())).map_err(backend)?;
        }
        Ok(existed)
    }

    fn set_role(&self, project: &str, user: &str, role: Role) -> StoreResult<()> {
        self.0
            .open_table(MEMBERS)
            .map_err(backend)?
            .insert((project, user), role.as_str())
            .map_err(backend)?;
        Ok(())
    }

    fn remove_member(&self, project: &str, user: &str) -> StoreResult<bool> {
        Ok(self
            .0
            .open_table(MEMBERS)
            .map_err(backend)?
            .remove((project, user))
            .map_err(backend)?
            .is_some())
    }

    fn put_robot(&self, name: &str, record: &RobotRecord) -> StoreResult<()> {
        self.0
            .open_table(ROBOTS)
            .map_err(backend)?
            .insert(name, encode(record).as_slice())
            .map_err(backend)?;
        Ok(())
    }

    fn put_login_failures(&self, key: &str, window: &FailureWindow) -> StoreResult<()> {
        self.0
            .open_table(FAILURES)
            .map_err(backend)?
            .insert(key, (window.started, window.failures))
            .map_err(backend)?;
        Ok(())
    }

    fn remove_login_failures(&self, key: &str) -> StoreResult<bool> {
        Ok(self
            .0
            .open_table(FAILURES)
            .map_err(backend)?
            .remove(key)
            .map_err(backend)?
            .is_some())
    }

    fn remove_login_failures_before(&self, started: u64) -> StoreResult<u64> {
        let mut table = self.0.open_table(FAILURES).map_err(backend)?;
        Ok(table
            .extract_if(|_, (window_started, _)| window_started < started)
            .map_err(backend)?
            .count() as u64)
    }

    fn bump_revision(&self) -> StoreResult<u64> {
        let next = self.revision()? + 1;
        self.0
            .open_table(STATE)
            .map_err(backend)?
            .insert("revision", next)
            .map_err(backend)?;
        Ok(next)
    }

    fn remove_robot(&self, name: &str) -> StoreResult<bool> {
        Ok(self
            .0
            .open_table(ROBOTS)
            .map_err(backend)?
            .remove(name)
            .map_err(backend)?
            .is_some())
    }
}
