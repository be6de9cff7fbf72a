//! A repository-scoped view of blobs: a blob is visible in a repository only through that
//! repository's link, whatever the global store holds.

use std::io::{self, Read};
use std::sync::Arc;

use crate::digest::Digest;
use crate::storage::blob::BlobStore;
use crate::storage::store::{Store, StoreError};

/// Errors reading a linked blob.
#[derive(Debug, thiserror::Error)]
pub enum LinkedError {
    /// The repository does not link this digest.
    #[error("blob unknown to this repository")]
    Unknown,
    /// The link exists but the content is missing: the store and the metadata disagree
    /// (`berth fsck` reports this).
    #[error("blob {0} is linked but its content is missing")]
    Missing(Digest),
    /// The metadata store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Blobs as seen from repositories.
#[derive(Clone)]
pub struct LinkedBlobs {
    metadata: Store,
    store: Arc<dyn BlobStore>,
}

impl LinkedBlobs {
    /// A view over `store` governed by the links in `metadata`.
    pub fn new(metadata: Store, store: Arc<dyn BlobStore>) -> LinkedBlobs {
        LinkedBlobs { metadata, store }
    }

    /// The size of `digest` if `repo` links it. Reads metadata only (no filesystem access).
    pub async fn stat(&self, repo: &str, digest: &Digest) -> Result<u64, LinkedError> {
        let (repo, digest) = (repo.to_owned(), digest.to_string());
        self.metadata
            .read(move |tx| tx.registry().blob_link(&repo, &digest))
            .await?
            .ok_or(LinkedError::Unknown)
    }

    /// [`LinkedBlobs::stat`], blocking.
    fn stat_blocking(&self, repo: &str, digest: &Digest) -> Result<u64, LinkedError> {
        self.metadata
            .read_blocking(|tx| tx.registry().blob_link(repo, &digest.to_string()))?
            .ok_or(LinkedError::Unknown)
    }

    /// A reader of `digest` from `offset`, if `repo` links it. Blocks.
    pub fn open(
        &self,
        repo: &str,
        digest: &Digest,
        offset: u64,
    ) -> Result<Box<dyn Read + Send>, LinkedError> {
        self.stat_blocking(repo, digest)?;
        match self.store.open(digest, offset) {
            Ok(r) => Ok(r),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(LinkedError::Missing(digest.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }
}
