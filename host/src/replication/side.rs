//! The two ends of a transfer, as the copier sees them: a registry to read from and a
//! registry to write to. This instance's own storage ([`super::local`]) and a remote
//! registry reached over the OCI API ([`super::remote`]) are both.

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

use crate::storage::clock::Clock;

/// A blob's bytes on their way from one registry to another.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// Why one operation against a registry failed.
#[derive(Debug, thiserror::Error)]
pub enum SideError {
    /// The other side refused our credentials or their scope.
    #[error("{0}")]
    Unauthorized(String),
    /// Content the operation needed is not there.
    #[error("{0}")]
    NotFound(String),
    /// The other side refused the content (invalid manifest, missing blob, too large).
    #[error("{0}")]
    Refused(String),
    /// The destination has no place for the content yet: its repository's project does
    /// not exist there. Heals when the project is created (by an administrator, or by a
    /// dual-primary pair's metadata convergence), so it is retried like a failure.
    #[error("{0}")]
    NoDestination(String),
    /// Anything else: a dropped connection, a 5xx, a timeout, local storage failing.
    #[error("{0}")]
    Failed(String),
}

impl SideError {
    /// Whether trying again later can succeed: the other side was unreachable or failing,
    /// refused the credentials (rights being fixed), or has no project for the content
    /// yet. A refusal of the content itself, or content gone at the source, cannot heal.
    pub fn can_heal(&self) -> bool {
        matches!(
            self,
            SideError::Failed(_) | SideError::Unauthorized(_) | SideError::NoDestination(_)
        )
    }

    /// The same error, read as an answer to a write: "not found" there means the
    /// destination repository's project does not exist.
    pub fn at_destination(self) -> SideError {
        match self {
            SideError::NotFound(text) => SideError::NoDestination(text),
            other => other,
        }
    }
}

/// Result alias for side operations.
pub type SideResult<T> = Result<T, SideError>;

/// A manifest read from a registry, byte for byte.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// Its digest (`sha256:…`).
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Its bytes exactly as stored.
    pub bytes: Bytes,
    /// The clock of the tag it was read through, when the source keeps clocks: it
    /// travels with the manifest so the destination orders racing moves of the tag.
    pub clock: Option<Clock>,
}

/// A registry content is read from.
#[async_trait]
pub trait Source: Send + Sync {
    /// A short description for errors and logs: an endpoint name or `local`.
    fn describe(&self) -> String;

    /// The manifest `reference` (a tag or digest) names in `repository`, if any.
    async fn manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> SideResult<Option<FetchedManifest>>;

    /// A blob's bytes.
    async fn blob(&self, repository: &str, digest: &str, size: u64) -> SideResult<ByteStream>;

    /// Digests of the manifests whose `subject` is `digest` (signatures, SBOMs…); empty
    /// where the registry has no referrers API.
    async fn referrers(&self, repository: &str, digest: &str) -> SideResult<Vec<String>>;

    /// Repositories, for a full run.
    async fn repositories(&self) -> SideResult<Vec<String>>;

    /// Tags of `repository`, for a full run.
    async fn tags(&self, repository: &str) -> SideResult<Vec<String>>;
}

/// A registry content is written to.
#[async_trait]
pub trait Sink: Send + Sync {
    /// A short description for errors and logs.
    fn describe(&self) -> String;

    /// The digest `reference` (a tag or digest) resolves to in `repository`, if any.
    async fn resolve(&self, repository: &str, reference: &str) -> SideResult<Option<String>>;

    /// Whether `repository` holds the blob.
    async fn has_blob(&self, repository: &str, digest: &str) -> SideResult<bool>;

    /// Links the blob from `from` (a repository of this registry known to hold it) into
    /// `repository` without sending it; returns whether the registry did.
    async fn mount(&self, repository: &str, from: &str, digest: &str) -> SideResult<bool>;

    /// Stores a blob from `bytes`; the receiver checks the digest.
    async fn put_blob(
        &self,
        repository: &str,
        digest: &str,
        size: u64,
        bytes: ByteStream,
    ) -> SideResult<()>;

    /// Stores a manifest under `reference` (a tag or its digest), byte for byte.
    async fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        manifest: &FetchedManifest,
    ) -> SideResult<()>;

    /// Deletes a tag, or a manifest by digest, as of `clock` (the delete's clock at the
    /// source, when it keeps clocks); returns whether it was there.
    async fn delete(
        &self,
        repository: &str,
        reference: &str,
        clock: Option<&Clock>,
    ) -> SideResult<bool>;
}

/// What a manifest's bytes say about its media type, for registries that do not tell
/// (or when the body disagrees with nothing): the `mediaType` field, else the OCI type its
/// shape implies.
pub fn media_type_of(bytes: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Shape {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Shape>(bytes) {
        Ok(Shape {
            media_type: Some(t),
            ..
        }) => t,
        Ok(Shape {
            manifests: Some(_), ..
        }) => "application/vnd.oci.image.index.v1+json".to_string(),
        _ => "application/vnd.oci.image.manifest.v1+json".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::media_type_of;

    #[test]
    fn the_media_type_comes_from_the_body_or_its_shape() {
        assert_eq!(
            media_type_of(
                br#"{"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#
            ),
            "application/vnd.docker.distribution.manifest.v2+json"
        );
        assert_eq!(
            media_type_of(br#"{"schemaVersion":2,"manifests":[]}"#),
            "application/vnd.oci.image.index.v1+json"
        );
        assert_eq!(
            media_type_of(br#"{"schemaVersion":2,"layers":[]}"#),
            "application/vnd.oci.image.manifest.v1+json"
        );
    }
}
