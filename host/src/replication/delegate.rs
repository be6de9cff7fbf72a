//! Delegated transfers. In a tree, the instance that plans a job does not carry the
//! bytes of the later hops: it asks the berth that holds the artifact (a regional
//! datacenter's) to send it on to the next hop, so each blob crosses each link once
//! instead of detouring through the planner.
//!
//! The planner lends the sender a bearer token for the destination repository only, which
//! it obtained from the destination's token service with its own credentials: the sender
//! never sees a password, and what it can do there is what the token's scope says, for
//! the token's lifetime.
//!
//! A transfer is a job of the shared jobs runner (kind `replication-transfer`), held by
//! the node that runs it under a lease: the planner's polls may reach any node of the
//! sender's cluster and read the same state. The token is never stored, so a transfer is
//! not taken over: when its node dies, the lease lapses, the transfer reads as failed and
//! the planner retries the task (tasks are idempotent).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::endpoints::{EndpointKind, EndpointRecord};
use super::jobs::JobProgress;
use super::local::Local;
use super::remote::Remote;
use super::side::{FetchedManifest, SideError, Source};
use super::transfer::{Copier, CopyOptions};
use super::{Replication, ReplicationError, ReplicationResult};
use crate::jobs::lease::{self, Renewal};
use crate::jobs::{JobFilter, JobRow, RunState, queue};
use crate::storage::clock::Clock;
use crate::storage::store::{Durability, StoreResult, now_millis};

mod awaiting;
use awaiting::Awaiting;

/// The jobs runner's kind of a delegated transfer.
pub const KIND: &str = "replication-transfer";

/// The longest a sender waits for a piece of an artifact it is still receiving.
const MAX_AHEAD_WAIT: Duration = Duration::from_secs(3600);

/// Finished transfers are forgotten after this long.
const KEEP_FINISHED: Duration = Duration::from_secs(3600);

/// At most this many finished transfers are kept.
const MAX_FINISHED: usize = 10_000;

/// How often a node waiting on another node's transfer reads its state again.
const POLL_ELSEWHERE: Duration = Duration::from_millis(250);

/// What the planner asks the sender to do.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    /// The repository on the sender.
    pub repository: String,
    /// A tag or digest.
    pub reference: String,
    /// The repository on the destination.
    pub destination: String,
    /// Where to send it.
    pub target: TransferTarget,
    /// Move a destination tag that points elsewhere.
    #[serde(default = "yes")]
    pub override_existing: bool,
    /// The manifest, read ahead by the planner: the sender starts before it holds the
    /// artifact, and sends each blob (and child and referrer) as soon as it has arrived,
    /// so a tree's hops overlap instead of following one another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ahead: Option<Ahead>,
}

/// What a sender needs to forward an artifact it is still receiving.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Ahead {
    /// The manifest's digest.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Its bytes, base64.
    pub bytes: String,
    /// The clock of the tag it was read through.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub clock: Option<Clock>,
    /// Its referrers, which follow it.
    #[serde(default)]
    pub referrers: Vec<String>,
    /// How long to wait for a piece that has not arrived yet, in milliseconds.
    pub wait_ms: u64,
}

impl Ahead {
    /// The manifest read ahead, with its referrers.
    pub fn new(manifest: &FetchedManifest, referrers: Vec<String>, wait: Duration) -> Ahead {
        use base64::Engine as _;
        Ahead {
            digest: manifest.digest.clone(),
            media_type: manifest.media_type.clone(),
            bytes: base64::engine::general_purpose::STANDARD.encode(&manifest.bytes),
            clock: manifest.clock.clone(),
            referrers,
            wait_ms: wait.as_millis() as u64,
        }
    }
}

fn yes() -> bool {
    true
}

/// The destination of a delegated transfer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferTarget {
    /// `http(s)://host[:port]`.
    pub url: String,
    /// What answers there.
    pub kind: EndpointKind,
    /// A bearer token for the destination repository, from its own token service.
    pub token: String,
    /// Accept any TLS certificate.
    #[serde(default)]
    pub insecure: bool,
    /// A PEM CA certificate to trust.
    #[serde(default)]
    pub ca_cert: Option<String>,
}

/// Where a delegated transfer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TransferStatus {
    /// Still sending.
    Running,
    /// Done.
    Succeeded,
    /// Failed; see `error`.
    Failed,
}

/// How a failed transfer failed, so the planner can decide to retry as if it had run
/// the transfer itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// Worth retrying.
    Failed,
    /// The destination refused the token.
    Unauthorized,
    /// The sender does not hold the artifact.
    NotFound,
    /// The destination refused the content.
    Refused,
    /// The destination has no project for the content yet.
    NoDestination,
}

/// A delegated transfer's state, as `GET …/transfers/{id}` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TransferState {
    /// Its id.
    pub id: String,
    /// Where it is.
    pub status: TransferStatus,
    /// Work done (when it succeeded).
    pub progress: JobProgress,
    /// Less than asked was done (a tag left alone).
    pub note: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// How it failed.
    pub failure: Option<FailureKind>,
}

/// What a transfer's job holds, beside its state: what it sends where, and its outcome.
/// The destination's token is not in it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct TransferDetail {
    repository: String,
    reference: String,
    destination: String,
    target: String,
    #[serde(default)]
    progress: JobProgress,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failure: Option<FailureKind>,
}

/// The transfers running in this process, for callers waiting on their end here.
#[derive(Default)]
pub(super) struct Transfers {
    running: Mutex<HashMap<u64, tokio::sync::watch::Receiver<bool>>>,
}

/// A transfer's job as the API shows it. A transfer still running whose node stopped
/// renewing its lease is over: it failed, and the planner retries it.
fn state_of(row: &JobRow, now: u64) -> TransferState {
    let detail: TransferDetail = serde_json::from_value(row.detail.clone()).unwrap_or_default();
    let lapsed = !row.state.is_final() && row.lease.as_ref().is_none_or(|l| l.until <= now);
    let status = match row.state {
        RunState::Succeeded => TransferStatus::Succeeded,
        RunState::Failed | RunState::Cancelled => TransferStatus::Failed,
        RunState::Pending | RunState::Running if lapsed => TransferStatus::Failed,
        RunState::Pending | RunState::Running => TransferStatus::Running,
    };
    let (error, failure) = if status == TransferStatus::Failed && !row.state.is_final() {
        (
            Some(format!(
                "the node running the transfer ({}) stopped before it ended",
                row.lease.as_ref().map_or("?", |l| l.node.as_str())
            )),
            Some(FailureKind::Failed),
        )
    } else {
        (row.error.clone(), detail.failure)
    };
    TransferState {
        id: row.id.to_string(),
        status,
        progress: detail.progress,
        note: detail.note,
        error,
        failure: failure.or((status == TransferStatus::Failed).then_some(FailureKind::Failed)),
    }
}

/// The longest a `GET …/transfers/{id}?wait_ms=` waits for the end.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

impl Replication {
    /// Starts a transfer another instance asked for; answers at once with its id.
    pub async fn start_transfer(
        self: &Arc<Self>,
        request: TransferRequest,
    ) -> ReplicationResult<TransferState> {
        let url = super::endpoints::check_url(&request.target.url)?;
        for name in [&request.repository, &request.destination] {
            crate::names::RepoName::parse(name).map_err(|e| {
                ReplicationError::Invalid(format!("invalid repository name {name}: {e}"))
            })?;
        }
        crate::names::Reference::parse(&request.reference).map_err(|e| {
            ReplicationError::Invalid(format!("invalid reference {}: {e}", request.reference))
        })?;
        let endpoint = EndpointRecord {
            name: url.clone(),
            kind: request.target.kind,
            url,
            username: None,
            sealed_password: None,
            insecure: request.target.insecure,
            ca_cert: request.target.ca_cert.clone(),
            instance: None,
            description: String::new(),
            created_by: String::new(),
            created_at: 0,
            updated_at: 0,
        };
        let sink = Remote::with_token(
            &endpoint,
            request.target.token.clone(),
            &self.config.instance_name,
            Duration::from_secs(self.config.request_timeout_secs.max(1)),
        )
        .map_err(|e| ReplicationError::Invalid(e.to_string()))?;
        let ahead = match &request.ahead {
            None => None,
            Some(a) => {
                use base64::Engine as _;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(&a.bytes)
                    .map_err(|e| ReplicationError::Invalid(format!("ahead.bytes: {e}")))?;
                let digest = crate::digest::Digest::sha256_of(&bytes).to_string();
                if digest != a.digest {
                    return Err(ReplicationError::Invalid(format!(
                        "ahead.bytes are {digest}, not {}",
                        a.digest
                    )));
                }
                Some(Awaiting {
                    top: FetchedManifest {
                        digest,
                        media_type: a.media_type.clone(),
                        bytes: bytes.into(),
                        clock: a.clock.clone(),
                    },
                    reference: request.reference.clone(),
                    referrers: a.referrers.clone(),
                    wait: Duration::from_millis(a.wait_ms).min(MAX_AHEAD_WAIT),
                    local: Local::new(self.registry.clone(), None),
                    registry: self.registry.clone(),
                })
            }
        };
        // The job, held by this node from the start: a poll through any node finds it.
        let detail = TransferDetail {
            repository: request.repository.clone(),
            reference: request.reference.clone(),
            destination: request.destination.clone(),
            target: endpoint.url.clone(),
            ..TransferDetail::default()
        };
        let subject = format!("{}:{}", request.repository, request.reference);
        let (node, term) = (self.node.clone(), self.lease_term_ms());
        let row = self
            .store
            .write(move |tx| -> StoreResult<JobRow> {
                let now = now_millis();
                let detail = serde_json::to_value(&detail).expect("details serialize");
                let mut row = queue::enqueue(tx, KIND, &subject, detail, now)?;
                lease::claim(tx, row.id, &node, now, term)?;
                row.state = RunState::Running;
                row.started_at = Some(now);
                queue::update(tx, &row)?;
                Ok(queue::job(tx.read(), row.id)?.unwrap_or(row))
            })
            .await?;
        let id = row.id;
        let (ended, done) = tokio::sync::watch::channel(false);
        self.transfers
            .running
            .lock()
            .expect("transfers lock")
            .insert(id, done);
        let keeper = tokio::spawn(self.clone().keep_transfer_lease(id));
        let this = self.clone();
        tokio::spawn(async move {
            let local = Local::new(this.registry.clone(), None);
            let source: &dyn Source = match &ahead {
                Some(awaiting) => awaiting,
                None => &local,
            };
            let options = CopyOptions {
                override_existing: request.override_existing,
                parallel_blobs: this.config.parallel_blobs,
                throttle: None,
            };
            let result = Copier {
                source,
                sink: &sink,
                target: &endpoint.url,
                gate: &this.gate,
                options: &options,
            }
            .copy(
                &request.repository,
                &request.reference,
                &request.destination,
            )
            .await;
            keeper.abort();
            let (state, error, outcome) = match result {
                Ok(outcome) => (RunState::Succeeded, None, Some(outcome)),
                Err(e) => {
                    let failure = match e {
                        SideError::Unauthorized(_) => FailureKind::Unauthorized,
                        SideError::NotFound(_) => FailureKind::NotFound,
                        SideError::Refused(_) => FailureKind::Refused,
                        SideError::NoDestination(_) => FailureKind::NoDestination,
                        SideError::Failed(_) => FailureKind::Failed,
                    };
                    (RunState::Failed, Some((e.to_string(), failure)), None)
                }
            };
            let recorded = this
                .store
                .write(move |tx| -> StoreResult<()> {
                    let Some(mut row) = queue::job(tx.read(), id)? else {
                        return Ok(());
                    };
                    let mut detail: TransferDetail =
                        serde_json::from_value(row.detail.clone()).unwrap_or_default();
                    if let Some(outcome) = &outcome {
                        detail.progress = outcome.progress;
                        detail.note = outcome.note.clone();
                    }
                    detail.failure = error.as_ref().map(|(_, f)| *f);
                    row.detail = serde_json::to_value(&detail).expect("details serialize");
                    row.state = state;
                    row.error = error.as_ref().map(|(e, _)| e.clone());
                    row.finished_at = Some(now_millis());
                    queue::update(tx, &row)
                })
                .await;
            if let Err(e) = recorded {
                // Unrecorded, the lease lapses and the planner sees the transfer failed:
                // it retries, and the retry finds the destination holding what was sent.
                tracing::error!(transfer = id, error = %e, "replication: cannot record a delegated transfer's end");
            }
            this.transfers
                .running
                .lock()
                .expect("transfers lock")
                .remove(&id);
            let _ = ended.send(true);
        });
        Ok(state_of(&row, now_millis()))
    }

    /// Renews this node's lease on transfer `id` three times a term while it runs.
    async fn keep_transfer_lease(self: Arc<Self>, id: u64) {
        let every = Duration::from_millis((self.lease_term_ms() / 3).max(100));
        loop {
            tokio::time::sleep(every).await;
            let (node, term) = (self.node.clone(), self.lease_term_ms());
            // Lazily: a renewal lost in a crash died with the node that made it.
            let renewal = self
                .store
                .write_with(Durability::Lazy, move |tx| {
                    lease::renew(tx, id, &node, now_millis(), term)
                })
                .await;
            match renewal {
                Ok(Renewal::Held) => {}
                // Ended (or retired); nothing else takes a transfer over.
                Ok(Renewal::Stop | Renewal::Lost) => return,
                Err(e) => {
                    tracing::warn!(transfer = id, error = %e, "replication: cannot renew a delegated transfer's lease")
                }
            }
        }
    }

    /// Transfers whose node died are recorded as failed, and finished ones past their
    /// retention removed. Returns how many it removed.
    pub(super) fn retire_transfers(&self) -> StoreResult<usize> {
        self.store.write_blocking(Durability::Immediate, |tx| {
            let now = now_millis();
            let unfinished = queue::jobs(
                tx.read(),
                KIND,
                &JobFilter {
                    unfinished: true,
                    ..JobFilter::default()
                },
                usize::MAX,
            )?;
            for mut row in unfinished {
                let state = state_of(&row, now);
                if state.status == TransferStatus::Failed {
                    row.state = RunState::Failed;
                    row.error = state.error;
                    row.finished_at = Some(now);
                    queue::update(tx, &row)?;
                }
            }
            let horizon = now.saturating_sub(KEEP_FINISHED.as_millis() as u64);
            queue::retire(tx, KIND, horizon, MAX_FINISHED)
        })
    }

    /// A transfer this cluster runs for another instance, whichever node runs it; with
    /// `wait`, once it ends or `wait` has passed, whichever comes first (a long poll: the
    /// caller learns of the end at once, without polling in a loop).
    pub async fn transfer(
        &self,
        id: &str,
        wait: Option<Duration>,
    ) -> ReplicationResult<TransferState> {
        let gone = || {
            ReplicationError::NotFound(format!("no transfer {id} (finished ones are kept an hour)"))
        };
        let id: u64 = id.parse().map_err(|_| gone())?;
        let deadline = wait.map(|w| tokio::time::Instant::now() + w.min(MAX_WAIT));
        let running_here = self
            .transfers
            .running
            .lock()
            .expect("transfers lock")
            .get(&id)
            .cloned();
        if let (Some(mut done), Some(deadline)) = (running_here, deadline) {
            let _ = tokio::time::timeout_at(deadline, done.wait_for(|ended| *ended)).await;
        }
        loop {
            let row = self.store.read(move |tx| queue::job(tx, id)).await?;
            let row = row.filter(|r| r.kind == KIND).ok_or_else(gone)?;
            let state = state_of(&row, now_millis());
            // Another node's transfer: read again until it ends or the wait is over.
            match deadline {
                Some(deadline)
                    if state.status == TransferStatus::Running
                        && tokio::time::Instant::now() + POLL_ELSEWHERE < deadline =>
                {
                    tokio::time::sleep(POLL_ELSEWHERE).await;
                }
                _ => return Ok(state),
            }
        }
    }
}
