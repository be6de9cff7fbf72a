//! Replication's jobs, kept by the shared jobs runner (`crate::jobs`, kind `replication`):
//! what a job and a task are to replication, and their mapping onto the runner's rows.
//!
//! A job is one run of a policy; its tasks are the transfers (and deletes) its plan made,
//! one per artifact and destination, in waves. Both survive a restart: a task that was
//! running when the process died runs again (tasks are idempotent: what the destination
//! already holds is skipped), and a job's status is its final outcome after retries.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::events::Change;
use crate::jobs::{JobFilter, JobRow, Lease, RunState, TaskRow, queue};
use crate::storage::clock::Clock;
use crate::storage::store::{ReadTx, StoreError, StoreResult, WriteTx};

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum JobStatus {
    /// Queued; not yet planned.
    Pending,
    /// Planned; its tasks are running or waiting for a retry.
    Running,
    /// Every task succeeded (or had nothing to do).
    Succeeded,
    /// At least one task failed after all its attempts.
    Failed,
    /// Cancelled by an operator; tasks not yet done were not run.
    Cancelled,
}

impl JobStatus {
    /// Whether the job is over.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

/// What started a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Trigger {
    /// `berth replication run` or the API, by this account.
    Manual {
        /// Who.
        by: String,
    },
    /// The policy's cron schedule.
    Schedule,
    /// Changes in the registry (pushes, tag moves, deletes).
    Change {
        /// The first change's sequence number.
        first: u64,
        /// The last change's sequence number.
        last: u64,
    },
    /// A retry of a failed job's failed tasks, by this account.
    Retry {
        /// Who.
        by: String,
    },
}

/// What a job covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum JobScope {
    /// Everything the policy's filters select on the source.
    All,
    /// These changes (already filtered by the policy).
    Changes {
        /// The changes, oldest first.
        changes: Vec<Change>,
    },
}

/// Totals over a job's or a task's work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobProgress {
    /// Blob bytes sent.
    pub bytes: u64,
    /// Blobs sent.
    pub blobs_copied: u64,
    /// Blobs the destination already had (or mounted from another of its repositories).
    pub blobs_skipped: u64,
    /// Manifests written.
    pub manifests_copied: u64,
    /// Manifests the destination already had with the same tag.
    pub manifests_skipped: u64,
}

impl JobProgress {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &JobProgress) {
        self.bytes += other.bytes;
        self.blobs_copied += other.blobs_copied;
        self.blobs_skipped += other.blobs_skipped;
        self.manifests_copied += other.manifests_copied;
        self.manifests_skipped += other.manifests_skipped;
    }
}

/// Task counts by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TaskCounts {
    /// All tasks.
    pub total: u32,
    /// Waiting to run, or for a retry.
    pub pending: u32,
    /// Running now.
    pub running: u32,
    /// Done.
    pub succeeded: u32,
    /// Failed after every attempt.
    pub failed: u32,
    /// Not run (the job was cancelled).
    pub cancelled: u32,
}

/// One job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Its id, increasing.
    pub id: u64,
    /// The policy it runs.
    pub policy: String,
    /// What started it.
    pub trigger: Trigger,
    /// Where it is.
    pub status: JobStatus,
    /// What it covers.
    pub scope: JobScope,
    /// When it was queued (ms since the epoch).
    pub created_at: u64,
    /// When it was planned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<u64>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<u64>,
    /// The strategy that planned it, and how many waves its plan has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanSummary>,
    /// Why it failed as a whole (planning failed, the policy vanished…); task errors are
    /// on the tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Tasks by status, kept current as tasks end.
    #[serde(default)]
    pub tasks: TaskCounts,
    /// Work done by its finished tasks.
    #[serde(default)]
    pub progress: JobProgress,
}

/// How a job was planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlanSummary {
    /// The strategy plugin.
    pub strategy: String,
    /// Waves in its plan.
    pub waves: u32,
    /// Artifacts the job covers.
    pub artifacts: u32,
    /// Transfers each link may run at once, as the plan capped them.
    #[serde(default)]
    pub limits: Vec<LinkCap>,
}

/// A cap on one link's parallel transfers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LinkCap {
    /// The sending instance.
    pub source: String,
    /// The receiving instance.
    pub target: String,
    /// Transfers at once.
    pub max_parallel: u32,
}

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TaskStatus {
    /// Waiting for its wave, a slot, or a retry.
    Pending,
    /// Running now.
    Running,
    /// Done.
    Succeeded,
    /// Failed after every attempt.
    Failed,
    /// Not run: the job was cancelled.
    Cancelled,
}

impl TaskStatus {
    /// Whether the task is over.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskStatus::Succeeded | TaskStatus::Failed | TaskStatus::Cancelled
        )
    }
}

/// What a task does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum TaskOp {
    /// Copies a manifest (with its blobs, children and referrers) and its tag.
    Copy {
        /// The repository on the source.
        repository: String,
        /// A tag or a digest.
        reference: String,
        /// The repository on the target.
        destination: String,
        /// For a later hop of a tree: the repository on the job's own source, where the
        /// planner reads the manifest ahead so the hop can start before its source holds
        /// all of it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin_repository: Option<String>,
    },
    /// Removes a tag on the target.
    DeleteTag {
        /// The repository on the target.
        destination: String,
        /// The tag.
        tag: String,
        /// The delete's clock at the source, so the target orders it against its own
        /// moves of the tag.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<String>)]
        clock: Option<Clock>,
    },
    /// Removes a manifest (and its tags) on the target.
    DeleteManifest {
        /// The repository on the target.
        destination: String,
        /// The manifest's digest.
        digest: String,
    },
}

/// One task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Its job.
    pub job: u64,
    /// Its index within the job.
    pub index: u32,
    /// Its wave: it starts once every task of earlier waves is over.
    pub wave: u32,
    /// The instance it reads from.
    pub source: String,
    /// The instance it writes to.
    pub target: String,
    /// What it does.
    pub op: TaskOp,
    /// Where it is.
    pub status: TaskStatus,
    /// Attempts started.
    #[serde(default)]
    pub attempts: u32,
    /// When the next attempt may start (ms since the epoch).
    #[serde(default)]
    pub not_before: u64,
    /// The last attempt's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A note on a success that did nothing or less than asked (a tag left alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Work done by its successful attempt.
    #[serde(default)]
    pub progress: JobProgress,
    /// When its last attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<u64>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<u64>,
}

impl TaskRecord {
    /// A task not yet started.
    pub fn pending(
        job: u64,
        index: u32,
        wave: u32,
        source: &str,
        target: &str,
        op: TaskOp,
    ) -> TaskRecord {
        TaskRecord {
            job,
            index,
            wave,
            source: source.to_string(),
            target: target.to_string(),
            op,
            status: TaskStatus::Pending,
            attempts: 0,
            not_before: 0,
            error: None,
            note: None,
            progress: JobProgress::default(),
            started_at: None,
            finished_at: None,
        }
    }
}

/// The kind replication's jobs have in the shared runner.
pub const KIND: &str = "replication";

/// Replication's job and task states are the runner's, under replication's names (kept
/// apart so the API's schema names them as before).
macro_rules! same_states {
    ($($own:ident),*) => {$(
        impl From<$own> for RunState {
            fn from(s: $own) -> RunState {
                match s {
                    $own::Pending => RunState::Pending,
                    $own::Running => RunState::Running,
                    $own::Succeeded => RunState::Succeeded,
                    $own::Failed => RunState::Failed,
                    $own::Cancelled => RunState::Cancelled,
                }
            }
        }

        impl From<RunState> for $own {
            fn from(s: RunState) -> $own {
                match s {
                    RunState::Pending => $own::Pending,
                    RunState::Running => $own::Running,
                    RunState::Succeeded => $own::Succeeded,
                    RunState::Failed => $own::Failed,
                    RunState::Cancelled => $own::Cancelled,
                }
            }
        }
    )*};
}

same_states!(JobStatus, TaskStatus);

/// What of a job is replication's own, kept as the runner's `detail`.
#[derive(Serialize, Deserialize)]
struct JobDetail {
    trigger: Trigger,
    scope: JobScope,
    #[serde(default)]
    plan: Option<PlanSummary>,
    #[serde(default)]
    tasks: TaskCounts,
    #[serde(default)]
    progress: JobProgress,
}

/// What of a task is replication's own.
#[derive(Serialize, Deserialize)]
struct TaskDetail {
    source: String,
    target: String,
    op: TaskOp,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    progress: JobProgress,
}

fn decode_error(table: &'static str, e: serde_json::Error) -> StoreError {
    StoreError::Decode {
        table,
        message: e.to_string(),
    }
}

fn job_from(row: JobRow) -> StoreResult<JobRecord> {
    let detail: JobDetail =
        serde_json::from_value(row.detail).map_err(|e| decode_error("jobs", e))?;
    Ok(JobRecord {
        id: row.id,
        policy: row.subject,
        trigger: detail.trigger,
        status: row.state.into(),
        scope: detail.scope,
        created_at: row.created_at,
        started_at: row.started_at,
        finished_at: row.finished_at,
        plan: detail.plan,
        error: row.error,
        tasks: detail.tasks,
        progress: detail.progress,
    })
}

fn detail_of(job: &JobRecord) -> serde_json::Value {
    serde_json::to_value(JobDetail {
        trigger: job.trigger.clone(),
        scope: job.scope.clone(),
        plan: job.plan.clone(),
        tasks: job.tasks,
        progress: job.progress,
    })
    .expect("job details serialize")
}

fn task_from(row: TaskRow) -> StoreResult<TaskRecord> {
    let detail: TaskDetail =
        serde_json::from_value(row.detail).map_err(|e| decode_error("job_tasks", e))?;
    Ok(TaskRecord {
        job: row.job,
        index: row.index,
        wave: row.wave,
        source: detail.source,
        target: detail.target,
        op: detail.op,
        status: row.state.into(),
        attempts: row.attempts,
        not_before: row.not_before,
        error: row.error,
        note: detail.note,
        progress: detail.progress,
        started_at: row.started_at,
        finished_at: row.finished_at,
    })
}

/// A counter or cursor (0 when never set): `change_cursor`, `schedule/<policy>`.
pub fn state(tx: &dyn ReadTx, key: &str) -> StoreResult<u64> {
    queue::state(tx, key)
}

/// Sets a counter or cursor.
pub fn set_state(tx: &dyn WriteTx, key: &str, value: u64) -> StoreResult<()> {
    queue::set_state(tx, key, value)
}

/// Removes a counter or cursor.
pub fn remove_state(tx: &dyn WriteTx, key: &str) -> StoreResult<()> {
    queue::remove_state(tx, key)
}

/// Queues a job for `policy`; returns it with its new id.
pub fn enqueue(
    tx: &dyn WriteTx,
    policy: &str,
    trigger: Trigger,
    scope: JobScope,
    now: u64,
) -> StoreResult<JobRecord> {
    let mut job = JobRecord {
        id: 0,
        policy: policy.to_string(),
        trigger,
        status: JobStatus::Pending,
        scope,
        created_at: now,
        started_at: None,
        finished_at: None,
        plan: None,
        error: None,
        tasks: TaskCounts::default(),
        progress: JobProgress::default(),
    };
    job.id = queue::enqueue(tx, KIND, policy, detail_of(&job), now)?.id;
    Ok(job)
}

/// One job.
pub fn job(tx: &dyn ReadTx, id: u64) -> StoreResult<Option<JobRecord>> {
    match queue::job(tx, id)? {
        Some(row) if row.kind == KIND => Ok(Some(job_from(row)?)),
        _ => Ok(None),
    }
}

/// Stores a job's new state (its lease stays the runner's).
pub fn put_job(tx: &dyn WriteTx, job: &JobRecord) -> StoreResult<()> {
    queue::update(
        tx,
        &JobRow {
            id: job.id,
            kind: KIND.to_string(),
            subject: job.policy.clone(),
            state: job.status.into(),
            detail: detail_of(job),
            created_at: job.created_at,
            started_at: job.started_at,
            finished_at: job.finished_at,
            error: job.error.clone(),
            lease: None,
            cancel_requested: false,
        },
    )
}

/// Jobs, newest first, that `filter` (applied by the store, with its indexes) and then
/// `keep` select; at most `limit`.
pub fn jobs(
    tx: &dyn ReadTx,
    filter: &JobFilter,
    limit: usize,
    keep: impl Fn(&JobRecord) -> bool,
) -> StoreResult<Vec<JobRecord>> {
    let mut out = Vec::new();
    for row in queue::jobs(tx, KIND, filter, usize::MAX)? {
        if out.len() >= limit {
            break;
        }
        let job = job_from(row)?;
        if keep(&job) {
            out.push(job);
        }
    }
    Ok(out)
}

/// Jobs that are not over, oldest first, with their leases.
pub fn unfinished_leased(tx: &dyn ReadTx) -> StoreResult<Vec<(JobRecord, Option<Lease>)>> {
    let filter = JobFilter {
        unfinished: true,
        ..JobFilter::default()
    };
    let mut out = Vec::new();
    for row in queue::jobs(tx, KIND, &filter, usize::MAX)?
        .into_iter()
        .rev()
    {
        let lease = row.lease.clone();
        out.push((job_from(row)?, lease));
    }
    Ok(out)
}

/// Jobs that are not over, oldest first.
pub fn unfinished(tx: &dyn ReadTx) -> StoreResult<Vec<JobRecord>> {
    Ok(unfinished_leased(tx)?
        .into_iter()
        .map(|(job, _)| job)
        .collect())
}

/// Whether `node` holds the lease of job `id` (a job that was never claimed, such as one
/// being cancelled before it ran, counts as held by whoever asks).
pub fn leased_to(tx: &dyn ReadTx, id: u64, node: &str) -> StoreResult<bool> {
    Ok(match queue::job(tx, id)? {
        Some(row) => row.lease.is_none_or(|l| l.node == node),
        None => false,
    })
}

/// Stores a task.
pub fn put_task(tx: &dyn WriteTx, task: &TaskRecord) -> StoreResult<()> {
    queue::put_task(
        tx,
        &TaskRow {
            job: task.job,
            index: task.index,
            wave: task.wave,
            state: task.status.into(),
            attempts: task.attempts,
            not_before: task.not_before,
            started_at: task.started_at,
            finished_at: task.finished_at,
            error: task.error.clone(),
            detail: serde_json::to_value(TaskDetail {
                source: task.source.clone(),
                target: task.target.clone(),
                op: task.op.clone(),
                note: task.note.clone(),
                progress: task.progress,
            })
            .expect("task details serialize"),
        },
    )
}

/// Every task of a job, in index order.
pub fn tasks(tx: &dyn ReadTx, job: u64) -> StoreResult<Vec<TaskRecord>> {
    queue::tasks(tx, job)?.into_iter().map(task_from).collect()
}

/// Removes a job and its tasks.
pub fn remove_job(tx: &dyn WriteTx, id: u64) -> StoreResult<()> {
    queue::remove(tx, id)
}

/// Recounts a job's tasks by status and sums their progress.
pub fn tally(tasks: &[TaskRecord]) -> (TaskCounts, JobProgress) {
    let mut counts = TaskCounts {
        total: tasks.len() as u32,
        ..TaskCounts::default()
    };
    let mut progress = JobProgress::default();
    for t in tasks {
        match t.status {
            TaskStatus::Pending => counts.pending += 1,
            TaskStatus::Running => counts.running += 1,
            TaskStatus::Succeeded => counts.succeeded += 1,
            TaskStatus::Failed => counts.failed += 1,
            TaskStatus::Cancelled => counts.cancelled += 1,
        }
        progress.add(&t.progress);
    }
    (counts, progress)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::store::{Durability, Store};

    fn write<T>(store: &Store, f: impl FnMut(&dyn WriteTx) -> StoreResult<T>) -> T {
        store.write_blocking(Durability::Immediate, f).unwrap()
    }

    #[test]
    fn jobs_get_increasing_ids_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let open = || Store::redb_at(&dir.path().join("m.redb")).unwrap();
        let store = open();
        for _ in 0..3 {
            write(&store, |tx| {
                enqueue(tx, "p", Trigger::Schedule, JobScope::All, 1)
            });
        }
        drop(store);
        let store = open();
        let ids: Vec<u64> = store
            .read_blocking(|tx| jobs(tx, &JobFilter::default(), 10, |_| true))
            .unwrap()
            .iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(ids, [3, 2, 1]);
        assert_eq!(store.read_blocking(unfinished).unwrap().len(), 3);
    }

    #[test]
    fn a_jobs_tasks_are_listed_in_order_and_removed_with_it() {
        let (store, _dir) = crate::storage::testing::redb_store();
        let (first, second) = write(&store, |tx| {
            let first = enqueue(tx, "p", Trigger::Schedule, JobScope::All, 1)?.id;
            let second = enqueue(tx, "p", Trigger::Schedule, JobScope::All, 1)?.id;
            for job in [first, second] {
                for index in 0..3 {
                    let op = TaskOp::DeleteTag {
                        destination: "team/app".into(),
                        tag: format!("t{index}"),
                        clock: None,
                    };
                    put_task(tx, &TaskRecord::pending(job, index, 0, "local", "r", op))?;
                }
            }
            remove_job(tx, first)?;
            Ok((first, second))
        });
        assert!(
            store
                .read_blocking(|tx| tasks(tx, first))
                .unwrap()
                .is_empty()
        );
        let left: Vec<u32> = store
            .read_blocking(|tx| tasks(tx, second))
            .unwrap()
            .iter()
            .map(|t| t.index)
            .collect();
        assert_eq!(left, [0, 1, 2]);
    }
}
