//! Synchronous delivery: a client's manifest push to this instance is acknowledged only
//! once every destination of every `sync` policy that selects it holds the manifest and
//! all its blobs, so that losing this instance loses nothing it acknowledged.
//!
//! A destination that cannot be reached is retried within the push until it has been
//! unreachable for the policy's `degrade_after_secs`; from then on pushes are
//! acknowledged without it (the policy is degraded: logged as an error, shown by
//! `berth replication status` and the `berth_replication_degraded` metric) while the
//! change jobs queue what it misses. The engine probes a degraded destination every few
//! seconds; once it answers, pushes wait for it again and the queued jobs catch it up.
//!
//! Which links are degraded is in the metadata store (`replication_degraded`), so every
//! node of a cluster stops waiting once one node gave up, and any node's probe restores
//! the link for all. How long a link has been failing, and when this node last probed
//! it, are each node's own: they time this node's attempts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Replication;
use super::local::Local;
use super::policies::{Delivery, Mode, Selector};
use super::side::SideError;
use super::transfer::{Copier, CopyOptions};
use crate::storage::store::{StoreResult, now_millis};
use crate::storage::tables::replication::DegradedLink;

/// How often a degraded destination is probed.
pub(super) const PROBE_EVERY: Duration = Duration::from_secs(2);

/// Pause between two attempts within one push.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// This node's timing of one destination of one sync policy.
#[derive(Debug, Default)]
struct Link {
    /// Since when every attempt from this node failed (cleared by a success).
    unreachable_since: Option<Instant>,
    /// When this node last probed it while degraded.
    last_probe: Option<Instant>,
}

/// This node's timing of sync links, by (policy, endpoint).
#[derive(Debug, Default)]
pub(super) struct SyncLinks(Mutex<HashMap<(String, String), Link>>);

/// A degraded destination, for status and metrics.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Degraded {
    /// The endpoint pushes no longer wait for.
    pub endpoint: String,
    /// Since when (ms since the epoch).
    pub since: u64,
    /// The failure that degraded it.
    pub error: String,
    /// The node that gave up on it.
    pub node: String,
}

impl From<DegradedLink> for Degraded {
    fn from(link: DegradedLink) -> Degraded {
        Degraded {
            endpoint: link.endpoint,
            since: link.since,
            error: link.error,
            node: link.node,
        }
    }
}

#[async_trait::async_trait]
impl crate::registry::AckGate for Replication {
    async fn before_ack(&self, repository: &str, reference: &str) {
        let Ok(policies) = self.policies() else {
            return; // the async jobs will carry it; nothing better to do here
        };
        let tag = (!reference.contains(':')).then_some(reference);
        for policy in policies {
            if !policy.enabled || policy.mode != Mode::Push || policy.delivery != Delivery::Sync {
                continue;
            }
            let Ok(selector) = Selector::new(&policy.filters) else {
                continue;
            };
            if !selector.repository(repository) || !selector.tag(tag) {
                continue;
            }
            let destination = policy.destination_repository(repository);
            let deadline = Duration::from_secs(policy.degrade_after_secs);
            for endpoint in &policy.endpoints {
                self.deliver(
                    &policy.name,
                    endpoint,
                    policy.override_existing,
                    repository,
                    reference,
                    &destination,
                    deadline,
                )
                .await;
            }
        }
    }
}

impl Replication {
    /// Copies one artifact to one sync destination now, retrying until it is there or
    /// the destination has been unreachable for `degrade_after`.
    #[allow(clippy::too_many_arguments)]
    async fn deliver(
        &self,
        policy: &str,
        endpoint: &str,
        override_existing: bool,
        repository: &str,
        reference: &str,
        destination: &str,
        degrade_after: Duration,
    ) {
        let key = (policy.to_string(), endpoint.to_string());
        if self.is_degraded(&key).await {
            return;
        }
        let source = Local::new(self.registry.clone(), None);
        let options = CopyOptions {
            override_existing,
            parallel_blobs: self.config.parallel_blobs,
            throttle: None,
        };
        loop {
            let result = match self.remote(endpoint) {
                Ok(sink) => {
                    let copier = Copier {
                        source: &source,
                        sink: sink.as_ref(),
                        target: endpoint,
                        gate: &self.gate,
                        options: &options,
                    };
                    let copy = copier.copy(repository, reference, destination);
                    match tokio::time::timeout(degrade_after, copy).await {
                        Ok(result) => result.map(|_| ()),
                        Err(_) => Err(SideError::Failed(format!(
                            "no answer within {}s",
                            degrade_after.as_secs()
                        ))),
                    }
                }
                Err(e) => Err(SideError::Refused(e.to_string())),
            };
            let error = match result {
                Ok(()) => {
                    let mut links = self.sync.0.lock().expect("sync lock");
                    links.entry(key).or_default().unreachable_since = None;
                    return;
                }
                Err(SideError::NotFound(e)) => {
                    // The content is gone here (deleted since): nothing left to deliver.
                    tracing::debug!(policy, endpoint, repository, reference, error = %e, "sync replication: the push is gone before it was delivered");
                    return;
                }
                Err(e) if e.can_heal() => e.to_string(),
                Err(e) => {
                    // The destination refuses this content itself: waiting cannot help,
                    // and acknowledging as if delivered would hide it. Degrade loudly; the
                    // change job keeps it and reports the refusal.
                    self.degrade(&key, repository, reference, &e.to_string(), None)
                        .await;
                    return;
                }
            };
            let since = {
                let mut links = self.sync.0.lock().expect("sync lock");
                *links
                    .entry(key.clone())
                    .or_default()
                    .unreachable_since
                    .get_or_insert_with(Instant::now)
            };
            if since.elapsed() >= degrade_after {
                self.degrade(&key, repository, reference, &error, Some(since.elapsed()))
                    .await;
                return;
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// Whether pushes go without `key`'s destination. A store that cannot be read counts
    /// as not degraded: the push then waits for the destination, which is the safe side.
    async fn is_degraded(&self, key: &(String, String)) -> bool {
        let (policy, endpoint) = key.clone();
        let link = self
            .store
            .read(move |tx| tx.replication().degraded_link(&policy, &endpoint))
            .await;
        match link {
            Ok(link) => link.is_some(),
            Err(e) => {
                tracing::warn!(policy = %key.0, endpoint = %key.1, error = %e, "sync replication: cannot read whether the destination is degraded; waiting for it");
                false
            }
        }
    }

    /// The degraded destinations of `policy`, as every node sees them.
    pub(super) fn degraded_of(
        tx: &dyn crate::storage::store::ReadTx,
        policy: &str,
    ) -> StoreResult<Vec<Degraded>> {
        Ok(tx
            .replication()
            .degraded_links()?
            .into_iter()
            .filter(|l| l.policy == policy)
            .map(Degraded::from)
            .collect())
    }

    /// Marks a sync link degraded, loudly: from now on pushes are acknowledged without it
    /// on every node, and what it misses waits in the change jobs. A link another node
    /// degraded already keeps its record (its `since` is the earlier).
    async fn degrade(
        &self,
        key: &(String, String),
        repository: &str,
        reference: &str,
        error: &str,
        unreachable_for: Option<Duration>,
    ) {
        let (policy, endpoint) = (&key.0, &key.1);
        self.sync
            .0
            .lock()
            .expect("sync lock")
            .entry(key.clone())
            .or_default()
            .last_probe = Some(Instant::now());
        let link = DegradedLink {
            policy: policy.clone(),
            endpoint: endpoint.clone(),
            since: now_millis(),
            error: error.to_string(),
            node: self.node.clone(),
        };
        let stored = self
            .store
            .write(move |tx| -> StoreResult<()> {
                if tx
                    .replication()
                    .degraded_link(&link.policy, &link.endpoint)?
                    .is_none()
                {
                    tx.replication().put_degraded_link(&link)?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = stored {
            // Not recorded: this push goes on without the destination all the same; the
            // next one tries it again.
            tracing::warn!(policy = %policy, endpoint = %endpoint, error = %e, "sync replication: cannot record the degraded destination");
        }
        tracing::error!(
            policy = %policy,
            endpoint = %endpoint,
            repository,
            reference,
            unreachable_secs = unreachable_for.map(|d| d.as_secs()),
            error = %error,
            "SYNC REPLICATION DEGRADED: {endpoint} did not take {repository}:{reference}; pushes are acknowledged without it from now on, and what it misses is queued in the change jobs and sent once it accepts it"
        );
    }

    /// Whether the change jobs of `policy` have delivered everything to `endpoint`: no
    /// unfinished task targets it.
    fn caught_up(&self, policy: &str, endpoint: &str) -> bool {
        let pending = self
            .store
            .read_blocking(|tx| -> crate::storage::store::StoreResult<bool> {
                for job in super::jobs::unfinished(tx)?
                    .iter()
                    .filter(|j| j.policy == policy)
                {
                    let tasks = super::jobs::tasks(tx, job.id)?;
                    if tasks
                        .iter()
                        .any(|t| t.target == endpoint && !t.status.is_final())
                    {
                        return Ok(true);
                    }
                    if tasks.is_empty() {
                        return Ok(true); // not planned yet: it may well target the endpoint
                    }
                }
                Ok(false)
            });
        !pending.unwrap_or(true)
    }

    /// Probes degraded destinations (those this node has not probed for a while; every
    /// node probes, which costs a peer one `/v2/` check per node every few seconds); one
    /// that answers again and has taken everything the change jobs held for it is waited
    /// for again, by every node.
    pub(super) async fn probe_degraded(&self) {
        let links = match self
            .store
            .read(|tx| tx.replication().degraded_links())
            .await
        {
            Ok(links) => links,
            Err(e) => {
                tracing::debug!(error = %e, "sync replication: cannot read the degraded destinations");
                return;
            }
        };
        let due: Vec<DegradedLink> = {
            let mut mine = self.sync.0.lock().expect("sync lock");
            links
                .into_iter()
                .filter(|l| {
                    mine.entry((l.policy.clone(), l.endpoint.clone()))
                        .or_default()
                        .last_probe
                        .is_none_or(|t| t.elapsed() >= PROBE_EVERY)
                })
                .collect()
        };
        for link in due {
            let key = (link.policy.clone(), link.endpoint.clone());
            // Answering is not enough: a destination that answers but refuses (no project
            // yet, no rights) would degrade the next push again after holding it for
            // `degrade_after_secs`. It is healthy once the queued changes got through.
            let healthy = match self.remote(&key.1) {
                Ok(remote) => remote.check().await.is_ok() && self.caught_up(&key.0, &key.1),
                Err(_) => false,
            };
            {
                let mut mine = self.sync.0.lock().expect("sync lock");
                let timing = mine.entry(key.clone()).or_default();
                timing.last_probe = Some(Instant::now());
                if healthy {
                    timing.unreachable_since = None;
                }
            }
            if !healthy {
                continue;
            }
            // Cleared only if it is still the record this probe judged: a node that
            // degraded the link again since keeps it degraded.
            let cleared = self
                .store
                .write(move |tx| -> StoreResult<bool> {
                    match tx
                        .replication()
                        .degraded_link(&link.policy, &link.endpoint)?
                    {
                        Some(now) if now == link => tx
                            .replication()
                            .remove_degraded_link(&link.policy, &link.endpoint),
                        _ => Ok(false),
                    }
                })
                .await;
            match cleared {
                Ok(true) => {
                    tracing::warn!(policy = %key.0, endpoint = %key.1, "sync replication resumed: the destination answers again; queued changes are catching it up");
                    self.wake.notify_one();
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(policy = %key.0, endpoint = %key.1, error = %e, "sync replication: cannot clear the degraded destination; probing again")
                }
            }
        }
    }
}
