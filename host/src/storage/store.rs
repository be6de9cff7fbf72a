//! The metadata interface: one [`Store`] over two backends (redb, embedded; PostgreSQL,
//! shared by several berth nodes), transactions as closures over [`ReadTx`] / [`WriteTx`],
//! and the errors every backend maps its own into.
//!
//! A transaction is a synchronous closure that runs on a blocking thread, whichever the
//! backend: redb is a blocking library, the PostgreSQL client used here is the synchronous
//! one, and neither an fsync nor a network round trip may hold an async request worker.
//! Callers on the async side use [`Store::read`] and [`Store::write`], which move the
//! closure to a blocking thread (redb reads, which never wait for a writer or a disk
//! flush, stay inline); code that is already blocking uses the `_blocking` forms.
//!
//! Each table is reached through an accessor of the transaction (`tx.plugins()`), which
//! hands out the table's trait from [`super::tables`]. A component calls only the
//! accessors of the tables it owns (`tests/architecture` enforces it), so a service owns
//! its tables and decides where its transactions begin and end.
//!
//! **Write closures may run more than once.** PostgreSQL runs writes at `SERIALIZABLE`
//! and retries a transaction that lost a conflict; a closure must therefore touch nothing
//! but the transaction (compute side effects from its result, after it returns).

use std::sync::Arc;

use super::backends::postgres::PgStore;
use super::backends::redb::RedbStore;
use super::meta::Metadata;
use super::tables::audit::{AuditRead, AuditWrite};
use super::tables::auth::{AuthRead, AuthWrite};
use super::tables::cost::{CostRead, CostWrite};
use super::tables::events::{EventsRead, EventsWrite};
use super::tables::jobs::{JobsRead, JobsWrite};
use super::tables::plugins::{PluginsRead, PluginsWrite};
use super::tables::registry::{RegistryRead, RegistryWrite};
use super::tables::replication::{ReplicationRead, ReplicationWrite};
use super::tables::scheduling::{SchedulingRead, SchedulingWrite};

/// Errors of the metadata store, whichever backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (I/O, connection, corruption, a constraint).
    #[error("metadata store: {0}")]
    Backend(String),
    /// A stored record did not decode.
    #[error("metadata record in table {table} is unreadable: {message}")]
    Decode {
        /// The table.
        table: &'static str,
        /// What was wrong with it.
        message: String,
    },
    /// The stored schema cannot be used by this build.
    #[error("{0}")]
    Schema(String),
    /// A transaction kept losing to concurrent ones (PostgreSQL serialization failures)
    /// and was given up after its retries.
    #[error(
        "metadata store: the transaction conflicted with concurrent ones {attempts} times; try again"
    )]
    Conflict {
        /// How many times it ran.
        attempts: u32,
    },
}

impl From<super::meta::MetaError> for StoreError {
    fn from(e: super::meta::MetaError) -> StoreError {
        match e {
            super::meta::MetaError::Db(e) => StoreError::Backend(e.to_string()),
            super::meta::MetaError::Decode { table, source } => StoreError::Decode {
                table,
                message: source.to_string(),
            },
            super::meta::MetaError::Schema(s) => StoreError::Schema(s),
        }
    }
}

/// Result alias for metadata operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// How a write transaction reaches the disk before it counts as done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Flushed (fsync, or PostgreSQL's synchronous commit) before `write` returns: what
    /// anything acknowledged to a client needs.
    Immediate,
    /// Flushed before `write` returns, as [`Durability::Immediate`], but the flush may wait
    /// a little (on redb, up to `backends::redb::group_commit::PATIENCE`) for other writes
    /// to share it: for background work that no client waits on (a machine operation's
    /// steps), whose writes trickle in one by one and would otherwise pay a flush each.
    Patient,
    /// Committed but not flushed: a crash may lose it (the next durable commit, or
    /// PostgreSQL's WAL writer, carries it to disk soon after). Only for state whose loss
    /// costs a retry, never for acknowledged data, and never for a write that publishes
    /// events: a lost event's id would be given again to another, and a consumer that saw
    /// the first would skip the second.
    Lazy,
}

/// The tables a read transaction reaches: a consistent snapshot.
pub trait ReadTx {
    /// The audit log (of the store [`Store::audit_log`] returns).
    fn audit(&self) -> &dyn AuditRead;

    /// The auth tables (`users`, `projects`, `members`, `robots`).
    fn auth(&self) -> &dyn AuthRead;

    /// Cost accounting's tables (`price_sheets`, `machine_rates`, `cost_entries`,
    /// `accrual_cursors`).
    fn cost(&self) -> &dyn CostRead;

    /// The event feed (`events`, `event_cursors`).
    fn events(&self) -> &dyn EventsRead;

    /// The jobs runner's tables (`jobs`, `job_tasks`, `job_state`).
    fn jobs(&self) -> &dyn JobsRead;

    /// The plugin host's tables (`plugins`, `plugin_secrets`).
    fn plugins(&self) -> &dyn PluginsRead;

    /// The registry's tables (repositories, blob links, manifests, tags and their
    /// history, referrers, upload sessions).
    fn registry(&self) -> &dyn RegistryRead;

    /// Replication's settings (`replication_endpoints`, `replication_policies`,
    /// `replication_metadata_versions`).
    fn replication(&self) -> &dyn ReplicationRead;

    /// Scheduling's tables (`clusters`, `machines`, `machine_transitions`, `quotas`,
    /// `pool_hosts`).
    fn scheduling(&self) -> &dyn SchedulingRead;
}

/// The tables a write transaction reaches; each table's write trait includes its reads,
/// which see the transaction's own writes.
pub trait WriteTx {
    /// The audit log (of the store [`Store::audit_log`] returns).
    fn audit(&self) -> &dyn AuditWrite;

    /// The auth tables (`users`, `projects`, `members`, `robots`).
    fn auth(&self) -> &dyn AuthWrite;

    /// Cost accounting's tables (`price_sheets`, `machine_rates`, `cost_entries`,
    /// `accrual_cursors`).
    fn cost(&self) -> &dyn CostWrite;

    /// The event feed (`events`, `event_cursors`).
    fn events(&self) -> &dyn EventsWrite;

    /// The jobs runner's tables (`jobs`, `job_tasks`, `job_state`).
    fn jobs(&self) -> &dyn JobsWrite;

    /// The plugin host's tables (`plugins`, `plugin_secrets`).
    fn plugins(&self) -> &dyn PluginsWrite;

    /// This transaction seen as a read, for code that only reads: its reads see its own
    /// writes.
    fn read(&self) -> &dyn ReadTx;

    /// The registry's tables.
    fn registry(&self) -> &dyn RegistryWrite;

    /// Replication's settings (`replication_endpoints`, `replication_policies`,
    /// `replication_metadata_versions`).
    fn replication(&self) -> &dyn ReplicationWrite;

    /// Scheduling's tables (`clusters`, `machines`, `machine_transitions`, `quotas`,
    /// `pool_hosts`).
    fn scheduling(&self) -> &dyn SchedulingWrite;
}

/// The metadata store: cheap to clone, shared by every service.
#[derive(Clone)]
pub struct Store {
    backend: Arc<Backend>,
}

enum Backend {
    Redb(RedbStore),
    Postgres(PgStore),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match &*self.backend {
            Backend::Redb(_) => "Store(redb)",
            Backend::Postgres(_) => "Store(postgres)",
        })
    }
}

impl Store {
    /// The embedded store over an open redb database; brings every component's tables
    /// to this build's schema.
    pub fn redb(meta: Arc<Metadata>) -> StoreResult<Store> {
        Ok(Store {
            backend: Arc::new(Backend::Redb(RedbStore::open(meta)?)),
        })
    }

    /// The embedded store in the redb database at `path`, created if there is none.
    /// Fails while another process has the database open.
    pub fn redb_at(path: &std::path::Path) -> StoreResult<Store> {
        Store::redb(Arc::new(Metadata::open(path)?))
    }

    /// The shared store in the PostgreSQL database at `url` (a `postgres://` URL or a
    /// `key=value` connection string), with at most `connections` open at once; brings
    /// the schema to this build's, under a lock that several nodes starting together share.
    /// Blocks: call from a blocking context.
    pub fn postgres(url: &str, connections: u32) -> StoreResult<Store> {
        Store::postgres_with_ca(url, connections, None)
    }

    /// [`Store::postgres`], trusting the CA certificates in `ca_pem` (PEM) beside the
    /// system's roots for the server's TLS certificate.
    pub fn postgres_with_ca(
        url: &str,
        connections: u32,
        ca_pem: Option<&[u8]>,
    ) -> StoreResult<Store> {
        Ok(Store {
            backend: Arc::new(Backend::Postgres(PgStore::open(url, connections, ca_pem)?)),
        })
    }

    /// The store that keeps the audit log. On redb, a database of its own at
    /// `redb_path` (every pull writes an entry, and that stream of commits must not
    /// contend with registry reads); on PostgreSQL, this store.
    pub fn audit_log(&self, redb_path: &std::path::Path) -> StoreResult<Store> {
        match &*self.backend {
            Backend::Redb(_) => {
                let meta = Metadata::open_with(redb_path, &[], AUDIT_CACHE_BYTES)?;
                Ok(Store {
                    backend: Arc::new(Backend::Redb(RedbStore::open_audit_log(Arc::new(meta))?)),
                })
            }
            Backend::Postgres(_) => Ok(self.clone()),
        }
    }

    /// Whether other processes may use this store at the same time (PostgreSQL): then
    /// what one process holds in memory is no lock for another.
    pub fn is_shared(&self) -> bool {
        matches!(&*self.backend, Backend::Postgres(_))
    }

    /// Which backend this is, for logs and `berth status`.
    pub fn backend_name(&self) -> &'static str {
        match &*self.backend {
            Backend::Redb(_) => "redb",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Runs `f` on a consistent snapshot. Blocks on PostgreSQL: call from a blocking
    /// context, or use [`Store::read`].
    pub fn read_blocking<T, E>(&self, f: impl FnOnce(&dyn ReadTx) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        match &*self.backend {
            Backend::Redb(store) => store.read(f),
            Backend::Postgres(store) => store.read(f),
        }
    }

    /// Runs `f` in a write transaction and commits it with `durability` if it returns
    /// `Ok`; nothing of it is kept if it returns `Err`. `f` may run more than once (see
    /// the module's documentation). Blocks: from async code prefer [`Store::write`]; when
    /// called on a multi-threaded runtime's worker anyway, it hands the worker's other
    /// tasks to another thread before it waits.
    pub fn write_blocking<T, E>(
        &self,
        durability: Durability,
        f: impl FnMut(&dyn WriteTx) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        match &*self.backend {
            // A redb commit waits for the disk: off the async workers, if called there.
            Backend::Redb(store) => off_the_workers(|| store.write(durability, f)),
            Backend::Postgres(store) => store.write(durability, f),
        }
    }

    /// [`Store::read_blocking`] from async code: on a blocking thread where reading may
    /// wait (PostgreSQL), inline where it cannot (redb's snapshots never wait).
    pub async fn read<T, E>(
        &self,
        f: impl FnOnce(&dyn ReadTx) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        match &*self.backend {
            Backend::Redb(store) => store.read(f),
            Backend::Postgres(_) => {
                let store = self.clone();
                blocking(move || store.read_blocking(f)).await
            }
        }
    }

    /// [`Store::write_blocking`] with immediate durability, from async code, never on an
    /// async worker (a commit waits for the disk or the network). On redb, writes that
    /// arrive together share one transaction and its flush (`backends::redb::group_commit`).
    pub async fn write<T, E>(
        &self,
        f: impl FnMut(&dyn WriteTx) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.write_with(Durability::Immediate, f).await
    }

    /// [`Store::write`] with the durability asked for: a lazy write shares a group commit
    /// as any other but waits for no flush, and alone it commits without one.
    pub async fn write_with<T, E>(
        &self,
        durability: Durability,
        f: impl FnMut(&dyn WriteTx) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        match &*self.backend {
            // Concurrent writers share a transaction and its fsync (group commit).
            Backend::Redb(store) => store.write_grouped(durability, f).await,
            Backend::Postgres(_) => {
                let store = self.clone();
                blocking(move || store.write_blocking(durability, f)).await
            }
        }
    }
}

impl Store {
    /// Calls `wake` when another node commits events (PostgreSQL's `LISTEN/NOTIFY`), until
    /// the result is dropped. `None` where there are no other nodes (redb): the feed's
    /// in-process wake-ups are all there is.
    pub fn watch_events(&self, wake: Box<dyn Fn() + Send + Sync>) -> Option<Watching> {
        match &*self.backend {
            Backend::Redb(_) => None,
            Backend::Postgres(store) => Some(store.watch_events(wake)),
        }
    }
}

/// Listening for other nodes' events; stops when dropped.
#[derive(Debug, Default)]
pub struct Watching {
    pub(crate) stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Page cache of the embedded audit database: writes append, reads are occasional.
const AUDIT_CACHE_BYTES: usize = 1024 * 1024;

/// Milliseconds since the Unix epoch, the timestamp unit of every record.
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Runs `f`, which waits for a disk or a network, where that is allowed: as is on a
/// blocking thread or outside any runtime; through `block_in_place` on a multi-threaded
/// runtime's worker, which hands the worker's other tasks to another thread first, so
/// that no request waits behind an fsync. (On a current-thread runtime there is no other
/// thread to hand them to; such runtimes are tests and the command line.)
pub(crate) fn off_the_workers<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Runs `f` on tokio's blocking pool; a panic in it is re-raised in the caller.
async fn blocking<T, E>(f: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, E>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(outcome) => outcome,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(StoreError::Backend(
            "the transaction was cancelled: berth is shutting down".to_string(),
        )
        .into()),
    }
}
