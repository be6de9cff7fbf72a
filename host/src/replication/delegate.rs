//! Delegated transfers. In a tree, the instance that plans a job does not carry the
//! bytes of the later hops: it asks the berth that holds the artifact (a regional
//! datacenter's) to send it on to the next hop, so each blob crosses each link once
//! instead of detouring through the planner.
//!
//! The planner lends the sender a bearer token for the destination repository only, which
//! it obtained from the destination's token service with its own credentials: the sender
//! never sees a password, and what it can do there is what the token's scope says, for
//! the token's lifetime. Transfers are kept in memory: if the sender restarts, the
//! planner's poll finds the transfer gone and the task is retried (tasks are idempotent).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::endpoints::{EndpointKind, EndpointRecord};
use super::jobs::JobProgress;
use super::local::Local;
use super::remote::Remote;
use super::side::{ByteStream, FetchedManifest, SideError, SideResult, Source};
use super::transfer::{Copier, CopyOptions};
use super::{Replication, ReplicationError, ReplicationResult};
use crate::registry::{Registry, arrivals};
use crate::storage::clock::Clock;

/// The longest a sender waits for a piece of an artifact it is still receiving.
const MAX_AHEAD_WAIT: Duration = Duration::from_secs(3600);

/// Finished transfers are forgotten after this long.
const KEEP_FINISHED: Duration = Duration::from_secs(3600);

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

/// The transfers this instance runs for others.
#[derive(Default)]
pub(super) struct Transfers {
    states: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    state: TransferState,
    /// When it ended.
    ended: Option<Instant>,
    /// Turns true when it ends, for callers waiting on it.
    done: tokio::sync::watch::Receiver<bool>,
}

/// The longest a `GET …/transfers/{id}?wait_ms=` waits for the end.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

impl Replication {
    /// Starts a transfer another instance asked for; answers at once with its id.
    pub fn start_transfer(
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
        let id = uuid::Uuid::new_v4().to_string();
        let state = TransferState {
            id: id.clone(),
            status: TransferStatus::Running,
            progress: JobProgress::default(),
            note: None,
            error: None,
            failure: None,
        };
        let (ended, done) = tokio::sync::watch::channel(false);
        {
            let mut states = self.transfers.states.lock().expect("transfers lock");
            states.retain(|_, e| e.ended.is_none_or(|t| t.elapsed() < KEEP_FINISHED));
            states.insert(
                id.clone(),
                Entry {
                    state: state.clone(),
                    ended: None,
                    done,
                },
            );
        }
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
            let mut states = this.transfers.states.lock().expect("transfers lock");
            if let Some(Entry {
                state, ended: done, ..
            }) = states.get_mut(&id)
            {
                match result {
                    Ok(outcome) => {
                        state.status = TransferStatus::Succeeded;
                        state.progress = outcome.progress;
                        state.note = outcome.note;
                    }
                    Err(e) => {
                        state.status = TransferStatus::Failed;
                        state.failure = Some(match e {
                            SideError::Unauthorized(_) => FailureKind::Unauthorized,
                            SideError::NotFound(_) => FailureKind::NotFound,
                            SideError::Refused(_) => FailureKind::Refused,
                            SideError::NoDestination(_) => FailureKind::NoDestination,
                            SideError::Failed(_) => FailureKind::Failed,
                        });
                        state.error = Some(e.to_string());
                    }
                }
                *done = Some(Instant::now());
            }
            drop(states);
            let _ = ended.send(true);
        });
        Ok(state)
    }

    /// A transfer this instance runs for another; with `wait`, once it ends or `wait`
    /// has passed, whichever comes first (a long poll: the caller learns of the end at
    /// once, without polling in a loop).
    pub async fn transfer(
        &self,
        id: &str,
        wait: Option<Duration>,
    ) -> ReplicationResult<TransferState> {
        let gone = || {
            ReplicationError::NotFound(format!(
                "no transfer {id} (finished ones are kept an hour; a restart forgets all)"
            ))
        };
        let mut done = {
            let states = self.transfers.states.lock().expect("transfers lock");
            states.get(id).ok_or_else(gone)?.done.clone()
        };
        if let Some(wait) = wait {
            let _ = tokio::time::timeout(wait.min(MAX_WAIT), done.wait_for(|ended| *ended)).await;
        }
        self.transfers
            .states
            .lock()
            .expect("transfers lock")
            .get(id)
            .map(|e| e.state.clone())
            .ok_or_else(gone)
    }
}

/// This instance's storage as the source of an artifact it is still receiving: the
/// manifest comes read ahead from the planner; a blob, child or referrer that is not here
/// yet is waited for, and sent as soon as it is.
struct Awaiting {
    top: FetchedManifest,
    reference: String,
    referrers: Vec<String>,
    wait: Duration,
    local: Local,
    registry: Arc<Registry>,
}

/// How often a piece still on its way is looked for when no arrival wakes the wait.
const AWAIT_POLL: Duration = Duration::from_secs(1);

impl Awaiting {
    /// Waits until `look` finds the piece (woken by each arrival in this registry and,
    /// should a wake-up be missed, every second) and returns what it found, or fails once
    /// the wait for `what` is over.
    async fn wait_for<T>(
        &self,
        what: &str,
        look: impl Fn() -> SideResult<Option<T>>,
    ) -> SideResult<T> {
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            let arrival = self.registry.arrivals.notified();
            tokio::pin!(arrival);
            arrival.as_mut().enable();
            if let Some(found) = look()? {
                return Ok(found);
            }
            tokio::select! {
                () = arrival => {}
                () = tokio::time::sleep(AWAIT_POLL) => {}
                () = tokio::time::sleep_until(deadline) => {
                    return Err(SideError::NotFound(format!(
                        "{what} did not arrive here within {} s",
                        self.wait.as_secs()
                    )));
                }
            }
        }
    }

    fn has_blob(&self, repository: &str, digest: &str) -> SideResult<bool> {
        Ok(self
            .registry
            .blob_size_blocking(repository, digest)
            .map_err(|e| SideError::Failed(e.to_string()))?
            .is_some())
    }
}

#[async_trait::async_trait]
impl Source for Awaiting {
    fn describe(&self) -> String {
        "this instance (forwarding as it receives)".to_string()
    }

    async fn manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> SideResult<Option<FetchedManifest>> {
        if reference == self.reference || reference == self.top.digest {
            return Ok(Some(self.top.clone()));
        }
        self.wait_for(&format!("manifest {reference}"), || {
            let here = self
                .registry
                .has_manifest_blocking(repository, reference)
                .map_err(|e| SideError::Failed(e.to_string()))?;
            Ok(here.then_some(()))
        })
        .await?;
        self.local.manifest(repository, reference).await
    }

    async fn blob(&self, repository: &str, digest: &str, size: u64) -> SideResult<ByteStream> {
        let arrivals = &self.registry.arrivals;
        loop {
            let arriving = self
                .wait_for(&format!("blob {digest}"), || {
                    if self.has_blob(repository, digest)? {
                        return Ok(Some(None));
                    }
                    Ok(arrivals.follow(repository, digest).map(Some))
                })
                .await?;
            // Still arriving: forward its bytes as they come in.
            let Some(following) = arriving else {
                return self.local.blob(repository, digest, size).await;
            };
            match arrivals::open(self.registry.store.clone(), &following).await {
                Ok(file) => return Ok(arrivals::stream(following, file, size).boxed()),
                // Committed (renamed) or discarded since it was looked up: look again.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(SideError::Failed(format!("following blob {digest}: {e}"))),
            }
        }
    }

    async fn referrers(&self, repository: &str, digest: &str) -> SideResult<Vec<String>> {
        if digest == self.top.digest {
            return Ok(self.referrers.clone());
        }
        self.local.referrers(repository, digest).await
    }

    async fn repositories(&self) -> SideResult<Vec<String>> {
        self.local.repositories().await
    }

    async fn tags(&self, repository: &str) -> SideResult<Vec<String>> {
        self.local.tags(repository).await
    }
}
