//! This instance's own registry as a transfer end: read straight from storage when
//! sending, written through the registry's own checks when fetching (so what arrives is
//! validated like a client's push and lands in the change feed with its origin).

use std::io::Read;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::side::{ByteStream, FetchedManifest, SideError, SideResult, Sink, Source};
use crate::digest::Digest;
use crate::names::{Reference, RepoName};
use crate::registry::Registry;
use crate::registry::content::{self, IngestError, Replicated};
use crate::registry::errcode::{ErrorCode, RegistryError};
use crate::registry::linked::LinkedError;
use crate::storage::clock::Clock;
use crate::storage::store::StoreError;

/// This instance's registry.
pub struct Local {
    registry: Arc<Registry>,
    /// Recorded as the origin of what this side receives.
    origin: Option<String>,
}

impl Local {
    /// Reads from and writes to `registry`; what it writes is recorded as coming from
    /// `origin`.
    pub fn new(registry: Arc<Registry>, origin: Option<String>) -> Local {
        Local { registry, origin }
    }

    fn replicated(&self, clock: Option<Clock>) -> Option<Replicated> {
        self.origin.as_ref().map(|origin| Replicated {
            origin: origin.clone(),
            clock,
        })
    }
}

fn meta_failed(e: StoreError) -> SideError {
    SideError::Failed(format!("local metadata: {e}"))
}

fn from_registry(e: RegistryError) -> SideError {
    match e.code() {
        ErrorCode::Unknown => SideError::Failed(e.to_string()),
        ErrorCode::BlobUnknown | ErrorCode::ManifestUnknown | ErrorCode::NameUnknown => {
            SideError::NotFound(e.to_string())
        }
        _ => SideError::Refused(e.to_string()),
    }
}

fn repo_name(repository: &str) -> SideResult<RepoName> {
    RepoName::parse(repository)
        .map_err(|e| SideError::Refused(format!("invalid repository name {repository}: {e}")))
}

#[async_trait]
impl Source for Local {
    fn describe(&self) -> String {
        "this instance".to_string()
    }

    async fn manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> SideResult<Option<FetchedManifest>> {
        let Some(found) = self
            .registry
            .find_manifest(repository, reference, true)
            .await
            .map_err(meta_failed)?
        else {
            return Ok(None);
        };
        Ok(Some(FetchedManifest {
            bytes: Bytes::from(found.bytes.unwrap_or_default()),
            digest: found.digest,
            media_type: found.record.media_type,
            clock: found.tag.and_then(|t| t.clock),
        }))
    }

    async fn blob(&self, repository: &str, digest: &str, size: u64) -> SideResult<ByteStream> {
        let d: Digest = digest
            .parse()
            .map_err(|e| SideError::Refused(format!("invalid digest {digest}: {e}")))?;
        let (linked, repo) = (self.registry.linked.clone(), repository.to_string());
        let reader = tokio::task::spawn_blocking(move || linked.open(&repo, &d, 0))
            .await
            .map_err(|e| SideError::Failed(e.to_string()))?
            .map_err(|e| match e {
                LinkedError::Unknown => {
                    SideError::NotFound(format!("{repository} does not hold blob {digest}"))
                }
                other => SideError::Failed(other.to_string()),
            })?;
        Ok(stream_reader(reader, size))
    }

    async fn referrers(&self, repository: &str, digest: &str) -> SideResult<Vec<String>> {
        Ok(self
            .registry
            .referrers(repository, digest)
            .await
            .map_err(meta_failed)?
            .into_iter()
            .map(|r| r.digest)
            .collect())
    }

    async fn repositories(&self) -> SideResult<Vec<String>> {
        self.registry.all_repositories().await.map_err(meta_failed)
    }

    async fn tags(&self, repository: &str) -> SideResult<Vec<String>> {
        Ok(self
            .registry
            .tags(repository, None, usize::MAX)
            .await
            .map_err(meta_failed)?
            .unwrap_or_default())
    }
}

fn stream_reader(reader: Box<dyn Read + Send>, len: u64) -> ByteStream {
    Box::pin(crate::storage::blob::stream_reader(reader, len))
}

#[async_trait]
impl Sink for Local {
    fn describe(&self) -> String {
        "this instance".to_string()
    }

    async fn resolve(&self, repository: &str, reference: &str) -> SideResult<Option<String>> {
        Ok(self
            .registry
            .find_manifest(repository, reference, false)
            .await
            .map_err(meta_failed)?
            .map(|found| found.digest))
    }

    async fn has_blob(&self, repository: &str, digest: &str) -> SideResult<bool> {
        Ok(self
            .registry
            .blob_size(repository, digest)
            .await
            .map_err(meta_failed)?
            .is_some())
    }

    async fn mount(&self, repository: &str, from: &str, digest: &str) -> SideResult<bool> {
        let d: Digest = digest
            .parse()
            .map_err(|e| SideError::Refused(format!("invalid digest {digest}: {e}")))?;
        content::mount(
            &self.registry,
            &repo_name(repository)?,
            &repo_name(from)?,
            &d,
        )
        .await
        .map_err(from_registry)
    }

    async fn put_blob(
        &self,
        repository: &str,
        digest: &str,
        _size: u64,
        bytes: ByteStream,
    ) -> SideResult<()> {
        let d: Digest = digest
            .parse()
            .map_err(|e| SideError::Refused(format!("invalid digest {digest}: {e}")))?;
        match content::ingest_blob(&self.registry, &repo_name(repository)?, &d, bytes).await {
            Ok(_) => Ok(()),
            Err(IngestError::DigestMismatch { expected, actual }) => Err(SideError::Failed(
                format!("blob {expected} arrived as {actual}: the source sent other content"),
            )),
            Err(IngestError::Append(e)) => Err(SideError::Failed(e.to_string())),
            Err(IngestError::Registry(e)) => Err(from_registry(e)),
        }
    }

    async fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        manifest: &FetchedManifest,
    ) -> SideResult<()> {
        let reference = Reference::parse(reference)
            .map_err(|e| SideError::Refused(format!("invalid reference {reference}: {e}")))?;
        content::put_manifest(
            &self.registry,
            &repo_name(repository)?,
            &reference,
            Some(&manifest.media_type),
            manifest.bytes.clone(),
            &[],
            self.replicated(manifest.clock.clone()).as_ref(),
        )
        .await
        .map(|_| ())
        .map_err(from_registry)
    }

    async fn delete(
        &self,
        repository: &str,
        reference: &str,
        clock: Option<&Clock>,
    ) -> SideResult<bool> {
        let reference = Reference::parse(reference)
            .map_err(|e| SideError::Refused(format!("invalid reference {reference}: {e}")))?;
        content::delete(
            &self.registry,
            &repo_name(repository)?,
            &reference,
            self.replicated(clock.cloned()).as_ref(),
        )
        .await
        .map_err(from_registry)
    }
}
