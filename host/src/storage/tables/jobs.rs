//! Tables of the shared jobs runner (`host/src/jobs/`): `jobs` (durable units of work of
//! any kind — replication runs first; machine operations, host initialisation and preheat
//! next — each with the lease of the node running it and a stored cancellation),
//! `job_tasks` (a job's steps, in waves, with attempts and a retry time) and `job_state`
//! (counters and cursors of the producers that queue jobs, such as a schedule's next time).
//!
//! What a job or task does is its kind's business: `detail` holds it as JSON.

use serde::{Deserialize, Serialize};

use crate::storage::store::StoreResult;

/// Where a job or a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    /// Queued, or waiting for its turn, a slot or a retry.
    Pending,
    /// Being worked on.
    Running,
    /// Done.
    Succeeded,
    /// Failed after every attempt.
    Failed,
    /// Cancelled by an operator; what was not yet done was not run.
    Cancelled,
}

impl RunState {
    /// Whether it is over.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunState::Succeeded | RunState::Failed | RunState::Cancelled
        )
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Pending => "pending",
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
        }
    }

    /// From the stored name.
    pub fn parse(s: &str) -> Option<RunState> {
        Some(match s {
            "pending" => RunState::Pending,
            "running" => RunState::Running,
            "succeeded" => RunState::Succeeded,
            "failed" => RunState::Failed,
            "cancelled" => RunState::Cancelled,
            _ => return None,
        })
    }
}

/// Which node works on a job, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The node's id.
    pub node: String,
    /// When the lease lapses unless renewed (ms since the epoch).
    pub until: u64,
}

/// One job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRow {
    /// Its id, from the backend, increasing.
    pub id: u64,
    /// Its kind (`replication`, …): which component runs it.
    pub kind: String,
    /// What it is about, for listings (a policy, a machine).
    pub subject: String,
    /// Where it is.
    pub state: RunState,
    /// The kind's own description of the job.
    pub detail: serde_json::Value,
    /// When it was queued (ms since the epoch).
    pub created_at: u64,
    /// When work on it began.
    pub started_at: Option<u64>,
    /// When it ended.
    pub finished_at: Option<u64>,
    /// Why it failed as a whole.
    pub error: Option<String>,
    /// The node working on it, if any.
    pub lease: Option<Lease>,
    /// An operator asked for it to stop; the node holding it stops at its next renewal.
    pub cancel_requested: bool,
}

/// One task of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRow {
    /// Its job.
    pub job: u64,
    /// Its index within the job.
    pub index: u32,
    /// Its wave: it starts once every task of earlier waves is over.
    pub wave: u32,
    /// Where it is.
    pub state: RunState,
    /// Attempts started.
    pub attempts: u32,
    /// When the next attempt may start (ms since the epoch).
    pub not_before: u64,
    /// When its last attempt started.
    pub started_at: Option<u64>,
    /// When it ended.
    pub finished_at: Option<u64>,
    /// The last attempt's error.
    pub error: Option<String>,
    /// The kind's own description of the task.
    pub detail: serde_json::Value,
}

/// Which jobs a listing returns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobFilter {
    /// Only this subject.
    pub subject: Option<String>,
    /// Only in this state.
    pub state: Option<RunState>,
    /// Only jobs that are not over.
    pub unfinished: bool,
    /// Only jobs that are over.
    pub finished: bool,
    /// None of these (a node's own, already running: skipped before they are read).
    pub except: std::collections::BTreeSet<u64>,
}

/// Reads of the jobs tables.
pub trait JobsRead {
    /// Job `id`.
    fn job(&self, id: u64) -> StoreResult<Option<JobRow>>;
    /// Jobs of `kind` that `filter` selects, newest first, at most `limit`.
    fn jobs(&self, kind: &str, filter: &JobFilter, limit: usize) -> StoreResult<Vec<JobRow>>;
    /// Every task of job `job`, in index order.
    fn tasks(&self, job: u64) -> StoreResult<Vec<TaskRow>>;
    /// A producer's counter or cursor (0 when never set).
    fn state(&self, key: &str) -> StoreResult<u64>;
}

/// Writes of the jobs tables.
pub trait JobsWrite: JobsRead {
    /// Stores a new job with the next id (the row's `id` is ignored); returns the id.
    fn insert_job(&self, row: &JobRow) -> StoreResult<u64>;
    /// Replaces job `row.id` (a job keeps the kind and subject it was queued with).
    fn put_job(&self, row: &JobRow) -> StoreResult<()>;
    /// Stores a task (create or replace).
    fn put_task(&self, row: &TaskRow) -> StoreResult<()>;
    /// Removes a job and its tasks.
    fn remove_job(&self, id: u64) -> StoreResult<()>;
    /// Sets a producer's counter or cursor.
    fn set_state(&self, key: &str, value: u64) -> StoreResult<()>;
    /// Removes a producer's counter or cursor.
    fn remove_state(&self, key: &str) -> StoreResult<()>;
}
