//! The storage interface, table by table: the records each component keeps and the
//! operations on them, as traits that every backend implements (`backends/redb/`,
//! `backends/postgres/`). One file per owning component; only that component calls them.
//! Every table of berth is here; `storage::meta` is only the redb database under the
//! embedded backend.

pub mod audit;
pub mod auth;
pub mod cost;
pub mod events;
pub mod jobs;
pub mod plugins;
pub mod registry;
pub mod replication;
pub mod scheduling;
