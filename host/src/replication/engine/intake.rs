//! Intake: what turns the change feed and cron schedules into queued jobs, recovery after a
//! restart, starting queued jobs, and retention of finished ones.

use std::collections::HashMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::events::{self, Change, Event};
use crate::jobs::lease::{self, Claim, Renewal};
use crate::replication::jobs::{self, JobScope, JobStatus, TaskStatus, Trigger};
use crate::replication::policies::{Mode, Selector};
use crate::replication::{CONSUMER, Replication, ReplicationResult, Stop};
use crate::storage::store::{Durability, StoreResult, now_millis};

/// Changes read from the feed at a time.
const CHANGE_BATCH: usize = 1000;

use super::execute::wanted;

impl Replication {
    /// Restarts the tasks of job `id` (just claimed by this node) that were left running:
    /// by a node that died or stopped (`from`; possibly this node before a restart), or
    /// by this node's own shutdown. No one else runs them, since this node holds the
    /// lease; running them again is harmless, since a task skips what its destination
    /// already holds.
    fn restart_abandoned_tasks(&self, id: u64, from: Option<&str>) -> StoreResult<()> {
        let restarted =
            self.store
                .write_blocking(Durability::Immediate, |tx| -> StoreResult<u32> {
                    let mut restarted = 0;
                    for mut task in jobs::tasks(tx.read(), id)? {
                        if task.status == TaskStatus::Running {
                            task.status = TaskStatus::Pending;
                            task.not_before = 0;
                            jobs::put_task(tx, &task)?;
                            restarted += 1;
                        }
                    }
                    Ok(restarted)
                })?;
        if from.is_some() || restarted > 0 {
            tracing::info!(
                job = id,
                from = from.unwrap_or("(no lease)"),
                tasks_restarted = restarted,
                "replication: resuming a job its node stopped working on"
            );
        }
        Ok(())
    }

    /// Turns new registry events into jobs of the policies that follow changes, and moves
    /// replication's cursor past them, in one transaction.
    pub(super) fn poll_changes(&self) -> ReplicationResult<()> {
        self.registry.feed.sequence()?;
        let batch = self
            .store
            .read_blocking(|tx| events::read(tx, CONSUMER, CHANGE_BATCH))?;
        let Some(last) = batch.last() else {
            return Ok(());
        };
        let first = batch.events[0].0;
        let changes: Vec<Change> = batch
            .events
            .iter()
            // Other streams (machine transitions, budget alerts) are not replication's; the cursor moves
            // past them all the same.
            .filter_map(|(_, event)| match event {
                Event::Registry(change) => Some(change.clone()),
                Event::Machine(_) | Event::Budget(_) => None,
            })
            .collect();
        let now = now_millis();
        let queued = self.store.write_blocking(
            Durability::Immediate,
            |tx| -> ReplicationResult<Vec<u64>> {
                let mut queued = Vec::new();
                // Another node may have queued these changes meanwhile: the cursor moved, and
                // queueing them twice would replicate them twice. (On PostgreSQL the check and
                // the move are one serializable transaction.)
                if !events::acknowledge(tx, CONSUMER, batch.cursor, last)? {
                    return Ok(queued);
                }
                let instances: HashMap<String, String> = tx
                    .replication()
                    .endpoints()?
                    .into_iter()
                    .filter_map(|e| e.instance.map(|i| (e.name, i)))
                    .collect();
                let unfinished = jobs::unfinished_leased(tx.read())?;
                for policy in tx.replication().policies()? {
                    if !policy.enabled || !policy.on_change || policy.mode != Mode::Push {
                        continue;
                    }
                    let Ok(selector) = Selector::new(&policy.filters) else {
                        continue;
                    };
                    let selected: Vec<Change> = changes
                        .iter()
                        .filter(|c| wanted(&policy, &selector, &instances, c))
                        .cloned()
                        .collect();
                    if selected.is_empty() {
                        continue;
                    }
                    // A job of this policy that is still queued, and that no node has claimed to
                    // plan, takes the new changes too, so a burst of pushes is one job, not one
                    // per push. (Should a node claim it meanwhile, its planning sees the scope
                    // grew and plans again.)
                    let waiting = unfinished.iter().rev().find(|(j, lease)| {
                        j.policy == policy.name
                            && j.status == JobStatus::Pending
                            && matches!(j.trigger, Trigger::Change { .. })
                            && lease.is_none()
                    });
                    if let Some(mut job) = waiting.map(|(j, _)| j.clone())
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
                Ok(queued)
            },
        )?;
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
            // Read, compared and moved in one transaction: of several nodes, one queues
            // the run and the others see the schedule moved on.
            self.store
                .write_blocking(Durability::Immediate, |tx| -> ReplicationResult<()> {
                    let due = jobs::state(tx.read(), &key)?;
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
                    let unfinished_here = crate::jobs::JobFilter {
                        subject: Some(policy.name.clone()),
                        unfinished: true,
                        ..Default::default()
                    };
                    let busy = !jobs::jobs(tx.read(), &unfinished_here, 1, |j| {
                        j.trigger == Trigger::Schedule
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

    /// Claims unfinished jobs no live node works on, oldest first, up to the configured
    /// number running here, and starts a runner for each, with a keeper that renews its
    /// lease and stops it when the job is cancelled or taken over.
    pub(super) fn start_jobs(self: &Arc<Self>) -> ReplicationResult<()> {
        let now = now_millis();
        let unfinished = self.store.read_blocking(jobs::unfinished_leased)?;
        for (job, lease) in unfinished {
            if self
                .active
                .lock()
                .expect("active lock")
                .contains_key(&job.id)
            {
                continue;
            }
            if self.active.lock().expect("active lock").len()
                >= self.config.max_concurrent_jobs.max(1)
            {
                break;
            }
            // A live lease of another node: that node works on it.
            if lease
                .as_ref()
                .is_some_and(|l| l.node != self.node && l.until > now)
            {
                continue;
            }
            let claim = self.store.write_blocking(Durability::Immediate, |tx| {
                lease::claim(tx, job.id, &self.node, now_millis(), self.lease_term_ms())
            })?;
            let Claim::Taken { taken_over_from } = claim else {
                continue;
            };
            self.restart_abandoned_tasks(job.id, taken_over_from.as_deref())?;
            let token = CancellationToken::new();
            self.active
                .lock()
                .expect("active lock")
                .insert(job.id, token.clone());
            let keeper = tokio::spawn(self.clone().keep_lease(job.id, token.clone()));
            let this = self.clone();
            tokio::spawn(async move {
                let id = job.id;
                if let Err(e) = this.run_job(id, token).await {
                    tracing::error!(job = id, error = %e, "replication job failed to run");
                    let _ = this.fail_job(id, &format!("the engine failed: {e}"));
                }
                keeper.abort();
                // A job left unfinished (this node is stopping) is free for the next node
                // at once rather than when the lease lapses.
                let released = this.store.write_blocking(Durability::Immediate, |tx| {
                    lease::release(tx, id, &this.node)
                });
                if let Err(e) = released {
                    tracing::warn!(job = id, error = %e, "replication: cannot release a job's lease; it lapses on its own");
                }
                this.active.lock().expect("active lock").remove(&id);
                this.stops.lock().expect("stops lock").remove(&id);
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

    /// How long a claim on a job lasts unless renewed.
    pub(in crate::replication) fn lease_term_ms(&self) -> u64 {
        self.config.job_lease_secs.max(1) * 1000
    }

    /// Renews this node's lease on job `id` three times a term while it runs; stops the
    /// runner (through `token`) when the job was cancelled or finished elsewhere, or
    /// another node took it over.
    async fn keep_lease(self: Arc<Self>, id: u64, token: CancellationToken) {
        let every = std::time::Duration::from_millis((self.lease_term_ms() / 3).max(100));
        loop {
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            let this = self.clone();
            let renewal = tokio::task::spawn_blocking(move || {
                // Lazily: a renewal lost in a crash died with the node that made it.
                this.store.write_blocking(Durability::Lazy, |tx| {
                    lease::renew(tx, id, &this.node, now_millis(), this.lease_term_ms())
                })
            })
            .await;
            match renewal {
                Ok(Ok(Renewal::Held)) => {}
                Ok(Ok(Renewal::Stop)) => {
                    tracing::info!(
                        job = id,
                        "replication: the job was cancelled or ended elsewhere; stopping it here"
                    );
                    self.stop_job(id, Stop::Cancelled);
                    return;
                }
                Ok(Ok(Renewal::Lost)) => {
                    tracing::warn!(
                        job = id,
                        "replication: another node took this job over; stopping it here"
                    );
                    self.stop_job(id, Stop::TakenOver);
                    return;
                }
                // The store is unreachable: keep working; if it stays so, the lease
                // lapses and another node takes over, and this one stops at its next
                // successful renewal.
                Ok(Err(e)) => {
                    tracing::warn!(job = id, error = %e, "replication: cannot renew a job's lease")
                }
                Err(_) => return,
            }
        }
    }

    /// Removes finished jobs past their retention, and the oldest beyond the cap; the same
    /// for delegated transfers (see `delegate.rs`).
    pub(super) fn cleanup(&self) -> ReplicationResult<usize> {
        let horizon =
            now_millis().saturating_sub(self.config.job_retention_days * 24 * 3600 * 1000);
        let jobs = self.store.write_blocking(Durability::Immediate, |tx| {
            crate::jobs::queue::retire(tx, jobs::KIND, horizon, self.config.max_finished_jobs)
        })?;
        Ok(jobs + self.retire_transfers()?)
    }

    pub(super) fn fail_job(&self, id: u64, error: &str) -> ReplicationResult<()> {
        self.store
            .write_blocking(Durability::Immediate, |tx| -> StoreResult<()> {
                if let Some(mut job) = jobs::job(tx.read(), id)?
                    && !job.status.is_final()
                {
                    job.status = JobStatus::Failed;
                    job.error = Some(error.to_string());
                    job.finished_at = Some(now_millis());
                    jobs::put_job(tx, &job)?;
                }
                Ok(())
            })?;
        Ok(())
    }
}
