//! Tables `replication_jobs` and `replication_tasks`: the durable job queue.
//!
//! A job is one run of a policy; its tasks are the transfers (and deletes) its plan made,
//! one per artifact and destination, in waves. Both survive a restart: a task that was
//! running when the process died runs again (tasks are idempotent: what the destination
//! already holds is skipped), and a job's status is its final outcome after retries.

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::storage::clock::Clock;
use crate::storage::meta::changes::Change;
use crate::storage::meta::{MetaResult, Reader, decode, encode};

const JOBS: TableDefinition<u64, &[u8]> = TableDefinition::new("replication_jobs");
const TASKS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("replication_tasks");
/// Counters and cursors: `next_job`, `change_cursor`, `schedule/<policy>`.
const STATE: TableDefinition<&str, u64> = TableDefinition::new("replication_state");

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

/// Creates the tables in a bare database, for this module's tests (the storage backend
/// creates them with replication's schema).
#[cfg(test)]
fn create(tx: &WriteTransaction) -> MetaResult<()> {
    tx.open_table(JOBS)?;
    tx.open_table(TASKS)?;
    tx.open_table(STATE)?;
    Ok(())
}

/// A counter or cursor (0 when never set).
pub fn state(tx: &impl Reader, key: &str) -> MetaResult<u64> {
    Ok(tx.open(STATE)?.get(key)?.map(|v| v.value()).unwrap_or(0))
}

/// Sets a counter or cursor.
pub fn set_state(tx: &WriteTransaction, key: &str, value: u64) -> MetaResult<()> {
    tx.open_table(STATE)?.insert(key, value)?;
    Ok(())
}

/// Removes a counter or cursor.
pub fn remove_state(tx: &WriteTransaction, key: &str) -> MetaResult<()> {
    tx.open_table(STATE)?.remove(key)?;
    Ok(())
}

/// Queues a job for `policy`; returns it with its new id.
pub fn enqueue(
    tx: &WriteTransaction,
    policy: &str,
    trigger: Trigger,
    scope: JobScope,
    now: u64,
) -> MetaResult<JobRecord> {
    let id = state(tx, "next_job")? + 1;
    set_state(tx, "next_job", id)?;
    let job = JobRecord {
        id,
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
    put_job(tx, &job)?;
    Ok(job)
}

/// One job.
pub fn job(tx: &impl Reader, id: u64) -> MetaResult<Option<JobRecord>> {
    match tx.open(JOBS)?.get(id)? {
        Some(v) => Ok(Some(decode("replication_jobs", v.value())?)),
        None => Ok(None),
    }
}

/// Stores a job.
pub fn put_job(tx: &WriteTransaction, job: &JobRecord) -> MetaResult<()> {
    tx.open_table(JOBS)?
        .insert(job.id, encode(job).as_slice())?;
    Ok(())
}

/// Jobs, newest first, that `keep` selects; at most `limit`.
pub fn jobs(
    tx: &impl Reader,
    limit: usize,
    keep: impl Fn(&JobRecord) -> bool,
) -> MetaResult<Vec<JobRecord>> {
    let mut out = Vec::new();
    for entry in tx.open(JOBS)?.iter()?.rev() {
        if out.len() >= limit {
            break;
        }
        let (_, v) = entry?;
        let job: JobRecord = decode("replication_jobs", v.value())?;
        if keep(&job) {
            out.push(job);
        }
    }
    Ok(out)
}

/// Jobs that are not over, oldest first.
pub fn unfinished(tx: &impl Reader) -> MetaResult<Vec<JobRecord>> {
    let mut out = Vec::new();
    for entry in tx.open(JOBS)?.iter()? {
        let (_, v) = entry?;
        let job: JobRecord = decode("replication_jobs", v.value())?;
        if !job.status.is_final() {
            out.push(job);
        }
    }
    Ok(out)
}

/// Number of jobs stored.
pub fn count(tx: &impl Reader) -> MetaResult<u64> {
    Ok(tx.open(JOBS)?.len()?)
}

/// Stores a task.
pub fn put_task(tx: &WriteTransaction, task: &TaskRecord) -> MetaResult<()> {
    tx.open_table(TASKS)?
        .insert((task.job, task.index), encode(task).as_slice())?;
    Ok(())
}

/// Every task of a job, in index order.
pub fn tasks(tx: &impl Reader, job: u64) -> MetaResult<Vec<TaskRecord>> {
    let mut out = Vec::new();
    for entry in tx.open(TASKS)?.range((job, 0)..=(job, u32::MAX))? {
        let (_, v) = entry?;
        out.push(decode("replication_tasks", v.value())?);
    }
    Ok(out)
}

/// Removes a job and its tasks.
pub fn remove_job(tx: &WriteTransaction, id: u64) -> MetaResult<()> {
    tx.open_table(JOBS)?.remove(id)?;
    tx.open_table(TASKS)?
        .retain_in((id, 0)..=(id, u32::MAX), |_, _| false)?;
    Ok(())
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
    use crate::storage::meta::Metadata;

    fn open() -> (tempfile::TempDir, Metadata) {
        let dir = tempfile::tempdir().unwrap();
        let meta = Metadata::open(&dir.path().join("m.redb")).unwrap();
        meta.write(create).unwrap();
        (dir, meta)
    }

    #[test]
    fn jobs_get_increasing_ids_and_survive_reopening() {
        let (dir, meta) = open();
        for _ in 0..3 {
            meta.write(|tx| enqueue(tx, "p", Trigger::Schedule, JobScope::All, 1))
                .unwrap();
        }
        drop(meta);
        let meta = Metadata::open(&dir.path().join("m.redb")).unwrap();
        let tx = meta.read().unwrap();
        let ids: Vec<u64> = jobs(&tx, 10, |_| true)
            .unwrap()
            .iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(ids, [3, 2, 1]);
        assert_eq!(unfinished(&tx).unwrap().len(), 3);
    }

    #[test]
    fn a_jobs_tasks_are_listed_in_order_and_removed_with_it() {
        let (_dir, meta) = open();
        meta.write(|tx| -> MetaResult<()> {
            for job in [1, 2] {
                for index in 0..3 {
                    let op = TaskOp::DeleteTag {
                        destination: "team/app".into(),
                        tag: format!("t{index}"),
                        clock: None,
                    };
                    put_task(tx, &TaskRecord::pending(job, index, 0, "local", "r", op))?;
                }
            }
            remove_job(tx, 1)
        })
        .unwrap();
        let tx = meta.read().unwrap();
        assert!(tasks(&tx, 1).unwrap().is_empty());
        let left: Vec<u32> = tasks(&tx, 2).unwrap().iter().map(|t| t.index).collect();
        assert_eq!(left, [0, 1, 2]);
    }
}
