//! The user service: local accounts with argon2id password hashes (table `users`), their
//! creation, administration flags, passwords and deletion.
//!
//! Every change that can take access away forgets this node's cached logins.

use super::authenticate::AccessControl;
use super::{AuthResult, AuthStoreError, passwords};
use crate::storage::store::{Durability, now_millis};

pub use crate::storage::tables::auth::UserRecord;

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

fn no_user(name: &str) -> AuthStoreError {
    AuthStoreError::NotFound(format!("no user {name}"))
}

/// Hashes on a blocking thread: argon2 takes tens of milliseconds of CPU.
async fn hash(password: &str) -> AuthResult<String> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || passwords::hash(&password))
        .await
        .map_err(|e| {
            AuthStoreError::Store(crate::storage::store::StoreError::Backend(e.to_string()))
        })
}

impl AccessControl {
    /// Creates user `name`; refused if the name or password breaks the rules or the user
    /// exists.
    pub async fn create_user(
        &self,
        name: &str,
        password: &str,
        admin: bool,
    ) -> AuthResult<UserRecord> {
        check_name(name)?;
        passwords::check_policy(password).map_err(AuthStoreError::Invalid)?;
        let now = now_millis();
        let record = UserRecord {
            password_hash: hash(password).await?,
            admin,
            disabled: false,
            created_at: now,
            password_changed_at: now,
        };
        let name = name.to_owned();
        self.store()
            .write(move |tx| -> AuthResult<UserRecord> {
                if tx.auth().user(&name)?.is_some() {
                    return Err(AuthStoreError::Conflict(format!(
                        "user {name} exists already"
                    )));
                }
                tx.auth().put_user(&name, &record)?;
                Ok(record.clone())
            })
            .await
    }

    /// User `name`.
    pub async fn user(&self, name: &str) -> AuthResult<Option<UserRecord>> {
        let name = name.to_owned();
        self.store()
            .read(move |tx| Ok(tx.auth().user(&name)?))
            .await
    }

    /// Every user with its name, in name order.
    pub async fn users(&self) -> AuthResult<Vec<(String, UserRecord)>> {
        self.store().read(|tx| Ok(tx.auth().users()?)).await
    }

    /// Grants or withdraws administration, disables or enables user `name`.
    pub async fn update_user(
        &self,
        name: &str,
        admin: Option<bool>,
        disabled: Option<bool>,
    ) -> AuthResult<UserRecord> {
        let owned = name.to_owned();
        let record = self
            .store()
            .write(move |tx| -> AuthResult<UserRecord> {
                let mut r = tx.auth().user(&owned)?.ok_or_else(|| no_user(&owned))?;
                if let Some(admin) = admin {
                    r.admin = admin;
                }
                if let Some(disabled) = disabled {
                    r.disabled = disabled;
                }
                tx.auth().put_user(&owned, &r)?;
                tx.auth().bump_revision()?;
                Ok(r)
            })
            .await?;
        self.invalidate_cached_logins();
        Ok(record)
    }

    /// Deletes user `name` and its memberships.
    pub async fn delete_user(&self, name: &str) -> AuthResult<()> {
        let owned = name.to_owned();
        let found = self
            .store()
            .write(move |tx| -> AuthResult<bool> {
                tx.auth().bump_revision()?;
                Ok(tx.auth().remove_user(&owned)?)
            })
            .await?;
        if !found {
            return Err(no_user(name));
        }
        self.invalidate_cached_logins();
        Ok(())
    }

    /// Sets user `name`'s password to `new`. With `old`, the current password must match
    /// it (a user changing their own); refresh tokens issued before stop working.
    pub async fn change_password(
        &self,
        name: &str,
        old: Option<&str>,
        new: &str,
    ) -> AuthResult<()> {
        passwords::check_policy(new).map_err(AuthStoreError::Invalid)?;
        let current = self.user(name).await?.ok_or_else(|| no_user(name))?;
        if let Some(old) = old {
            let (old, stored) = (old.to_owned(), current.password_hash.clone());
            let matches = tokio::task::spawn_blocking(move || passwords::verify(&old, &stored))
                .await
                .unwrap_or(false);
            if !matches {
                return Err(AuthStoreError::Forbidden(
                    "the old password is wrong".into(),
                ));
            }
        }
        let new_hash = hash(new).await?;
        let owned = name.to_owned();
        self.store()
            .write(move |tx| -> AuthResult<()> {
                let mut r = tx.auth().user(&owned)?.ok_or_else(|| no_user(&owned))?;
                // The old password was checked against this hash: if it changed since,
                // someone else changed the password in between, and theirs stands.
                if r.password_hash != current.password_hash {
                    return Err(AuthStoreError::Conflict(format!(
                        "the password of {owned} changed meanwhile; try again"
                    )));
                }
                r.password_hash = new_hash.clone();
                r.password_changed_at = now_millis();
                tx.auth().put_user(&owned, &r)?;
                tx.auth().bump_revision()?;
                Ok(())
            })
            .await?;
        self.invalidate_cached_logins();
        Ok(())
    }

    /// Whether any user exists. Blocking: for the bootstrap.
    pub(super) fn has_users(&self) -> AuthResult<bool> {
        self.store()
            .read_blocking(|tx| Ok::<_, AuthStoreError>(tx.auth().user_count()? > 0))
    }

    /// Creates `admin` with `password` if there is no user at all; false if there were
    /// users already. Blocking: for the bootstrap.
    pub(super) fn create_first_admin(&self, password: &str) -> AuthResult<bool> {
        let now = now_millis();
        let record = UserRecord {
            password_hash: passwords::hash(password),
            admin: true,
            disabled: false,
            created_at: now,
            password_changed_at: now,
        };
        // Two nodes starting on an empty database together create one administrator.
        self.store()
            .write_blocking(Durability::Immediate, |tx| -> AuthResult<bool> {
                if tx.auth().user_count()? > 0 {
                    return Ok(false);
                }
                tx.auth().put_user("admin", &record)?;
                Ok(true)
            })
    }
}
