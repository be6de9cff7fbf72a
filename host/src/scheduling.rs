//! Resource scheduling: clusters (a provider plugin with its regions, settings and sealed
//! credentials, or a physical pool), the machines berth manages in them, their lifecycle,
//! the quotas of projects and where a new machine goes. It owns the `clusters`,
//! `machines`, `machine_transitions`, `quotas` and `pool_hosts` tables
//! (`storage/tables/scheduling.rs`); machine transitions go out on the event feed.
//!
//! Built so far: the tables on both backends, the lifecycle (`lifecycle.rs`), quotas
//! (`quotas.rs`), the durable first step of a create (`requests.rs`), physical pools'
//! inventory and allocation (`pool.rs`) and the cluster service with grants and quotas
//! (`clusters.rs`, served under `/api/v1/clusters`), the machine service (`machines.rs`),
//! operations as jobs (`engine.rs`, `provisioning.rs`, `stop_start.rs`), provider calls
//! (`provider.rs`), pool hosts' power (`power.rs`, `ipmi.rs`), probes and health
//! (`probe.rs`, `health.rs`), reconciliation (`reconcile.rs`), placement across clusters
//! (`placement.rs`), what machines cost (`costs.rs`, `ledger.rs`, `budgets.rs`) and the
//! webhook (`webhooks.rs`).

pub mod budgets;
mod cache;
pub mod clusters;
pub mod costs;
pub mod engine;
mod gathered_reads;
pub mod health;
pub mod ipmi;
pub mod ledger;
pub mod lifecycle;
pub mod machines;
pub mod placement;
pub mod pool;
mod power;
pub mod probe;
pub mod provider;
mod provisioning;
pub mod quotas;
pub mod reconcile;
pub mod requests;
pub mod stop_start;
pub mod webhooks;

#[cfg(test)]
pub(crate) mod testing {
    //! What the scheduling unit tests share.

    use super::ClusterRecord;

    /// An enabled cluster of `provider` named `name`, granted to `projects`.
    pub(crate) fn cluster(name: &str, provider: &str, projects: &[&str]) -> ClusterRecord {
        ClusterRecord {
            name: name.into(),
            provider: provider.into(),
            regions: Vec::new(),
            endpoint: None,
            settings: serde_json::Value::Null,
            sealed_credentials: None,
            labels: Default::default(),
            projects: projects.iter().map(|p| p.to_string()).collect(),
            probe: Default::default(),
            enabled: true,
            created_by: "admin".into(),
            created_at: 1,
            updated_at: 1,
        }
    }
}

use std::sync::Arc;

use crate::auth::AccessControl;
use crate::config::SchedulingConfig;
use crate::plugins::PluginHost;
use crate::storage::sealing::Sealer;
use crate::storage::store::{Store, StoreError};

pub use crate::storage::tables::scheduling::{
    ClusterRecord, MachineFilter, MachineRecord, MachineSpec, MachineState, PoolHostRecord,
    PowerControl, QuotaRecord, TransitionRecord,
};

/// Why a scheduling operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum SchedulingError {
    /// No such cluster, machine or project.
    #[error("{0}")]
    NotFound(String),
    /// A malformed request.
    #[error("{0}")]
    Invalid(String),
    /// The request conflicts with what exists.
    #[error("{0}")]
    Conflict(String),
    /// The cluster's provider could not answer what the request needs.
    #[error("{0}")]
    Provider(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<pool::PoolError> for SchedulingError {
    fn from(e: pool::PoolError) -> SchedulingError {
        match e {
            pool::PoolError::NotAPool(m) | pool::PoolError::Invalid(m) => {
                SchedulingError::Invalid(m)
            }
            pool::PoolError::NoCapacity { .. } => SchedulingError::Conflict(e.to_string()),
            pool::PoolError::Lifecycle(lifecycle::LifecycleError::Store(e)) => e.into(),
            pool::PoolError::Lifecycle(lifecycle::LifecycleError::NotFound(m)) => {
                SchedulingError::NotFound(format!("no machine {m}"))
            }
            pool::PoolError::Lifecycle(e) => SchedulingError::Conflict(e.to_string()),
        }
    }
}

/// Result alias of the scheduling service.
pub type SchedulingResult<T> = Result<T, SchedulingError>;

/// The scheduling service.
pub struct Scheduling {
    store: Store,
    /// Access control: its audit log records the moves berth makes itself.
    auth: Arc<AccessControl>,
    sealer: Arc<Sealer>,
    plugins: Arc<PluginHost>,
    config: SchedulingConfig,
    /// This node's name, which its operations' leases carry.
    node: String,
    /// Wakes the engine: an operation was queued, or a machine moved.
    wake: tokio::sync::Notify,
    /// Operations running on this node.
    running: engine::Running,
    /// Since when machines fail their health probe, as this node saw it.
    failing: health::Failing,
    /// Where webhook delivery stands on this node.
    delivery: std::sync::Mutex<webhooks::Delivery>,
    /// The webhook's HTTP client.
    http: reqwest::Client,
    /// What each provider cluster offers, as its provider last described it
    /// (`provider.rs`).
    descriptions: provider::Descriptions,
    /// On-demand prices providers gave, for placement (`provider.rs`).
    prices: provider::Prices,
    /// Each failing provider cluster's backoff, on this node (`reconcile.rs`).
    backoff: reconcile::Backoff,
    /// Whether a reconcile round runs on this node.
    reconciling: std::sync::atomic::AtomicBool,
    /// The last hour (ms) this node accrued costs up to, or found another node doing it.
    accrued_hour: std::sync::atomic::AtomicU64,
    /// Reads of machines being made, gathered per cluster and region
    /// (`gathered_reads.rs`).
    reads: gathered_reads::GatheredReads,
}

impl std::fmt::Debug for Scheduling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduling").finish_non_exhaustive()
    }
}

impl Scheduling {
    /// The service over the metadata store; credentials are sealed with `sealer`, and
    /// providers are `plugins`' cloud-provider plugins.
    pub fn new(
        store: Store,
        auth: Arc<AccessControl>,
        sealer: Arc<Sealer>,
        plugins: Arc<PluginHost>,
        config: SchedulingConfig,
        node: String,
    ) -> Scheduling {
        let (descriptions, prices) = provider::answer_caches();
        Scheduling {
            store,
            auth,
            sealer,
            plugins,
            config,
            node,
            wake: tokio::sync::Notify::new(),
            running: Default::default(),
            failing: Default::default(),
            delivery: Default::default(),
            http: reqwest::Client::new(),
            descriptions,
            prices,
            backoff: Default::default(),
            reconciling: Default::default(),
            accrued_hour: Default::default(),
            reads: Default::default(),
        }
    }
}
