//! The robot-account service: accounts for CI (table `robots`), scoped to projects with
//! explicit actions, optionally expiring. The secret is shown once at creation and stored
//! only as a digest.

use super::authenticate::AccessControl;
use super::{AuthResult, AuthStoreError};

pub use crate::storage::tables::auth::RobotRecord;

/// Robot account names start with this, so they can never collide with a username.
pub const PREFIX: &str = "robot$";

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

fn no_robot(name: &str) -> AuthStoreError {
    AuthStoreError::NotFound(format!("no robot account {name}"))
}

impl AccessControl {
    /// Creates robot account `name` (a full name); refused if it exists.
    pub async fn create_robot(&self, name: &str, record: &RobotRecord) -> AuthResult<()> {
        let (name, record) = (name.to_owned(), record.clone());
        self.store()
            .write(move |tx| -> AuthResult<()> {
                if tx.auth().robot(&name)?.is_some() {
                    return Err(AuthStoreError::Conflict(format!(
                        "robot account {name} exists already"
                    )));
                }
                tx.auth().put_robot(&name, &record)?;
                Ok(())
            })
            .await
    }

    /// Robot account `name`.
    pub async fn robot(&self, name: &str) -> AuthResult<Option<RobotRecord>> {
        let name = name.to_owned();
        self.store()
            .read(move |tx| Ok(tx.auth().robot(&name)?))
            .await
    }

    /// Every robot account with its name, in name order.
    pub async fn robots(&self) -> AuthResult<Vec<(String, RobotRecord)>> {
        self.store().read(|tx| Ok(tx.auth().robots()?)).await
    }

    /// Revokes (true) or restores (false) robot account `name`.
    pub async fn set_robot_disabled(&self, name: &str, disabled: bool) -> AuthResult<RobotRecord> {
        let owned = name.to_owned();
        let record = self
            .store()
            .write(move |tx| -> AuthResult<RobotRecord> {
                let mut record = tx.auth().robot(&owned)?.ok_or_else(|| no_robot(&owned))?;
                record.disabled = disabled;
                tx.auth().put_robot(&owned, &record)?;
                Ok(record)
            })
            .await?;
        self.invalidate_cached_logins();
        Ok(record)
    }

    /// Deletes robot account `name` for good.
    pub async fn delete_robot(&self, name: &str) -> AuthResult<()> {
        let owned = name.to_owned();
        let found = self
            .store()
            .write(move |tx| -> AuthResult<bool> { Ok(tx.auth().remove_robot(&owned)?) })
            .await?;
        if !found {
            return Err(no_robot(name));
        }
        self.invalidate_cached_logins();
        Ok(())
    }
}
