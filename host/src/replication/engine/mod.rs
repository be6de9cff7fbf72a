//! The job engine: turns changes and schedules into jobs, plans each job with its
//! policy's strategy plugin, and runs its tasks wave by wave with retries, under the
//! policy's concurrency, the plan's per-link caps and the policy's bandwidth cap.
//!
//! Everything it decides is in the metadata store first: its event-feed cursor moves in
//! the same transaction that queues the jobs (so a change is never dropped, nor queued
//! twice), and tasks are written before they run. Jobs live in the shared jobs runner
//! (`crate::jobs`): a node runs a job while it holds the job's lease, and a job whose
//! node stopped (a restart, or another node dying) is taken over where it was; a task that
//! was running then runs again, which is harmless because a task skips what its
//! destination already holds.

use std::sync::Arc;
use std::time::Duration;

use super::Replication;
use super::policies::Mode;

/// How often the engine looks for work when nothing wakes it.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// How often a dual-primary pair's metadata is exchanged.
const METADATA_EVERY: Duration = Duration::from_secs(2);

/// How often finished jobs past their retention are removed.
const CLEANUP_EVERY: Duration = Duration::from_secs(600);

impl Replication {
    /// Runs the engine until the process ends.
    pub(super) async fn run_engine(self: Arc<Self>) {
        // Peers' instance names decide what is not sent back to them; learn the missing.
        if let Ok(list) = self.endpoints() {
            for e in list.into_iter().filter(|e| e.instance.is_none()) {
                let this = self.clone();
                tokio::spawn(async move { this.learn_instance(&e.name).await });
            }
        }
        let mut published = self.registry.feed.subscribe();
        let mut last_cleanup: Option<std::time::Instant> = None;
        let mut last_metadata: Option<std::time::Instant> = None;
        loop {
            if let Err(e) = self.poll_changes() {
                tracing::error!(error = %e, "replication: reading the change feed failed");
            }
            if let Err(e) = self.poll_schedules() {
                tracing::error!(error = %e, "replication: checking schedules failed");
            }
            if let Err(e) = self.start_jobs() {
                tracing::error!(error = %e, "replication: starting jobs failed");
            }
            self.probe_degraded().await;
            if last_metadata.is_none_or(|t| t.elapsed() > METADATA_EVERY) {
                self.sync_all_metadata().await;
                last_metadata = Some(std::time::Instant::now());
            }
            if last_cleanup.is_none_or(|t| t.elapsed() > CLEANUP_EVERY) {
                match self.cleanup() {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(jobs = n, "replication: removed old finished jobs"),
                    Err(e) => tracing::error!(error = %e, "replication: cleanup failed"),
                }
                last_cleanup = Some(std::time::Instant::now());
            }
            tokio::select! {
                () = self.wake.notified() => {}
                Ok(()) = published.changed() => {}
                () = tokio::time::sleep(IDLE_POLL) => {}
            }
        }
    }

    /// A metadata round for every enabled policy that keeps metadata converged.
    async fn sync_all_metadata(&self) {
        let Ok(list) = self.policies() else {
            return;
        };
        for policy in list
            .iter()
            .filter(|p| p.enabled && p.metadata && p.mode == Mode::Push)
        {
            match self.sync_metadata(policy).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(policy = %policy.name, records = n, "replication: metadata converged from the peer")
                }
                Err(e) => {
                    tracing::debug!(policy = %policy.name, error = %e, "replication: metadata round failed; retrying")
                }
            }
        }
    }
}

mod execute;
mod intake;
mod sides;
