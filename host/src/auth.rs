//! Identity and access: who is asking (users, robot accounts, tokens) and what they may do
//! (projects, members, the permission matrix), plus the audit log of what they did.
//!
//! The registry and the admin API ask [`AccessControl`] one question — may this request
//! do that to this repository — and never look at credentials themselves.

pub mod access;
pub mod audit;
pub mod authenticate;
pub mod bootstrap;
pub mod endpoint;
pub mod exchange;
pub mod members;
pub mod password_checks;
pub mod passwords;
pub mod principal;
pub mod projects;
pub mod ratelimit;
pub mod robots;
pub mod scope;
pub mod token;
pub mod users;

pub use access::{Action, Role};
pub use authenticate::{AccessControl, AuthError};
pub use principal::Principal;

use crate::storage::store::StoreError;

/// Errors of auth operations that are not "denied": storage failures and invalid input.
#[derive(Debug, thiserror::Error)]
pub enum AuthStoreError {
    /// The metadata store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The request is invalid (a name outside the grammar, a weak password, …).
    #[error("{0}")]
    Invalid(String),
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The thing to create exists already, or the change conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// The caller proved less than the change needs (a wrong current password).
    #[error("{0}")]
    Forbidden(String),
}

/// How often a node looks whether access was revoked elsewhere (see
/// [`AccessControl::watch_revocations`]).
pub const REVOCATION_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// Result alias for auth store operations.
pub type AuthResult<T> = Result<T, AuthStoreError>;

#[cfg(test)]
pub(crate) mod testing {
    //! An [`AccessControl`] over a fresh embedded store, for unit tests.

    use super::AccessControl;

    /// Access control over a new redb store in a temporary directory (kept alive by the
    /// returned guard). Must run inside a Tokio runtime (the audit writer is a task).
    pub(crate) fn access_control() -> (AccessControl, tempfile::TempDir) {
        let (store, dir) = crate::storage::testing::redb_store();
        (over(store, &dir), dir)
    }

    /// Access control over `store` (one node of several sharing it), with its own data
    /// directory in `dir`.
    pub(crate) fn over(
        store: crate::storage::store::Store,
        dir: &tempfile::TempDir,
    ) -> AccessControl {
        AccessControl::new(
            store,
            crate::config::AuthConfig::default(),
            &crate::config::KeysConfig::default(),
            dir.path(),
        )
        .expect("access control over the store")
    }
}
