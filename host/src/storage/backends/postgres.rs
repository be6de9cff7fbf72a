//! The shared backend: every table in a PostgreSQL database that several berth nodes use
//! at once. Writes run at `SERIALIZABLE`, so a closure written for redb's single writer
//! keeps its meaning; a transaction that loses a conflict is rolled back and run again.
//! Reads run in a `REPEATABLE READ READ ONLY` transaction: one snapshot, as in redb.
//!
//! Statements are prepared once per connection and kept (`PgConn::statements`).

mod audit;
mod auth;
mod cost;
mod events;
mod jobs;
mod plugins;
mod registry;
mod replication;
mod scheduling;
mod schema;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::str::FromStr as _;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, IsolationLevel, NoTls, Row, Statement, Transaction};
use rand::Rng as _;

use crate::storage::store::{Durability, ReadTx, StoreError, StoreResult, Watching, WriteTx};
use crate::storage::tables::audit::{AuditRead, AuditWrite};
use crate::storage::tables::auth::{AuthRead, AuthWrite};
use crate::storage::tables::cost::{CostRead, CostWrite};
use crate::storage::tables::events::{EventsRead, EventsWrite};
use crate::storage::tables::jobs::{JobsRead, JobsWrite};
use crate::storage::tables::plugins::{PluginsRead, PluginsWrite};
use crate::storage::tables::registry::{RegistryRead, RegistryWrite};
use crate::storage::tables::replication::{ReplicationRead, ReplicationWrite};
use crate::storage::tables::scheduling::{SchedulingRead, SchedulingWrite};

/// How many times a write transaction runs before a conflict is reported. Eight writers
/// of one row on a busy 2-core machine starved one of them past 12 runs in CI; with the
/// backoff capped at 64 ms, 24 runs wait at most about a second.
const MAX_ATTEMPTS: u32 = 24;

/// How long taking a connection from the pool may wait.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// The PostgreSQL side of [`crate::storage::store::Store`].
pub struct PgStore {
    /// Taken only by `drop`.
    pool: Option<r2d2::Pool<Connector>>,
    /// How the pool connects, for connections kept apart from it (listening).
    connector: std::sync::Arc<Connector>,
}

/// The synchronous client closes a connection by blocking on its own runtime, which
/// panics on a Tokio worker (and aborts the process when it happens during a panic): the
/// last handle to the store may well be dropped there (a task aborted at shutdown), so
/// the pool is closed on a thread of its own.
impl Drop for PgStore {
    fn drop(&mut self) {
        let Some(pool) = self.pool.take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            let _ = std::thread::Builder::new()
                .name("berth-pg-close".into())
                .spawn(move || drop(pool));
        }
    }
}

/// Opens connections for the pool. Holds the parsed configuration, never printed: it
/// may carry a password.
#[derive(Clone)]
struct Connector {
    config: postgres::Config,
    /// TLS that verifies the server's certificate (against the system's roots and the
    /// configured CA); used unless the connection string says `sslmode=disable`.
    tls: tokio_postgres_rustls::MakeRustlsConnect,
}

/// The TLS client configuration: the system's trusted roots, and `ca_pem`'s certificates
/// beside them. Certificates are always verified: berth offers no unverified TLS.
fn tls_config(ca_pem: Option<&[u8]>) -> StoreResult<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable system certificates are skipped: a configured CA may be all there is.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(pem) = ca_pem {
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut &pem[..]) {
            let cert = cert.map_err(|e| {
                StoreError::Backend(format!("the PostgreSQL CA file is not PEM: {e}"))
            })?;
            roots.add(cert).map_err(|e| {
                StoreError::Backend(format!("the PostgreSQL CA certificate is unusable: {e}"))
            })?;
            added += 1;
        }
        if added == 0 {
            return Err(StoreError::Backend(
                "the PostgreSQL CA file holds no certificate".to_string(),
            ));
        }
    }
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map(|b| b.with_root_certificates(roots).with_no_client_auth())
    .map_err(|e| StoreError::Backend(format!("TLS: {e}")))
}

/// One pooled connection and the statements prepared on it.
pub(crate) struct PgConn {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

impl r2d2::ManageConnection for Connector {
    type Connection = PgConn;
    type Error = postgres::Error;

    fn connect(&self) -> Result<PgConn, postgres::Error> {
        let client = match self.config.get_ssl_mode() {
            postgres::config::SslMode::Disable => self.config.connect(NoTls)?,
            _ => self.config.connect(self.tls.clone())?,
        };
        Ok(PgConn {
            client,
            statements: HashMap::new(),
        })
    }

    fn is_valid(&self, conn: &mut PgConn) -> Result<(), postgres::Error> {
        conn.client.simple_query("").map(|_| ())
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.client.is_closed()
    }
}

/// Logs the pool's connection failures without the connection string.
#[derive(Debug)]
struct PoolErrors;

impl r2d2::HandleError<postgres::Error> for PoolErrors {
    fn handle_error(&self, error: postgres::Error) {
        tracing::warn!(error = %error, "cannot connect to the PostgreSQL metadata database");
    }
}

impl PgStore {
    /// Connects to `url` and brings the schema to this build's. Blocks. TLS is used as
    /// the connection string's `sslmode` says (`prefer` when it says nothing: TLS when the
    /// server offers it, and then verified against the system's roots and `ca_pem`).
    pub fn open(url: &str, connections: u32, ca_pem: Option<&[u8]>) -> StoreResult<PgStore> {
        let config = postgres::Config::from_str(url).map_err(|e| {
            StoreError::Backend(format!("the PostgreSQL connection string is invalid: {e}"))
        })?;
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(ca_pem)?);
        let pool = r2d2::Pool::builder()
            .max_size(connections.max(1))
            .min_idle(Some(0))
            .connection_timeout(CONNECTION_TIMEOUT)
            .error_handler(Box::new(PoolErrors))
            .build(Connector {
                config: config.clone(),
                tls: tls.clone(),
            })
            .map_err(|e| StoreError::Backend(format!("cannot connect to PostgreSQL: {e}")))?;
        let store = PgStore {
            pool: Some(pool),
            connector: std::sync::Arc::new(Connector { config, tls }),
        };
        let mut conn = store.connection()?;
        schema::prepare(&mut conn.client)?;
        Ok(store)
    }

    fn connection(&self) -> StoreResult<r2d2::PooledConnection<Connector>> {
        self.pool
            .as_ref()
            .expect("the pool is taken only by drop")
            .get()
            .map_err(|e| StoreError::Backend(format!("no PostgreSQL connection: {e}")))
    }

    pub fn read<T, E>(&self, f: impl FnOnce(&dyn ReadTx) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        crate::storage::store::off_the_workers(|| self.read_here(f))
    }

    fn read_here<T, E>(&self, f: impl FnOnce(&dyn ReadTx) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let mut conn = self.connection()?;
        let PgConn { client, statements } = &mut *conn;
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(error)?;
        let tx = PgTx::new(tx, statements);
        let out = f(&tx)?;
        tx.tx.into_inner().commit().map_err(error)?;
        Ok(out)
    }

    pub fn write<T, E>(
        &self,
        durability: Durability,
        f: impl FnMut(&dyn WriteTx) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        crate::storage::store::off_the_workers(|| self.write_here(durability, f))
    }

    fn write_here<T, E>(
        &self,
        durability: Durability,
        mut f: impl FnMut(&dyn WriteTx) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let mut conn = self.connection()?;
        for attempt in 1..=MAX_ATTEMPTS {
            let PgConn { client, statements } = &mut *conn;
            let tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::Serializable)
                .start()
                .map_err(error)?;
            let tx = PgTx::new(tx, statements);
            if durability == Durability::Lazy {
                tx.batch("SET LOCAL synchronous_commit = off")?;
            }
            // Only a conflict falls through to run the closure again; dropping the
            // transaction rolls it back.
            match f(&tx) {
                Ok(out) => match tx.tx.into_inner().commit() {
                    Ok(()) => return Ok(out),
                    Err(e) if is_conflict(&e) => {}
                    Err(e) => return Err(error(e).into()),
                },
                Err(_) if tx.conflicted.get() => {}
                Err(e) => return Err(e),
            }
            tracing::debug!(attempt, "metadata transaction conflicted; running it again");
            std::thread::sleep(backoff(attempt));
        }
        Err(StoreError::Conflict {
            attempts: MAX_ATTEMPTS,
        }
        .into())
    }
}

/// A jittered, growing pause before a conflicted transaction runs again, so that the
/// transactions that collided do not collide again in step.
impl PgStore {
    /// Calls `wake` whenever a transaction that appended events commits, on any node
    /// (`LISTEN` on the feed's channel, on a connection of its own), and once each time
    /// listening (re)starts, for what was missed meanwhile; until the result is dropped.
    pub fn watch_events(&self, wake: Box<dyn Fn() + Send + Sync>) -> Watching {
        let watching = Watching::default();
        let stop = watching.stop.clone();
        let connector = self.connector.clone();
        let spawned = std::thread::Builder::new()
            .name("berth-pg-listen".into())
            .spawn(move || listen(&connector, events::CHANNEL, &*wake, &stop));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start listening for other nodes' events; polling only");
        }
        watching
    }
}

/// How often a listening connection checks whether it should stop.
const LISTEN_TICK: Duration = Duration::from_millis(500);

fn listen(
    connector: &Connector,
    channel: &str,
    wake: &(dyn Fn() + Send + Sync),
    stop: &std::sync::atomic::AtomicBool,
) {
    use postgres::fallible_iterator::FallibleIterator as _;
    use r2d2::ManageConnection as _;
    use std::sync::atomic::Ordering;
    let mut pause = Duration::from_secs(1);
    while !stop.load(Ordering::Relaxed) {
        let listening = connector.connect().and_then(|mut conn| {
            conn.client.batch_execute(&format!("LISTEN {channel}"))?;
            Ok(conn)
        });
        let mut conn = match listening {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for other nodes' events; polling until it can");
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        pause = Duration::from_secs(1);
        wake();
        while !stop.load(Ordering::Relaxed) {
            let arrived = {
                let mut notifications = conn.client.notifications();
                let first = notifications.timeout_iter(LISTEN_TICK).next();
                // Whatever else is already here is covered by the same wake-up.
                if matches!(first, Ok(Some(_))) {
                    while let Ok(Some(_)) = notifications.iter().next() {}
                }
                first
            };
            match arrived {
                Ok(Some(_)) => wake(),
                Ok(None) if !conn.client.is_closed() => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    let ceiling_us = 500u64 << attempt.min(7);
    Duration::from_micros(rand::thread_rng().gen_range(ceiling_us / 4..=ceiling_us))
}

/// A PostgreSQL transaction seen through the table traits.
pub(crate) struct PgTx<'a> {
    tx: RefCell<Transaction<'a>>,
    statements: RefCell<&'a mut HashMap<&'static str, Statement>>,
    /// Set when a statement failed because of a concurrent transaction: the closure's
    /// error is then a reason to run it again, not an answer.
    conflicted: Cell<bool>,
}

impl<'a> PgTx<'a> {
    fn new(tx: Transaction<'a>, statements: &'a mut HashMap<&'static str, Statement>) -> Self {
        PgTx {
            tx: RefCell::new(tx),
            statements: RefCell::new(statements),
            conflicted: Cell::new(false),
        }
    }

    fn fail(&self, e: postgres::Error) -> StoreError {
        if is_conflict(&e) {
            self.conflicted.set(true);
        }
        error(e)
    }

    fn statement(&self, sql: &'static str) -> StoreResult<Statement> {
        if let Some(statement) = self.statements.borrow().get(sql) {
            return Ok(statement.clone());
        }
        let statement = self
            .tx
            .borrow_mut()
            .prepare(sql)
            .map_err(|e| self.fail(e))?;
        self.statements.borrow_mut().insert(sql, statement.clone());
        Ok(statement)
    }

    /// Every row `sql` returns.
    pub(crate) fn query(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> StoreResult<Vec<Row>> {
        let statement = self.statement(sql)?;
        self.tx
            .borrow_mut()
            .query(&statement, params)
            .map_err(|e| self.fail(e))
    }

    /// The row `sql` returns, if any (more than one is an error).
    pub(crate) fn query_opt(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> StoreResult<Option<Row>> {
        let statement = self.statement(sql)?;
        self.tx
            .borrow_mut()
            .query_opt(&statement, params)
            .map_err(|e| self.fail(e))
    }

    /// Runs `sql`; the number of rows it touched.
    pub(crate) fn execute(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> StoreResult<u64> {
        let statement = self.statement(sql)?;
        self.tx
            .borrow_mut()
            .execute(&statement, params)
            .map_err(|e| self.fail(e))
    }

    fn batch(&self, sql: &str) -> StoreResult<()> {
        self.tx
            .borrow_mut()
            .batch_execute(sql)
            .map_err(|e| self.fail(e))
    }
}

impl ReadTx for PgTx<'_> {
    fn audit(&self) -> &dyn AuditRead {
        self
    }

    fn auth(&self) -> &dyn AuthRead {
        self
    }

    fn cost(&self) -> &dyn CostRead {
        self
    }

    fn events(&self) -> &dyn EventsRead {
        self
    }

    fn jobs(&self) -> &dyn JobsRead {
        self
    }

    fn plugins(&self) -> &dyn PluginsRead {
        self
    }

    fn registry(&self) -> &dyn RegistryRead {
        self
    }

    fn replication(&self) -> &dyn ReplicationRead {
        self
    }

    fn scheduling(&self) -> &dyn SchedulingRead {
        self
    }
}

impl WriteTx for PgTx<'_> {
    fn audit(&self) -> &dyn AuditWrite {
        self
    }

    fn auth(&self) -> &dyn AuthWrite {
        self
    }

    fn cost(&self) -> &dyn CostWrite {
        self
    }

    fn events(&self) -> &dyn EventsWrite {
        self
    }

    fn jobs(&self) -> &dyn JobsWrite {
        self
    }

    fn plugins(&self) -> &dyn PluginsWrite {
        self
    }

    fn read(&self) -> &dyn ReadTx {
        self
    }

    fn registry(&self) -> &dyn RegistryWrite {
        self
    }

    fn replication(&self) -> &dyn ReplicationWrite {
        self
    }

    fn scheduling(&self) -> &dyn SchedulingWrite {
        self
    }
}

/// Whether `e` says the transaction lost to a concurrent one and may simply run again.
fn is_conflict(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(&SqlState::T_R_SERIALIZATION_FAILURE) | Some(&SqlState::T_R_DEADLOCK_DETECTED)
    )
}

/// A PostgreSQL error as the interface's, with the server's message and its SQLSTATE.
pub(crate) fn error(e: postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => StoreError::Backend(format!(
            "PostgreSQL: {} (SQLSTATE {})",
            db.message(),
            db.code().code()
        )),
        None => StoreError::Backend(format!("PostgreSQL: {e}")),
    }
}

/// A column that does not decode into the record's type.
pub(crate) fn decode_error(table: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Decode {
        table,
        message: e.to_string(),
    }
}

/// The latest time stored: the end of year 9999. Later ones (an open-ended bound, such
/// as `u64::MAX` for "until whenever") are stored as this, since the client library's
/// conversion overflows (and panics) far below `u64::MAX` milliseconds.
const LATEST_MS: u64 = 253_402_300_799_999;

/// Milliseconds since the epoch as a `timestamptz` value, and back.
pub(crate) fn timestamp(ms: u64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + Duration::from_millis(ms.min(LATEST_MS))
}

pub(crate) fn millis(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uses_tls(store: &PgStore) -> bool {
        let mut conn = store.connection().unwrap();
        conn.client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .unwrap()
            .get(0)
    }

    /// Connections are encrypted when the connection string asks, and the server's
    /// certificate is verified: against a configured CA it passes, without it the
    /// connection is refused; `sslmode=disable` stays plain.
    #[test]
    fn tls_is_used_as_the_connection_string_asks_and_always_verified() {
        let (base, ca) = crate::storage::testing::tls_server();
        let url = |mode: &str| format!("{base} dbname=postgres sslmode={mode}");
        let verified = PgStore::open(&url("require"), 1, Some(ca.as_bytes())).unwrap();
        assert!(uses_tls(&verified));
        let preferred = PgStore::open(&url("prefer"), 1, Some(ca.as_bytes())).unwrap();
        assert!(uses_tls(&preferred));
        let plain = PgStore::open(&url("disable"), 1, None).unwrap();
        assert!(!uses_tls(&plain));
        let unknown = PgStore::open(&url("require"), 1, None)
            .err()
            .expect("refused");
        assert!(unknown.to_string().contains("PostgreSQL"), "{unknown}");
        let not_pem = PgStore::open(&url("require"), 1, Some(b"not a certificate"))
            .err()
            .expect("refused");
        assert!(not_pem.to_string().contains("CA"), "{not_pem}");
    }
}
