//! Table `users`: local accounts with argon2id password hashes.

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{AuthResult, AuthStoreError, passwords};
use crate::storage::meta::{MetaResult, Reader, decode, encode, now_millis};

const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("users");

/// A stored user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UserRecord {
    /// argon2id PHC string.
    pub password_hash: String,
    /// System administrator.
    pub admin: bool,
    /// Disabled users cannot log in; their tokens stop working.
    pub disabled: bool,
    /// When created (ms since the epoch).
    pub created_at: u64,
    /// When the password last changed: refresh tokens issued before are void.
    pub password_changed_at: u64,
}

pub(super) fn create(tx: &WriteTransaction) -> MetaResult<()> {
    tx.open_table(TABLE)?;
    Ok(())
}

/// Checks a username: 1–64 characters of letters, digits, `.`, `_`, `-`, starting with a
/// letter or digit. (`$` is reserved for robot accounts.)
pub fn check_name(name: &str) -> AuthResult<()> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        && name != "anonymous";
    if ok {
        Ok(())
    } else {
        Err(AuthStoreError::Invalid(format!(
            "invalid username {:?}: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            name.chars().take(80).collect::<String>()
        )))
    }
}

/// Creates a user.
pub fn insert(
    tx: &WriteTransaction,
    name: &str,
    password: &str,
    admin: bool,
) -> AuthResult<UserRecord> {
    check_name(name)?;
    passwords::check_policy(password).map_err(AuthStoreError::Invalid)?;
    let mut table = tx
        .open_table(TABLE)
        .map_err(crate::storage::meta::MetaError::from)?;
    if table
        .get(name)
        .map_err(crate::storage::meta::MetaError::from)?
        .is_some()
    {
        return Err(AuthStoreError::Conflict(format!(
            "user {name} exists already"
        )));
    }
    let now = now_millis();
    let record = UserRecord {
        password_hash: passwords::hash(password),
        admin,
        disabled: false,
        created_at: now,
        password_changed_at: now,
    };
    table
        .insert(name, encode(&record).as_slice())
        .map_err(crate::storage::meta::MetaError::from)?;
    Ok(record)
}

/// Replaces a user's record.
pub fn put(tx: &WriteTransaction, name: &str, record: &UserRecord) -> MetaResult<()> {
    tx.open_table(TABLE)?
        .insert(name, encode(record).as_slice())?;
    Ok(())
}

/// Removes a user; returns whether it existed.
pub fn remove(tx: &WriteTransaction, name: &str) -> MetaResult<bool> {
    Ok(tx.open_table(TABLE)?.remove(name)?.is_some())
}

/// A user's record.
pub fn get(tx: &impl Reader, name: &str) -> MetaResult<Option<UserRecord>> {
    match tx.open(TABLE)?.get(name)? {
        Some(v) => Ok(Some(decode("users", v.value())?)),
        None => Ok(None),
    }
}

/// Every user, by name.
pub fn list(tx: &impl Reader) -> MetaResult<Vec<(String, UserRecord)>> {
    let table = tx.open(TABLE)?;
    let mut out = Vec::new();
    for entry in table.iter()? {
        let (k, v) = entry?;
        out.push((k.value().to_owned(), decode("users", v.value())?));
    }
    Ok(out)
}

/// Number of users.
pub fn count(tx: &impl Reader) -> MetaResult<u64> {
    Ok(tx.open(TABLE)?.len()?)
}
