//! The service's jobs: list and show them, cancel and retry them.

use super::jobs::{JobRecord, JobStatus, TaskRecord, TaskStatus, Trigger};
use crate::storage::store::{Durability, now_millis};

use super::*;

impl Replication {
    /// Jobs, newest first: of one policy and in one status when given.
    pub fn jobs(
        &self,
        policy: Option<&str>,
        status: Option<JobStatus>,
        limit: usize,
    ) -> ReplicationResult<Vec<JobRecord>> {
        let filter = crate::jobs::JobFilter {
            subject: policy.map(str::to_string),
            state: status.map(Into::into),
            ..Default::default()
        };
        Ok(self
            .store
            .read_blocking(|tx| jobs::jobs(tx, &filter, limit, |_| true))?)
    }

    /// One job with its tasks.
    pub fn job(&self, id: u64) -> ReplicationResult<(JobRecord, Vec<TaskRecord>)> {
        let (job, tasks, _) = self.job_with_runner(id)?;
        Ok((job, tasks))
    }

    /// Job `id` with its tasks, and the node running it now (the holder of an unexpired
    /// lease), if one is.
    pub fn job_with_runner(
        &self,
        id: u64,
    ) -> ReplicationResult<(JobRecord, Vec<TaskRecord>, Option<String>)> {
        self.store.read_blocking(|tx| {
            let job = jobs::job(tx, id)?
                .ok_or_else(|| ReplicationError::NotFound(format!("no job {id}")))?;
            let now = now_millis();
            let runner = crate::jobs::queue::job(tx, id)?
                .and_then(|row| row.lease)
                .filter(|lease| lease.until > now && !job.status.is_final())
                .map(|lease| lease.node);
            Ok((job, jobs::tasks(tx, id)?, runner))
        })
    }

    /// Cancels a job: tasks not yet done are not run; those running are interrupted.
    pub fn cancel(&self, id: u64) -> ReplicationResult<JobRecord> {
        let job = self.store.write_blocking(
            Durability::Immediate,
            |tx| -> ReplicationResult<JobRecord> {
                let mut job = jobs::job(tx.read(), id)?
                    .ok_or_else(|| ReplicationError::NotFound(format!("no job {id}")))?;
                if job.status.is_final() {
                    return Err(ReplicationError::Conflict(format!(
                        "job {id} is already {}",
                        serde_json::to_value(job.status)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default()
                    )));
                }
                let now = now_millis();
                for mut task in jobs::tasks(tx.read(), id)? {
                    if task.status == TaskStatus::Pending {
                        task.status = TaskStatus::Cancelled;
                        task.finished_at = Some(now);
                        jobs::put_task(tx, &task)?;
                    }
                }
                job.tasks = jobs::tally(&jobs::tasks(tx.read(), id)?).0;
                job.status = JobStatus::Cancelled;
                job.finished_at = Some(now);
                jobs::put_job(tx, &job)?;
                Ok(job)
            },
        )?;
        self.stop_job(id, Stop::Cancelled);
        self.wake.notify_one();
        Ok(job)
    }

    /// Queues a new job that runs again what a finished job did not complete: its failed
    /// and cancelled tasks, or, if it failed before planning, the whole job.
    pub fn retry(&self, id: u64, by: &str) -> ReplicationResult<JobRecord> {
        let job = self.store.write_blocking(
            Durability::Immediate,
            |tx| -> ReplicationResult<JobRecord> {
                let old = jobs::job(tx.read(), id)?
                    .ok_or_else(|| ReplicationError::NotFound(format!("no job {id}")))?;
                if !matches!(old.status, JobStatus::Failed | JobStatus::Cancelled) {
                    return Err(ReplicationError::Conflict(format!(
                        "job {id} neither failed nor was cancelled; only those can be retried"
                    )));
                }
                if tx.replication().policy(&old.policy)?.is_none() {
                    return Err(ReplicationError::Conflict(format!(
                        "policy {} no longer exists",
                        old.policy
                    )));
                }
                let now = now_millis();
                let trigger = Trigger::Retry { by: by.to_string() };
                let mut job = jobs::enqueue(tx, &old.policy, trigger, old.scope.clone(), now)?;
                let redo: Vec<TaskRecord> = jobs::tasks(tx.read(), id)?
                    .into_iter()
                    .filter(|t| matches!(t.status, TaskStatus::Failed | TaskStatus::Cancelled))
                    .collect();
                if old.plan.is_some() && !redo.is_empty() {
                    let tasks: Vec<TaskRecord> = redo
                        .into_iter()
                        .enumerate()
                        .map(|(index, t)| {
                            TaskRecord::pending(
                                job.id,
                                index as u32,
                                t.wave,
                                &t.source,
                                &t.target,
                                t.op,
                            )
                        })
                        .collect();
                    for t in &tasks {
                        jobs::put_task(tx, t)?;
                    }
                    job.status = JobStatus::Running;
                    job.started_at = Some(now);
                    job.plan = old.plan.clone();
                    job.tasks = jobs::tally(&tasks).0;
                    jobs::put_job(tx, &job)?;
                }
                Ok(job)
            },
        )?;
        self.wake.notify_one();
        Ok(job)
    }
}
