//! Table `projects`: the first component of every repository name, public or private.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{AuthResult, AuthStoreError};
use crate::storage::meta::{self, MetaError, MetaResult, Reader, encode, now_millis};

const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("projects");

/// A project.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProjectRecord {
    /// Its name (the key, repeated so a record stands alone).
    pub name: String,
    /// Anyone, even anonymous, may pull.
    pub public: bool,
    /// Who created it.
    pub created_by: String,
    /// When (ms since the epoch).
    pub created_at: u64,
}

pub(super) fn create(tx: &WriteTransaction) -> MetaResult<()> {
    tx.open_table(TABLE)?;
    Ok(())
}

/// Checks a project name: one component of the repository-name grammar, at most 63
/// characters.
pub fn check_name(name: &str) -> AuthResult<()> {
    if name.len() <= 63 && crate::names::component_is_valid(name) {
        Ok(())
    } else {
        Err(AuthStoreError::Invalid(format!(
            "invalid project name {:?}: lowercase letters and digits, separated by '.', '_', '__' or '-', at most 63 characters",
            name.chars().take(80).collect::<String>()
        )))
    }
}

/// Creates a project.
pub fn insert(
    tx: &WriteTransaction,
    name: &str,
    public: bool,
    created_by: &str,
) -> AuthResult<ProjectRecord> {
    check_name(name)?;
    let mut table = tx.open_table(TABLE).map_err(MetaError::from)?;
    if table.get(name).map_err(MetaError::from)?.is_some() {
        return Err(AuthStoreError::Conflict(format!(
            "project {name} exists already"
        )));
    }
    let record = ProjectRecord {
        name: name.to_owned(),
        public,
        created_by: created_by.to_owned(),
        created_at: now_millis(),
    };
    table
        .insert(name, encode(&record).as_slice())
        .map_err(MetaError::from)?;
    Ok(record)
}

/// Replaces a project's record.
pub fn put(tx: &WriteTransaction, record: &ProjectRecord) -> MetaResult<()> {
    tx.open_table(TABLE)?
        .insert(record.name.as_str(), encode(record).as_slice())?;
    Ok(())
}

/// Removes a project record; returns whether it existed.
pub fn remove(tx: &WriteTransaction, name: &str) -> MetaResult<bool> {
    Ok(tx.open_table(TABLE)?.remove(name)?.is_some())
}

/// A project.
pub fn get(tx: &impl Reader, name: &str) -> MetaResult<Option<ProjectRecord>> {
    meta::get_named(tx, TABLE, "projects", name)
}

/// Every project, by name.
pub fn list(tx: &impl Reader) -> MetaResult<Vec<ProjectRecord>> {
    let named = meta::list_named(tx, TABLE, "projects")?;
    Ok(named.into_iter().map(|(_, record)| record).collect())
}
