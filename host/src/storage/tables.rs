//! The storage interface, table by table: the records each component keeps and the
//! operations on them, as traits that every backend implements (`backends/redb/`,
//! `backends/postgres/`). One file per owning component; only that component calls them.
//!
//! Tables move here from `storage::meta` one component at a time; until a component has
//! moved, it keeps its tables in redb alone (ARCHITECTURE.md lists which).

pub mod audit;
pub mod auth;
pub mod jobs;
pub mod plugins;
pub mod replication;
