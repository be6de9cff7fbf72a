//! The audit log: who did what, when, from where, to which repository, and how it ended.
//!
//! Events are sent to one writer task that commits them in batches (one durable commit for
//! however many arrive within 100 milliseconds), so recording a pull costs a channel
//! send, not an fsync. Old entries are removed after the configured retention.

use std::time::Duration;

use futures::FutureExt as _;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use crate::storage::store::{Store, StoreError, StoreResult, now_millis};
use crate::storage::tables::audit::AuditFilter;

pub use crate::storage::tables::audit::{AuditPage, AuditRecord};

/// Events waiting for the writer. When full, recording waits: the log is not lossy.
const QUEUE_DEPTH: usize = 16_384;

/// Most events committed in one transaction.
const BATCH: usize = 4096;

/// How long the writer waits, after an event, for others to share its commit: at most
/// ten commits a second, however the events trickle in (at 5 ms, a machine create's three
/// events each paid a commit of their own). Recording never waits for the commit, so only
/// a reader's flush could notice, and a flush (a read of the log, a shutdown) is never
/// kept waiting; a crash (`kill -9`, power) loses what arrived in the last linger.
const LINGER: Duration = Duration::from_millis(100);

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

enum Message {
    Record(AuditRecord),
    Flush(oneshot::Sender<()>),
}

/// The sending side of the audit log, and its store for reading.
#[derive(Clone, Debug)]
pub struct AuditLog {
    tx: mpsc::Sender<Message>,
    store: Store,
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
    /// Starts the writer task over `store` (see [`Store::audit_log`]), keeping entries
    /// for `retention`.
    pub fn start(store: Store, retention: Duration) -> AuditLog {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(writer(store.clone(), rx, retention));
        AuditLog { tx, store }
    }

    /// Reads the log, newest first, after committing what was recorded before the call.
    /// Returns the page and the cursor for the next one.
    pub async fn read(&self, q: &AuditQuery) -> StoreResult<AuditPage> {
        self.flush().await;
        let limit = q.limit.unwrap_or(100).clamp(1, 1000);
        let filter = AuditFilter {
            actor: q.actor.clone(),
            action: q.action.clone(),
            resource_prefix: q.resource.clone(),
            since: q.since,
            before: q.before,
        };
        self.store
            .read(move |tx| tx.audit().page(&filter, limit))
            .await
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

async fn writer(store: Store, mut rx: mpsc::Receiver<Message>, retention: Duration) {
    let mut last_purge = std::time::Instant::now() - Duration::from_secs(3600);
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let until = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH {
            if matches!(batch.last(), Some(Message::Flush(_))) {
                // Someone waits: commit what there is now.
                while batch.len() < BATCH
                    && let Ok(m) = rx.try_recv()
                {
                    batch.push(m);
                }
                break;
            }
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(m)) => batch.push(m),
                _ => break,
            }
        }
        let mut records = Vec::new();
        let mut waiters = Vec::new();
        for m in batch {
            match m {
                Message::Record(r) => records.push(r),
                Message::Flush(w) => waiters.push(w),
            }
        }
        let purge_before = (last_purge.elapsed() >= Duration::from_secs(3600))
            .then(|| now_millis().saturating_sub(retention.as_millis() as u64));
        if purge_before.is_some() {
            last_purge = std::time::Instant::now();
        }
        // One durable commit for the whole batch. A panic in it (the store's, re-raised
        // here) costs this batch, logged, never the writer: every later event would be lost.
        let count = records.len();
        let written =
            std::panic::AssertUnwindSafe(store.write(move |tx| -> Result<u64, StoreError> {
                if !records.is_empty() {
                    tx.audit().append(&records)?;
                }
                match purge_before {
                    Some(before) => tx.audit().remove_before(before),
                    None => Ok(0),
                }
            }))
            .catch_unwind()
            .await;
        match written {
            Ok(Ok(purged)) if purged > 0 => {
                tracing::info!(entries = purged, "removed audit entries past retention")
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "writing audit entries failed"),
            Err(_) => tracing::error!(
                entries = count,
                "writing audit entries panicked; the writer goes on with the next batch"
            ),
        }
        for w in waiters {
            let _ = w.send(());
        }
    }
}
