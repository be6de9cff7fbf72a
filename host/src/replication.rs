//! Replication: endpoints (the registries this instance replicates with), policies (what
//! goes where, when and how), and the durable job engine that carries them out.
//!
//! ```text
//! registry writes ─► event feed (crate::events) ───────────┐
//! cron schedules ──────────────────────────────────────────┼─► jobs (durable queue)
//! berth replication run / API ─────────────────────────────┘        │ strategy plugin plans
//!                                                                    ▼
//!                          tasks in waves ─► transfer: Source ─► Sink (local storage or
//!                                            a remote registry over the OCI API)
//! ```
//!
//! The registry does not know replication exists: it publishes its changes to the event
//! feed ([`crate::events`]); replication follows the feed with a cursor of its own, and
//! writes through the registry's own [`crate::registry::content`] functions when it
//! fetches.

pub mod delegate;
mod endpoint_admin;
pub mod endpoints;
mod engine;
mod job_admin;
pub mod jobs;
pub mod local;
pub mod metadata;
pub mod plan;
pub mod policies;
mod policy_admin;
pub mod remote;
pub mod schedule;
pub mod side;
mod status;
pub mod sync;
pub mod transfer;

use futures::future::BoxFuture;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::ReplicationConfig;
use crate::plugins::PluginHost;
use crate::registry::Registry;
use crate::storage::sealing::Sealer;
use crate::storage::store::{Store, StoreError};
use jobs::JobStatus;
use remote::Remote;

/// Why a replication request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// Malformed or contradictory input.
    #[error("{0}")]
    Invalid(String),
    /// No such endpoint, policy or job.
    #[error("{0}")]
    NotFound(String),
    /// The name is taken, or the thing is in use.
    #[error("{0}")]
    Conflict(String),
    /// The metadata store failed.
    #[error(transparent)]
    Store(StoreError),
}

/// Result alias for replication operations.
pub type ReplicationResult<T> = Result<T, ReplicationError>;

/// Checks an endpoint or policy name: lowercase letters, digits, `.`, `_` and `-`,
/// starting with a letter or digit, at most 63 characters.
pub fn check_name(what: &str, name: &str) -> ReplicationResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ReplicationError::Invalid(format!(
            "invalid {what} name {:?}: lowercase letters, digits, '.', '_' and '-', starting with a letter or digit, at most 63 characters",
            name.chars().take(80).collect::<String>()
        )))
    }
}

/// Why a job running on this node stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// An operator cancelled it (here or on another node), or it ended elsewhere: what is
    /// left of it is cancelled.
    Cancelled,
    /// Another node took it over (this node's lease lapsed): what is left is that node's.
    TakenOver,
    /// This node is shutting down: what is left runs when the job is claimed next.
    Shutdown,
}

/// The replication service of one berth.
pub struct Replication {
    /// Replication's settings (endpoints, policies, metadata versions), its jobs and
    /// auth's records, through the storage interface.
    store: Store,
    /// This node's name, which its job leases carry.
    node: String,
    registry: Arc<Registry>,
    plugins: Arc<PluginHost>,
    sealer: Arc<Sealer>,
    config: ReplicationConfig,
    /// Wakes the engine: a job was queued, cancelled or finished.
    wake: Notify,
    /// Jobs running in this process, with their cancellation.
    active: Mutex<HashMap<u64, CancellationToken>>,
    /// Why a job running here was stopped before its end.
    stops: Mutex<HashMap<u64, Stop>>,
    /// A client per endpoint, rebuilt when the endpoint changes (by `updated_at`).
    remotes: Mutex<HashMap<String, (u64, Arc<Remote>)>>,
    /// Blobs being sent, over all jobs, so that two jobs never send one blob to one
    /// destination at once.
    gate: Arc<transfer::BlobGate>,
    /// Transfers this instance runs for others (see [`delegate`]).
    transfers: delegate::Transfers,
    /// Sync policies' destinations, and which of them are degraded (see [`sync`]).
    sync: sync::SyncLinks,
}

impl std::fmt::Debug for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replication").finish_non_exhaustive()
    }
}

/// How an endpoint answered a check.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EndpointHealth {
    /// The endpoint.
    pub name: String,
    /// It answered as a registry and accepted the credentials.
    pub healthy: bool,
    /// How long the check took, in milliseconds.
    pub latency_ms: u64,
    /// What went wrong, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One policy's state, for `berth replication status`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PolicyStatus {
    /// The policy.
    pub policy: String,
    /// Whether it runs.
    pub enabled: bool,
    /// `async` or `sync`.
    pub delivery: policies::Delivery,
    /// Sync destinations that pushes no longer wait for, because they were unreachable
    /// for longer than the policy allows.
    pub degraded: Vec<sync::Degraded>,
    /// Its unfinished jobs.
    pub unfinished_jobs: u32,
    /// Transfers and deletes queued or running in those jobs: what this instance has not
    /// yet delivered to the policy's destinations.
    pub pending_tasks: u32,
    /// Changes queued in those jobs that are not yet planned into tasks.
    pub pending_changes: u32,
    /// The latest job's id and outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_job: Option<u64>,
    /// The latest job's status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<JobStatus>,
    /// When its schedule fires next (ms since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_run: Option<u64>,
}

/// The whole engine's state.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Status {
    /// This instance's name in topologies.
    pub instance: String,
    /// Registry changes not yet read by the engine (normally 0 within a second).
    pub unread_changes: u64,
    /// Jobs running in this process now.
    pub running_jobs: u32,
    /// Per policy.
    pub policies: Vec<PolicyStatus>,
    /// What an operator should fix: instance names that collide with a peer's.
    pub warnings: Vec<String>,
}

/// Replication's name as a consumer of the event feed.
pub(crate) const CONSUMER: &str = "replication";

impl Replication {
    /// The service over the registry's stores; starts nothing (see [`Replication::start`]).
    pub fn new(
        registry: Arc<Registry>,
        plugins: Arc<PluginHost>,
        sealer: Arc<Sealer>,
        config: ReplicationConfig,
        node: String,
    ) -> anyhow::Result<Arc<Replication>> {
        Ok(Arc::new(Replication {
            node,
            store: registry.metadata.clone(),
            registry,
            plugins,
            sealer,
            config,
            wake: Notify::new(),
            active: Mutex::new(HashMap::new()),
            stops: Mutex::new(HashMap::new()),
            remotes: Mutex::new(HashMap::new()),
            gate: Arc::default(),
            transfers: Default::default(),
            sync: Default::default(),
        }))
    }

    /// Holds the registry's acknowledgements of pushes that sync policies select until
    /// they are delivered, and returns the engine's loop, for the caller to run under its
    /// supervisor (`crate::supervisor`).
    pub fn start(self: &Arc<Self>) -> impl FnMut() -> BoxFuture<'static, ()> + Send + 'static {
        if let Ok(warnings) = self.name_warnings() {
            for warning in warnings {
                tracing::warn!("{warning}");
            }
        }
        let _ = self.registry.ack_gate.set(self.clone());
        // The cursor decides which pushes are replicated: from the oldest kept event, as
        // a data directory from before the event feed did with its change feed.
        if let Err(e) = self
            .registry
            .feed
            .register(CONSUMER, crate::events::Start::Oldest)
        {
            tracing::error!(error = %e, "replication: cannot register with the event feed; retrying when the engine starts");
        }
        let this = self.clone();
        move || Box::pin(this.clone().run_engine())
    }

    /// Stops the jobs running here (their leases are released, so another node, or this
    /// one after a restart, takes them up where they were) and waits up to `grace` for
    /// their runners to end.
    pub async fn shutdown(&self, grace: std::time::Duration) {
        let running: Vec<u64> = self
            .active
            .lock()
            .expect("active lock")
            .keys()
            .copied()
            .collect();
        for id in &running {
            self.stop_job(*id, Stop::Shutdown);
        }
        let deadline = tokio::time::Instant::now() + grace;
        while !self.active.lock().expect("active lock").is_empty()
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Stops job `id` if it runs here; the first reason given is the one that counts.
    pub(crate) fn stop_job(&self, id: u64, why: Stop) {
        self.stops
            .lock()
            .expect("stops lock")
            .entry(id)
            .or_insert(why);
        if let Some(token) = self.active.lock().expect("active lock").get(&id) {
            token.cancel();
        }
    }

    /// Why job `id` was stopped here, if it was.
    pub(crate) fn stop_reason(&self, id: u64) -> Option<Stop> {
        self.stops.lock().expect("stops lock").get(&id).copied()
    }

    /// The sealer endpoints' passwords are sealed with.
    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }
}

impl From<ReplicationError> for side::SideError {
    fn from(e: ReplicationError) -> side::SideError {
        side::SideError::Refused(e.to_string())
    }
}

impl From<StoreError> for ReplicationError {
    fn from(e: StoreError) -> ReplicationError {
        ReplicationError::Store(e)
    }
}

/// Auth's refusals keep their kind; its store failures stay store failures.
impl From<crate::auth::AuthStoreError> for ReplicationError {
    fn from(e: crate::auth::AuthStoreError) -> ReplicationError {
        use crate::auth::AuthStoreError as A;
        match e {
            A::Store(e) => ReplicationError::Store(e),
            A::Invalid(m) | A::Forbidden(m) => ReplicationError::Invalid(m),
            A::NotFound(m) => ReplicationError::NotFound(m),
            A::Conflict(m) => ReplicationError::Conflict(m),
        }
    }
}
