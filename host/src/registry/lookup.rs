//! The registry's reads, for its own handlers and for the components that look into it
//! (the admin API, replication): manifests by tag or digest, pages of repositories and
//! tags, referrers, tag history, blob links, upload sessions. Each is one snapshot of the
//! store; on redb it runs inline (snapshots never wait), on PostgreSQL on a blocking
//! thread.

use crate::storage::store::{ReadTx, StoreError};
use crate::storage::tables::registry::{
    HistoryEntry, ManifestFound, ReferrerDescriptor, TagRecord, UploadRecord,
};

use super::Registry;

/// A repository as the admin API lists it.
#[derive(Debug, Clone)]
pub struct RepositorySummary {
    /// Its name.
    pub name: String,
    /// How many tags it has.
    pub tags: u64,
    /// How many manifests it holds.
    pub manifests: u64,
}

impl Registry {
    async fn snapshot<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn ReadTx) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.metadata.read(f).await
    }

    /// The manifest `reference` (a tag, or a digest with `:`) names in `repo`, with its
    /// bytes when `with_bytes`.
    pub async fn find_manifest(
        &self,
        repo: &str,
        reference: &str,
        with_bytes: bool,
    ) -> Result<Option<ManifestFound>, StoreError> {
        let (repo, reference) = (repo.to_owned(), reference.to_owned());
        self.snapshot(move |tx| tx.registry().find_manifest(&repo, &reference, with_bytes))
            .await
    }

    /// Whether `repo` holds manifest `digest`.
    pub async fn has_manifest(&self, repo: &str, digest: &str) -> Result<bool, StoreError> {
        let (repo, digest) = (repo.to_owned(), digest.to_owned());
        self.snapshot(move |tx| Ok(tx.registry().manifest(&repo, &digest)?.is_some()))
            .await
    }

    /// Whether `repo` holds manifest `digest`; blocks.
    pub fn has_manifest_blocking(&self, repo: &str, digest: &str) -> Result<bool, StoreError> {
        self.metadata
            .read_blocking(|tx| Ok(tx.registry().manifest(repo, digest)?.is_some()))
    }

    /// The size of blob `digest` if `repo` links it.
    pub async fn blob_size(&self, repo: &str, digest: &str) -> Result<Option<u64>, StoreError> {
        let (repo, digest) = (repo.to_owned(), digest.to_owned());
        self.snapshot(move |tx| tx.registry().blob_link(&repo, &digest))
            .await
    }

    /// The size of blob `digest` if `repo` links it; blocks.
    pub fn blob_size_blocking(&self, repo: &str, digest: &str) -> Result<Option<u64>, StoreError> {
        self.metadata
            .read_blocking(|tx| tx.registry().blob_link(repo, digest))
    }

    /// Up to `limit` repository names after `after`, in byte order.
    pub async fn repositories(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.snapshot(move |tx| tx.registry().repositories(after.as_deref(), limit))
            .await
    }

    /// Every repository name, in byte order.
    pub async fn all_repositories(&self) -> Result<Vec<String>, StoreError> {
        self.snapshot(|tx| {
            let mut out: Vec<String> = Vec::new();
            loop {
                let batch = tx
                    .registry()
                    .repositories(out.last().map(String::as_str), 1000)?;
                if batch.is_empty() {
                    return Ok(out);
                }
                out.extend(batch);
            }
        })
        .await
    }

    /// Up to `limit` tags of `repo` after `after`; `None` when the repository does not
    /// exist.
    pub async fn tags(
        &self,
        repo: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let repo = repo.to_owned();
        self.snapshot(move |tx| {
            let tables = tx.registry();
            if tables.repository(&repo)?.is_none() {
                return Ok(None);
            }
            Ok(Some(tables.tags(&repo, after.as_deref(), limit)?))
        })
        .await
    }

    /// Every tag of `repo` with its target, in tag order.
    pub async fn tag_targets(&self, repo: &str) -> Result<Vec<(String, TagRecord)>, StoreError> {
        let repo = repo.to_owned();
        self.snapshot(move |tx| {
            let tables = tx.registry();
            let mut out = Vec::new();
            for name in tables.tags(&repo, None, usize::MAX)? {
                if let Some(target) = tables.tag(&repo, &name)? {
                    out.push((name, target));
                }
            }
            Ok(out)
        })
        .await
    }

    /// Where `tag` points now, and what it pointed at before (newest first).
    pub async fn tag_history(
        &self,
        repo: &str,
        tag: &str,
    ) -> Result<(Option<TagRecord>, Vec<HistoryEntry>), StoreError> {
        let (repo, tag) = (repo.to_owned(), tag.to_owned());
        self.snapshot(move |tx| {
            let tables = tx.registry();
            Ok((tables.tag(&repo, &tag)?, tables.tag_history(&repo, &tag)?))
        })
        .await
    }

    /// The referrers of `subject` in `repo`, in digest order.
    pub async fn referrers(
        &self,
        repo: &str,
        subject: &str,
    ) -> Result<Vec<ReferrerDescriptor>, StoreError> {
        let (repo, subject) = (repo.to_owned(), subject.to_owned());
        self.snapshot(move |tx| tx.registry().referrers(&repo, &subject))
            .await
    }

    /// Up to `limit` repositories after `after` with their tag and manifest counts.
    pub async fn repository_summaries(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<RepositorySummary>, StoreError> {
        self.snapshot(move |tx| {
            let tables = tx.registry();
            let mut out = Vec::new();
            for name in tables.repositories(after.as_deref(), limit)? {
                out.push(RepositorySummary {
                    tags: tables.tags(&name, None, usize::MAX)?.len() as u64,
                    manifests: tables.manifest_count(&name)?,
                    name,
                });
            }
            Ok(out)
        })
        .await
    }

    /// Upload session `id`, as recorded.
    pub async fn upload(&self, id: &str) -> Result<Option<UploadRecord>, StoreError> {
        let id = id.to_owned();
        self.snapshot(move |tx| tx.registry().upload(&id)).await
    }

    /// Every upload session, as recorded.
    pub async fn uploads(&self) -> Result<Vec<(String, UploadRecord)>, StoreError> {
        self.snapshot(|tx| tx.registry().uploads()).await
    }
}
