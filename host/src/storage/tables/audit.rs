//! The audit log's table (`host/src/auth/audit.rs` owns it): who did what, when, from
//! where, to what, and how it ended, one entry per event, with ids the backend assigns in
//! the order entries are appended.

use serde::{Deserialize, Serialize};

use crate::storage::store::StoreResult;

/// One audit entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct AuditRecord {
    /// When (ms since the epoch).
    pub at: u64,
    /// Who: a username, `robot$…`, or `anonymous`.
    pub actor: String,
    /// From where: the client's address.
    pub source: String,
    /// What: `push`, `pull`, `delete`, `login`, `user.create`, `member.set`, `robot.create`, …
    pub action: String,
    /// On what: a repository, project, user or robot name.
    pub resource: String,
    /// The tag, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The digest, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// `success`, `denied` or `failure`.
    pub outcome: String,
    /// More about a denial or failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Which entries a page holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    /// Only this actor.
    pub actor: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only resources starting with this.
    pub resource_prefix: Option<String>,
    /// Only entries at or after this time (ms since the epoch).
    pub since: Option<u64>,
    /// Only entries older than this id (the cursor of the previous page).
    pub before: Option<u64>,
}

/// Entries with their ids, newest first, and the cursor of the next page if there is one.
pub type AuditPage = (Vec<(u64, AuditRecord)>, Option<u64>);

/// Reads of the audit log.
pub trait AuditRead {
    /// At most `limit` entries matching `filter`, newest (highest id) first, and the
    /// `before` cursor of the next page when more match.
    fn page(&self, filter: &AuditFilter, limit: usize) -> StoreResult<AuditPage>;
}

/// Writes of the audit log.
pub trait AuditWrite: AuditRead {
    /// Appends `records`, each with a new id greater than every id before it on this
    /// backend's order of commits.
    fn append(&self, records: &[AuditRecord]) -> StoreResult<()>;
    /// Removes the entries recorded before `at` (ms since the epoch); returns how many.
    fn remove_before(&self, at: u64) -> StoreResult<u64>;
}
