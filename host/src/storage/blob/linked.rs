//! A repository-scoped view of blobs: a blob is visible in a repository only through that
//! repository's link, whatever the global store holds.

use std::io::{self, Read};
use std::sync::Arc;

use super::BlobStore;
use crate::digest::Digest;
use crate::storage::meta::{self, MetaError, Metadata};

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
    /// Metadata failed.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// The store failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Blobs as seen from repositories.
#[derive(Clone)]
pub struct LinkedBlobs {
    meta: Arc<Metadata>,
    store: Arc<dyn BlobStore>,
}

impl LinkedBlobs {
    /// A view over `store` governed by the links in `meta`.
    pub fn new(meta: Arc<Metadata>, store: Arc<dyn BlobStore>) -> LinkedBlobs {
        LinkedBlobs { meta, store }
    }

    /// The size of `digest` if `repo` links it. Reads metadata only (no filesystem access).
    pub fn stat(&self, repo: &str, digest: &Digest) -> Result<u64, LinkedError> {
        let tx = self.meta.read()?;
        meta::blob_links::get(&tx, repo, &digest.to_string())?.ok_or(LinkedError::Unknown)
    }

    /// A reader of `digest` from `offset`, if `repo` links it. Blocks.
    pub fn open(
        &self,
        repo: &str,
        digest: &Digest,
        offset: u64,
    ) -> Result<Box<dyn Read + Send>, LinkedError> {
        self.stat(repo, digest)?;
        match self.store.open(digest, offset) {
            Ok(r) => Ok(r),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(LinkedError::Missing(digest.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }
}
