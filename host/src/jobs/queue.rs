//! The queue: jobs and tasks read and written inside a caller's transaction, so that a
//! component queues a job in the same commit as whatever caused it (a change feed's
//! cursor, a schedule's next time), and a task's outcome commits with its job's totals.

use serde_json::Value;

use super::{JobFilter, JobRow, RunState, TaskRow};
use crate::storage::store::{ReadTx, StoreResult, WriteTx};

/// Queues a job of `kind` about `subject`; returns it with the id the backend gave it.
pub fn enqueue(
    tx: &dyn WriteTx,
    kind: &str,
    subject: &str,
    detail: Value,
    now: u64,
) -> StoreResult<JobRow> {
    let mut row = JobRow {
        id: 0,
        kind: kind.to_string(),
        subject: subject.to_string(),
        state: RunState::Pending,
        detail,
        created_at: now,
        started_at: None,
        finished_at: None,
        error: None,
        lease: None,
        cancel_requested: false,
    };
    row.id = tx.jobs().insert_job(&row)?;
    Ok(row)
}

/// Job `id`.
pub fn job(tx: &dyn ReadTx, id: u64) -> StoreResult<Option<JobRow>> {
    tx.jobs().job(id)
}

/// Jobs of `kind` that `filter` selects, newest first, at most `limit`.
pub fn jobs(
    tx: &dyn ReadTx,
    kind: &str,
    filter: &JobFilter,
    limit: usize,
) -> StoreResult<Vec<JobRow>> {
    tx.jobs().jobs(kind, filter, limit)
}

/// Stores a job's new state, keeping the lease and cancellation it has in the store (a
/// kind changes its job's progress; the lease is the runner's).
pub fn update(tx: &dyn WriteTx, row: &JobRow) -> StoreResult<()> {
    let mut row = row.clone();
    if let Some(stored) = tx.jobs().job(row.id)? {
        row.lease = stored.lease;
        row.cancel_requested = stored.cancel_requested || row.cancel_requested;
    }
    if row.state.is_final() {
        row.lease = None;
    }
    tx.jobs().put_job(&row)
}

/// Every task of job `job`, in index order.
pub fn tasks(tx: &dyn ReadTx, job: u64) -> StoreResult<Vec<TaskRow>> {
    tx.jobs().tasks(job)
}

/// Stores a task (create or replace).
pub fn put_task(tx: &dyn WriteTx, row: &TaskRow) -> StoreResult<()> {
    tx.jobs().put_task(row)
}

/// Removes a job and its tasks.
pub fn remove(tx: &dyn WriteTx, id: u64) -> StoreResult<()> {
    tx.jobs().remove_job(id)
}

/// A producer's counter or cursor (0 when never set).
pub fn state(tx: &dyn ReadTx, key: &str) -> StoreResult<u64> {
    tx.jobs().state(key)
}

/// Sets a producer's counter or cursor.
pub fn set_state(tx: &dyn WriteTx, key: &str, value: u64) -> StoreResult<()> {
    tx.jobs().set_state(key, value)
}

/// Removes a producer's counter or cursor.
pub fn remove_state(tx: &dyn WriteTx, key: &str) -> StoreResult<()> {
    tx.jobs().remove_state(key)
}

/// Retires finished jobs of `kind`: those that ended before `horizon` (ms since the
/// epoch), and all but the newest `keep`. Returns how many it removed.
pub fn retire(tx: &dyn WriteTx, kind: &str, horizon: u64, keep: usize) -> StoreResult<usize> {
    let finished = tx.jobs().jobs(
        kind,
        &JobFilter {
            finished: true,
            ..JobFilter::default()
        },
        usize::MAX,
    )?;
    let mut removed = 0;
    for (rank, job) in finished.iter().enumerate() {
        if rank >= keep || job.finished_at.unwrap_or(job.created_at) < horizon {
            tx.jobs().remove_job(job.id)?;
            removed += 1;
        }
    }
    Ok(removed)
}
