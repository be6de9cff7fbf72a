//! Forwarding an artifact while it still arrives: a delegated transfer's source when the
//! planner read the manifest ahead. Each blob, child and referrer is sent as soon as it
//! is here, a blob even byte by byte while its upload still runs on this node.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::super::local::Local;
use super::super::side::{ByteStream, FetchedManifest, SideError, SideResult, Source};
use crate::registry::{Registry, arrivals};

/// This instance's storage as the source of an artifact it is still receiving: the
/// manifest comes read ahead from the planner; a blob, child or referrer that is not here
/// yet is waited for, and sent as soon as it is.
pub(super) struct Awaiting {
    pub(super) top: FetchedManifest,
    pub(super) reference: String,
    pub(super) referrers: Vec<String>,
    pub(super) wait: Duration,
    pub(super) local: Local,
    pub(super) registry: Arc<Registry>,
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
