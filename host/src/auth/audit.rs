//! The audit log: who did what, when, from where, to which repository, and how it ended.
//!
//! Events are sent to one writer task that commits them in batches (one durable commit for
//! however many arrived meanwhile), so recording a pull costs a channel send, not an
//! fsync. Old entries are removed after the configured retention.

use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::storage::meta::{MetaError, MetaResult, Metadata, Reader, decode, encode, now_millis};

const TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");

/// Events waiting for the writer. When full, recording waits: the log is not lossy.
const QUEUE_DEPTH: usize = 16_384;

/// Most events committed in one transaction.
const BATCH: usize = 4096;

/// Low bits of an entry id that order entries within one millisecond.
const SEQ_BITS: u32 = 16;

/// One audit entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct AuditRecord {
    /// When (ms since the epoch).
    pub at: u64,
    /// Who: a username, `robot$…`, or `anonymous`.
    pub actor: String,
    /// From where: the client's address.
    pub source: String,
    /// What: `push`, `pull`, `delete`, `login`, `user.create`, `member.set`, `robot.create`, …
    pub action: String,
    /// On what: a repository, project, user or robot name.
    pub resource: String,
    /// The tag, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The digest, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// `success`, `denied` or `failure`.
    pub outcome: String,
    /// More about a denial or failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl AuditRecord {
    /// A record stamped now.
    pub fn new(
        actor: &str,
        source: &str,
        action: &str,
        resource: &str,
        outcome: &str,
    ) -> AuditRecord {
        AuditRecord {
            at: now_millis(),
            actor: actor.to_owned(),
            source: source.to_owned(),
            action: action.to_owned(),
            resource: resource.to_owned(),
            tag: None,
            digest: None,
            outcome: outcome.to_owned(),
            detail: None,
        }
    }
}

fn create(tx: &WriteTransaction) -> MetaResult<()> {
    tx.open_table(TABLE)?;
    Ok(())
}

/// The audit log's schema. It lives in its own database file (`audit.redb`): every pull
/// writes an entry, and that stream of commits must not contend with registry reads.
pub const AUDIT: crate::storage::meta::schema::Component =
    crate::storage::meta::schema::Component {
        name: "audit",
        current: 1,
        migrations: &[crate::storage::meta::schema::Migration {
            from: 0,
            apply: create,
        }],
    };

/// Page cache of the audit database: writes append, reads are occasional.
const AUDIT_CACHE_BYTES: usize = 1024 * 1024;

enum Message {
    Record(AuditRecord),
    Flush(oneshot::Sender<()>),
}

/// The sending side of the audit log, and its store for reading.
#[derive(Clone, Debug)]
pub struct AuditLog {
    tx: mpsc::Sender<Message>,
    store: Arc<Metadata>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("audit message")
    }
}

/// Filters for reading the log.
#[derive(Debug, Default, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only this actor.
    pub actor: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only resources starting with this (a project, a repository).
    pub resource: Option<String>,
    /// Only entries at or after this time (ms since the epoch).
    pub since: Option<u64>,
    /// Only entries before this id (the `next` cursor of the previous page).
    pub before: Option<u64>,
    /// Page size (default 100, at most 1000).
    pub limit: Option<usize>,
}

impl AuditLog {
    /// Opens (creating) the audit database at `path` and starts the writer task, keeping
    /// entries for `retention`.
    pub fn start(path: &std::path::Path, retention: Duration) -> MetaResult<AuditLog> {
        let store = Arc::new(Metadata::open_with(path, &[&AUDIT], AUDIT_CACHE_BYTES)?);
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(writer(store.clone(), rx, retention));
        Ok(AuditLog { tx, store })
    }

    /// Reads the log (see [`query`]), after committing what was recorded before the call.
    pub async fn read(&self, q: &AuditQuery) -> MetaResult<AuditPage> {
        self.flush().await;
        query(&self.store.read()?, q)
    }

    /// Records an event. Waits only if the writer is far behind.
    pub async fn record(&self, record: AuditRecord) {
        if self.tx.send(Message::Record(record)).await.is_err() {
            tracing::error!("the audit writer has stopped; an audit event was not recorded");
        }
    }

    /// Returns once everything recorded before this call is committed.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn writer(meta: Arc<Metadata>, mut rx: mpsc::Receiver<Message>, retention: Duration) {
    let mut last_id = 0u64;
    let mut last_purge = std::time::Instant::now() - Duration::from_secs(3600);
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let mut records = Vec::new();
        let mut waiters = Vec::new();
        for m in batch {
            match m {
                Message::Record(r) => {
                    let id = (r.at << SEQ_BITS).max(last_id + 1);
                    last_id = id;
                    records.push((id, r));
                }
                Message::Flush(w) => waiters.push(w),
            }
        }
        let purge_before = (last_purge.elapsed() >= Duration::from_secs(3600))
            .then(|| now_millis().saturating_sub(retention.as_millis() as u64) << SEQ_BITS);
        if purge_before.is_some() {
            last_purge = std::time::Instant::now();
        }
        let meta2 = meta.clone();
        let written = tokio::task::spawn_blocking(move || {
            meta2.write(|tx| -> Result<usize, MetaError> {
                let mut table = tx.open_table(TABLE)?;
                for (id, r) in &records {
                    table.insert(id, encode(r).as_slice())?;
                }
                let mut purged = 0;
                if let Some(before) = purge_before {
                    purged = table.extract_if(|id, _| id < before)?.count();
                }
                Ok(purged)
            })
        })
        .await;
        match written {
            Ok(Ok(purged)) if purged > 0 => {
                tracing::info!(entries = purged, "removed audit entries past retention")
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "writing audit entries failed"),
            Err(e) => tracing::error!(error = %e, "the audit writer task failed"),
        }
        for w in waiters {
            let _ = w.send(());
        }
    }
}

/// A page of the log: entries with their ids, and the cursor for the next page.
pub type AuditPage = (Vec<(u64, AuditRecord)>, Option<u64>);

/// Reads the log, newest first. Returns the page and the cursor for the next one.
pub fn query(tx: &impl Reader, q: &AuditQuery) -> MetaResult<AuditPage> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let table = tx.open(TABLE)?;
    let upper = q.before.map(Bound::Excluded).unwrap_or(Bound::Unbounded);
    let lower = q
        .since
        .map(|s| Bound::Included(s << SEQ_BITS))
        .unwrap_or(Bound::Unbounded);
    let mut out = Vec::new();
    for entry in table.range::<u64>((lower, upper))?.rev() {
        let (k, v) = entry?;
        let record: AuditRecord = decode("audit", v.value())?;
        let keep = q.actor.as_ref().is_none_or(|a| &record.actor == a)
            && q.action.as_ref().is_none_or(|a| &record.action == a)
            && q.resource
                .as_ref()
                .is_none_or(|r| record.resource.starts_with(r.as_str()));
        if keep {
            if out.len() == limit {
                let next = out.last().map(|(id, _): &(u64, AuditRecord)| *id);
                return Ok((out, next));
            }
            out.push((k.value(), record));
        }
    }
    Ok((out, None))
}
