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
pub mod members;
pub mod password_checks;
pub mod passwords;
pub mod principal;
pub mod projects;
pub mod ratelimit;
pub mod robots;
pub mod scope;
pub mod tables;
pub mod token;
pub mod users;

use std::sync::Arc;

pub use access::{Action, Role};
pub use authenticate::{AccessControl, AuthError};
pub use principal::Principal;

use crate::storage::meta::Metadata;

/// Errors of auth operations that are not "denied": storage failures and invalid input.
#[derive(Debug, thiserror::Error)]
pub enum AuthStoreError {
    /// Metadata failed.
    #[error(transparent)]
    Meta(#[from] crate::storage::meta::MetaError),
    /// The request is invalid (a name outside the grammar, a weak password, …).
    #[error("{0}")]
    Invalid(String),
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The thing to create exists already, or the change conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
}

/// Result alias for auth store operations.
pub type AuthResult<T> = Result<T, AuthStoreError>;

/// Prepares the auth tables of `meta` (creating or migrating them).
pub fn prepare(meta: &Arc<Metadata>) -> AuthResult<()> {
    crate::storage::meta::schema::prepare(meta, &tables::AUTH)?;
    Ok(())
}
