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
                tx.auth().bump_revision()?;
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
            .write(move |tx| -> AuthResult<bool> {
                tx.auth().bump_revision()?;
                Ok(tx.auth().remove_robot(&owned)?)
            })
            .await?;
        if !found {
            return Err(no_robot(name));
        }
        self.invalidate_cached_logins();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::auth::{REVOCATION_POLL, passwords, testing};
    use crate::storage::tables::auth::{Action, RobotGrant};

    async fn logs_in(auth: &Arc<AccessControl>, name: &str, secret: &str) -> bool {
        let (auth, name, secret) = (auth.clone(), name.to_string(), secret.to_string());
        tokio::task::spawn_blocking(move || {
            auth.login_cached(&name, &secret, IpAddr::V4(Ipv4Addr::LOCALHOST))
                .is_ok()
        })
        .await
        .unwrap()
    }

    /// Two nodes over one PostgreSQL database: a robot revoked through one is refused by
    /// the other within a second, although the other had its login cached.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_robot_revoked_on_one_node_is_refused_on_another_within_a_second() {
        // The synchronous client must not be set up on a runtime's worker.
        let store = tokio::task::spawn_blocking(crate::storage::testing::postgres_store)
            .await
            .unwrap();
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = Arc::new(testing::over(store.clone(), &dir_a));
        let b = Arc::new(testing::over(store, &dir_b));
        tokio::spawn(b.clone().watch_revocations(REVOCATION_POLL));
        let secret = passwords::random_secret();
        let record = RobotRecord {
            secret_digest: passwords::secret_digest(&secret),
            description: String::new(),
            grants: vec![RobotGrant {
                project: "p".into(),
                actions: vec![Action::Pull],
            }],
            expires_at: None,
            disabled: false,
            created_by: "admin".into(),
            created_at: 1,
        };
        a.create_robot("robot$ci", &record).await.unwrap();
        assert!(logs_in(&b, "robot$ci", &secret).await);
        // Cached on b now: without the watch, b would accept it for the cache's lifetime.
        a.set_robot_disabled("robot$ci", true).await.unwrap();
        let revoked = Instant::now();
        while logs_in(&b, "robot$ci", &secret).await {
            assert!(
                revoked.elapsed() < Duration::from_secs(1),
                "node b still accepts the revoked robot after a second"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // And a deleted one, restored first.
        a.set_robot_disabled("robot$ci", false).await.unwrap();
        tokio::time::sleep(REVOCATION_POLL * 3).await;
        assert!(logs_in(&b, "robot$ci", &secret).await);
        a.delete_robot("robot$ci").await.unwrap();
        let deleted = Instant::now();
        while logs_in(&b, "robot$ci", &secret).await {
            assert!(deleted.elapsed() < Duration::from_secs(1));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
