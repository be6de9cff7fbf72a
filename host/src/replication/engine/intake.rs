//! Intake: what turns the change feed and cron schedules into queued jobs, recovery after a
//! restart, starting queued jobs, and retention of finished ones.

use std::collections::HashMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::replication::jobs::{self, JobScope, JobStatus, TaskStatus, Trigger};
use crate::replication::policies::{Mode, Selector};
use crate::replication::{Replication, ReplicationResult};
use crate::storage::meta::changes::{self, Change};
use crate::storage::meta::{MetaResult, now_millis};

/// Changes read from the feed at a time.
const CHANGE_BATCH: usize = 1000;

use super::execute::wanted;

impl Replication {
    /// After a restart: tasks that were running when the process died run again.
    pub(super) fn recover(&self) -> MetaResult<()> {
        let unfinished = jobs::unfinished(&self.meta.read()?)?;
        self.meta.write(|tx| -> MetaResult<()> {
            for job in &unfinished {
                for mut task in jobs::tasks(tx, job.id)? {
                    if task.status == TaskStatus::Running {
                        task.status = TaskStatus::Pending;
                        task.not_before = 0;
                        jobs::put_task(tx, &task)?;
                    }
                }
            }
            Ok(())
        })?;
        if !unfinished.is_empty() {
            tracing::info!(
                jobs = unfinished.len(),
                "replication: resuming jobs that were unfinished at shutdown"
            );
        }
        Ok(())
    }

    /// Turns new changes into jobs of the policies that follow changes, and moves the
    /// cursor past them, in one transaction.
    pub(super) fn poll_changes(&self) -> ReplicationResult<()> {
        let (cursor, batch) = {
            let tx = self.meta.read()?;
            let cursor = jobs::state(&tx, "change_cursor")?;
            (cursor, changes::after(&tx, cursor, CHANGE_BATCH)?)
        };
        let Some((last, _)) = batch.last() else {
            return Ok(());
        };
        let (first, last) = (batch[0].0, *last);
        let now = now_millis();
        let queued = self.write_with_queue(|settings, tx| -> ReplicationResult<Vec<u64>> {
            let mut queued = Vec::new();
            // Another poller cannot exist, but the cursor is checked anyway: queueing the
            // same changes twice would replicate them twice.
            if jobs::state(tx, "change_cursor")? != cursor {
                return Ok(queued);
            }
            let instances: HashMap<String, String> = settings
                .replication()
                .endpoints()?
                .into_iter()
                .filter_map(|e| e.instance.map(|i| (e.name, i)))
                .collect();
            for policy in settings.replication().policies()? {
                if !policy.enabled || !policy.on_change || policy.mode != Mode::Push {
                    continue;
                }
                let Ok(selector) = Selector::new(&policy.filters) else {
                    continue;
                };
                let selected: Vec<Change> = batch
                    .iter()
                    .map(|(_, c)| c)
                    .filter(|c| wanted(&policy, &selector, &instances, c))
                    .cloned()
                    .collect();
                if selected.is_empty() {
                    continue;
                }
                // A job of this policy that is still queued, and that no runner has begun to
                // plan, takes the new changes too, so a burst of pushes is one job, not one
                // per push. (Runners are started by this same loop, so `active` cannot
                // change under us.)
                let active = self.active.lock().expect("active lock").clone();
                let waiting = jobs::jobs(tx, 64, |j| {
                    j.policy == policy.name
                        && j.status == JobStatus::Pending
                        && matches!(j.trigger, Trigger::Change { .. })
                        && !active.contains_key(&j.id)
                })?;
                if let Some(mut job) = waiting.into_iter().next()
                    && let (JobScope::Changes { changes }, Trigger::Change { last: l, .. }) =
                        (&mut job.scope, &mut job.trigger)
                {
                    changes.extend(selected);
                    *l = last;
                    jobs::put_job(tx, &job)?;
                    continue;
                }
                let job = jobs::enqueue(
                    tx,
                    &policy.name,
                    Trigger::Change { first, last },
                    JobScope::Changes { changes: selected },
                    now,
                )?;
                queued.push(job.id);
            }
            jobs::set_state(tx, "change_cursor", last)?;
            changes::trim_through(tx, last)?;
            Ok(queued)
        })?;
        if !queued.is_empty() {
            tracing::debug!(jobs = ?queued, first, last, "replication: queued jobs for changes");
        }
        Ok(())
    }

    /// Queues a job for every enabled policy whose schedule has come due.
    pub(super) fn poll_schedules(&self) -> ReplicationResult<()> {
        let now = now_millis();
        let policies = self.policies()?;
        for policy in policies {
            let Some(text) = &policy.schedule else {
                continue;
            };
            let Ok(schedule) = crate::replication::schedule::parse(text) else {
                continue;
            };
            let key = format!("schedule/{}", policy.name);
            self.meta.write(|tx| -> ReplicationResult<()> {
                let due = jobs::state(tx, &key)?;
                if due == 0 {
                    // First sight of this schedule: it fires from now on, not for the past.
                    if let Some(next) = schedule.next_after(now) {
                        jobs::set_state(tx, &key, next)?;
                    }
                    return Ok(());
                }
                if now < due {
                    return Ok(());
                }
                if let Some(next) = schedule.next_after(now) {
                    jobs::set_state(tx, &key, next)?;
                }
                if !policy.enabled {
                    return Ok(());
                }
                // A scheduled run still going when the next comes due is not doubled.
                let busy = !jobs::jobs(tx, 64, |j| {
                    j.policy == policy.name
                        && !j.status.is_final()
                        && j.trigger == Trigger::Schedule
                })?
                .is_empty();
                if !busy {
                    jobs::enqueue(tx, &policy.name, Trigger::Schedule, JobScope::All, now)?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Starts a runner for unfinished jobs, oldest first, up to the configured number.
    pub(super) fn start_jobs(self: &Arc<Self>) -> MetaResult<()> {
        let unfinished = jobs::unfinished(&self.meta.read()?)?;
        for job in unfinished {
            let mut active = self.active.lock().expect("active lock");
            if active.contains_key(&job.id) {
                continue;
            }
            if active.len() >= self.config.max_concurrent_jobs.max(1) {
                break;
            }
            let token = CancellationToken::new();
            active.insert(job.id, token.clone());
            drop(active);
            let this = self.clone();
            tokio::spawn(async move {
                let id = job.id;
                if let Err(e) = this.run_job(id, token).await {
                    tracing::error!(job = id, error = %e, "replication job failed to run");
                    let _ = this.fail_job(id, &format!("the engine failed: {e}"));
                }
                this.active.lock().expect("active lock").remove(&id);
                // Keep the record of finished jobs bounded as they finish, not only every
                // few minutes (goharbor/harbor#16764).
                if let Err(e) = this.cleanup() {
                    tracing::error!(error = %e, "replication: cleanup failed");
                }
                this.wake.notify_one();
            });
        }
        Ok(())
    }

    /// Removes finished jobs past their retention, and the oldest beyond the cap.
    pub(super) fn cleanup(&self) -> MetaResult<usize> {
        let horizon =
            now_millis().saturating_sub(self.config.job_retention_days * 24 * 3600 * 1000);
        let finished = jobs::jobs(&self.meta.read()?, usize::MAX, |j| j.status.is_final())?;
        let doomed: Vec<u64> = finished
            .iter()
            .enumerate()
            .filter(|(rank, j)| {
                *rank >= self.config.max_finished_jobs
                    || j.finished_at.unwrap_or(j.created_at) < horizon
            })
            .map(|(_, j)| j.id)
            .collect();
        if doomed.is_empty() {
            return Ok(0);
        }
        self.meta.write(|tx| -> MetaResult<()> {
            for id in &doomed {
                jobs::remove_job(tx, *id)?;
            }
            Ok(())
        })?;
        Ok(doomed.len())
    }

    pub(super) fn fail_job(&self, id: u64, error: &str) -> MetaResult<()> {
        self.meta.write(|tx| -> MetaResult<()> {
            if let Some(mut job) = jobs::job(tx, id)?
                && !job.status.is_final()
            {
                job.status = JobStatus::Failed;
                job.error = Some(error.to_string());
                job.finished_at = Some(now_millis());
                jobs::put_job(tx, &job)?;
            }
            Ok(())
        })
    }
}
