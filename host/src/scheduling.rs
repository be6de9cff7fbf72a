//! Resource scheduling: clusters (a provider plugin with its regions, settings and sealed
//! credentials, or a physical pool), the machines berth manages in them, their lifecycle,
//! the quotas of projects and where a new machine goes. It owns the `clusters`,
//! `machines`, `machine_transitions`, `quotas` and `pool_hosts` tables
//! (`storage/tables/scheduling.rs`); machine transitions go out on the event feed.
//!
//! Built so far: the tables on both backends, the lifecycle (`lifecycle.rs`), quotas
//! (`quotas.rs`), the durable first step of a create (`requests.rs`) and physical pools'
//! inventory and allocation (`pool.rs`). The services, provider calls, reconciliation,
//! placement and the API come next.

pub mod lifecycle;
pub mod pool;
pub mod quotas;
pub mod requests;

pub use crate::storage::tables::scheduling::{
    ClusterRecord, MachineFilter, MachineRecord, MachineSpec, MachineState, PoolHostRecord,
    QuotaRecord, TransitionRecord,
};
