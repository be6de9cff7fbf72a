//! Table `robots`: robot accounts for CI, scoped to projects with explicit actions,
//! optionally expiring. The secret is shown once at creation and stored only as a digest.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::principal::RobotGrant;
use super::{AuthResult, AuthStoreError};
use crate::storage::meta::{MetaError, MetaResult, Reader, decode, encode};

const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("robots");

/// Robot account names start with this, so they can never collide with a username.
pub const PREFIX: &str = "robot$";

/// A stored robot account.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RobotRecord {
    /// sha256 of the secret (see `passwords::secret_digest`).
    pub secret_digest: String,
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// What it may do, per project.
    pub grants: Vec<RobotGrant>,
    /// When it stops working (ms since the epoch), if ever.
    pub expires_at: Option<u64>,
    /// Revoked robots cannot authenticate.
    pub disabled: bool,
    /// Who created it.
    pub created_by: String,
    /// When (ms since the epoch).
    pub created_at: u64,
}

pub(super) fn create(tx: &WriteTransaction) -> MetaResult<()> {
    tx.open_table(TABLE)?;
    Ok(())
}

/// The full name (`robot$<short>`) for a short name, after checking it.
pub fn full_name(short: &str) -> AuthResult<String> {
    let short = short.strip_prefix(PREFIX).unwrap_or(short);
    let b = short.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-' | b'+')
        });
    if !ok {
        return Err(AuthStoreError::Invalid(format!(
            "invalid robot name {:?}: 1-64 lowercase letters, digits, '.', '_', '-' or '+'",
            short.chars().take(80).collect::<String>()
        )));
    }
    Ok(format!("{PREFIX}{short}"))
}

/// Creates a robot account.
pub fn insert(tx: &WriteTransaction, name: &str, record: &RobotRecord) -> AuthResult<()> {
    let mut table = tx.open_table(TABLE).map_err(MetaError::from)?;
    if table.get(name).map_err(MetaError::from)?.is_some() {
        return Err(AuthStoreError::Conflict(format!(
            "robot account {name} exists already"
        )));
    }
    table
        .insert(name, encode(record).as_slice())
        .map_err(MetaError::from)?;
    Ok(())
}

/// Replaces a robot's record.
pub fn put(tx: &WriteTransaction, name: &str, record: &RobotRecord) -> MetaResult<()> {
    tx.open_table(TABLE)?
        .insert(name, encode(record).as_slice())?;
    Ok(())
}

/// Removes a robot; returns whether it existed.
pub fn remove(tx: &WriteTransaction, name: &str) -> MetaResult<bool> {
    Ok(tx.open_table(TABLE)?.remove(name)?.is_some())
}

/// A robot's record.
pub fn get(tx: &impl Reader, name: &str) -> MetaResult<Option<RobotRecord>> {
    match tx.open(TABLE)?.get(name)? {
        Some(v) => Ok(Some(decode("robots", v.value())?)),
        None => Ok(None),
    }
}

/// Every robot, by name.
pub fn list(tx: &impl Reader) -> MetaResult<Vec<(String, RobotRecord)>> {
    let table = tx.open(TABLE)?;
    let mut out = Vec::new();
    for entry in table.iter()? {
        let (k, v) = entry?;
        out.push((k.value().to_owned(), decode("robots", v.value())?));
    }
    Ok(out)
}
