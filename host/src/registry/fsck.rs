//! `berth fsck`: checks that blob content matches its name and that the metadata's links,
//! manifests, tags and upload sessions agree with what is stored; optionally repairs.
//!
//! Repair never deletes content outright: a blob that does not match its digest is moved
//! to `quarantine/`; metadata that points at nothing is removed, and said so.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use crate::digest::Digest;
use crate::storage::blob::BlobStore;
use crate::storage::store::{Durability, ReadTx, Store, StoreError};

/// One thing found wrong.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Problem {
    /// A short kind: `corrupt-blob`, `missing-blob`, `size-mismatch`, `corrupt-manifest`,
    /// `dangling-reference`, `dangling-tag`, `broken-upload`.
    pub kind: &'static str,
    /// What was checked, e.g. `team/app@sha256:…`.
    pub subject: String,
    /// What is wrong.
    pub detail: String,
    /// What `--repair` did about it (empty when not repairing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repaired: Option<String>,
}

/// The result of a check.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Blobs whose content was hashed.
    pub blobs_checked: usize,
    /// Bytes hashed.
    pub bytes_checked: u64,
    /// Links checked.
    pub links_checked: usize,
    /// Manifests checked.
    pub manifests_checked: usize,
    /// Tags checked.
    pub tags_checked: usize,
    /// Upload sessions checked.
    pub uploads_checked: usize,
    /// Blobs no repository links (garbage collection's business, not a fault).
    pub unreferenced_blobs: usize,
    /// Staging files without a session: data of uploads interrupted before anything was
    /// acknowledged. Not a fault; `berth serve` removes them at start, `--repair` too.
    pub unacknowledged_staging_files: usize,
    /// Everything found wrong.
    pub problems: Vec<Problem>,
}

impl Report {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Errors that stop the check itself.
#[derive(Debug, thiserror::Error)]
pub enum FsckError {
    /// The metadata store could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Storage could not be read.
    #[error("blob storage: {0}")]
    Io(#[from] std::io::Error),
}

/// How long a staging file without a session must have gone unwritten before it counts
/// as abandoned. Nodes sharing a blob directory each stage their own uploads, and a
/// monolithic upload has no record until it completes: a younger file may be one that
/// another node is writing right now.
pub const ABANDONED_STAGING_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes staging files that no session owns and that nothing has written for
/// `older_than`. Only data that was never acknowledged can be in them: a session's record
/// is committed durably before its first chunk is acknowledged, and a monolithic upload
/// has no record until it is complete. Safe while nodes serve the data directory.
pub fn remove_unacknowledged_staging(
    metadata: &Store,
    store: &dyn BlobStore,
    older_than: std::time::Duration,
) -> Result<usize, FsckError> {
    let cutoff = std::time::SystemTime::now()
        .checked_sub(older_than)
        .unwrap_or(std::time::UNIX_EPOCH);
    let mut removed = 0;
    // Staging files are listed before sessions are read, so a session created between
    // the two is seen, and its file kept.
    let staged = store.list_staging()?;
    let sessions: HashSet<String> = metadata
        .read_blocking(|tx| tx.registry().uploads())?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    for id in staged {
        if sessions.contains(&id) {
            continue;
        }
        match store.staging_modified(&id) {
            Ok(modified) if modified <= cutoff => {
                store.remove_staging(&id)?;
                removed += 1;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(removed)
}

/// Checks (and with `repair`, fixes) the registry's blobs and metadata.
pub fn check(metadata: &Store, store: &dyn BlobStore, repair: bool) -> Result<Report, FsckError> {
    let mut report = Report::default();

    // 1. Content: every blob hashes to its name.
    let mut present: BTreeMap<Digest, u64> = BTreeMap::new();
    for (digest, size) in store.list()? {
        report.blobs_checked += 1;
        report.bytes_checked += size;
        let actual =
            crate::storage::blob::fs::hash_reader(store.open(&digest, 0)?, digest.algorithm())?
                .finish();
        if actual == digest {
            present.insert(digest, size);
            continue;
        }
        let repaired = if repair {
            Some(format!("moved to {}", store.quarantine(&digest)?))
        } else {
            None
        };
        report.problems.push(Problem {
            kind: "corrupt-blob",
            subject: digest.to_string(),
            detail: format!("content hashes to {actual}"),
            repaired,
        });
    }

    let found =
        metadata.read_blocking(|tx| check_metadata(tx, store, &present, repair, &mut report))?;
    let Found {
        drop_links,
        drop_manifests,
        drop_tags,
        drop_uploads,
        orphans,
    } = found;

    if repair {
        metadata.write_blocking(Durability::Immediate, |tx| -> Result<(), StoreError> {
            let tables = tx.registry();
            for (repo, digest) in &drop_links {
                tables.unlink_blob(repo, digest)?;
            }
            for (repo, digest) in &drop_manifests {
                tables.remove_manifest(repo, digest)?;
            }
            for (repo, tag) in &drop_tags {
                tables.remove_tag(repo, tag)?;
            }
            for id in &drop_uploads {
                tables.remove_upload(id)?;
            }
            Ok(())
        })?;
        for id in drop_uploads.iter().chain(&orphans) {
            store.remove_staging(id)?;
        }
    }
    Ok(report)
}

/// What the metadata check found to drop.
struct Found {
    drop_links: Vec<(String, String)>,
    drop_manifests: Vec<(String, String)>,
    drop_tags: Vec<(String, String)>,
    drop_uploads: Vec<String>,
    orphans: Vec<String>,
}

/// Steps 2 to 5, on one snapshot of the metadata.
fn check_metadata(
    tx: &dyn ReadTx,
    store: &dyn BlobStore,
    present: &BTreeMap<Digest, u64>,
    repair: bool,
    report: &mut Report,
) -> Result<Found, FsckError> {
    let tables = tx.registry();
    // 2. Links: every link reaches content of the recorded size.
    let mut linked: HashSet<String> = HashSet::new();
    let mut drop_links = Vec::new();
    for (repo, digest, size) in tables.all_blob_links()? {
        report.links_checked += 1;
        let stored = digest
            .parse::<Digest>()
            .ok()
            .and_then(|d| present.get(&d).copied());
        match stored {
            Some(actual) if actual == size => {
                linked.insert(digest);
            }
            Some(actual) => {
                report.problems.push(Problem {
                    kind: "size-mismatch",
                    subject: format!("{repo}@{digest}"),
                    detail: format!("link records {size} bytes, content has {actual}"),
                    repaired: None,
                });
            }
            None => {
                drop_links.push((repo.clone(), digest.clone()));
                report.problems.push(Problem {
                    kind: "missing-blob",
                    subject: format!("{repo}@{digest}"),
                    detail: "linked, but the content is missing or corrupt".into(),
                    repaired: repair.then(|| "link removed".into()),
                });
            }
        }
    }
    report.unreferenced_blobs = present
        .keys()
        .filter(|d| !linked.contains(&d.to_string()))
        .count();

    // 3. Manifests: bytes match the digest, references resolve within the repository.
    let mut drop_manifests = Vec::new();
    let dropped_links: HashSet<(String, String)> = drop_links.iter().cloned().collect();
    for (repo, digest, record) in tables.all_manifests()? {
        report.manifests_checked += 1;
        let subject = format!("{repo}@{digest}");
        let bytes = tables.manifest_bytes(&repo, &digest)?.unwrap_or_default();
        let hashes_right = digest
            .parse::<Digest>()
            .is_ok_and(|d| Digest::of(d.algorithm(), &bytes) == d);
        if !hashes_right || bytes.len() as u64 != record.size {
            drop_manifests.push((repo.clone(), digest.clone()));
            report.problems.push(Problem {
                kind: "corrupt-manifest",
                subject,
                detail: "stored bytes do not match the digest".into(),
                repaired: repair.then(|| "manifest removed".into()),
            });
            continue;
        }
        for blob in &record.blobs {
            let ok = tables.blob_link(&repo, blob)?.is_some()
                && !dropped_links.contains(&(repo.clone(), blob.clone()));
            if !ok {
                report.problems.push(Problem {
                    kind: "dangling-reference",
                    subject: subject.clone(),
                    detail: format!("references blob {blob}, which the repository does not hold"),
                    repaired: None,
                });
            }
        }
        for child in &record.children {
            if tables.manifest(&repo, child)?.is_none() {
                report.problems.push(Problem {
                    kind: "dangling-reference",
                    subject: subject.clone(),
                    detail: format!(
                        "references manifest {child}, which the repository does not hold"
                    ),
                    repaired: None,
                });
            }
        }
    }

    // 4. Tags point at manifests.
    let dropped: HashSet<(String, String)> = drop_manifests.iter().cloned().collect();
    let mut drop_tags = Vec::new();
    for (repo, tag, record) in tables.all_tags()? {
        report.tags_checked += 1;
        let exists = tables.manifest(&repo, &record.digest)?.is_some()
            && !dropped.contains(&(repo.clone(), record.digest.clone()));
        if !exists {
            drop_tags.push((repo.clone(), tag.clone()));
            report.problems.push(Problem {
                kind: "dangling-tag",
                subject: format!("{repo}:{tag}"),
                detail: format!(
                    "points at {}, which the repository does not hold",
                    record.digest
                ),
                repaired: repair.then(|| "tag removed".into()),
            });
        }
    }

    // 5. Upload sessions have their acknowledged bytes; staging files have sessions.
    let staging: HashSet<String> = store.list_staging()?.into_iter().collect();
    let mut drop_uploads = Vec::new();
    let mut sessions = HashSet::new();
    for (id, record) in tables.uploads()? {
        report.uploads_checked += 1;
        sessions.insert(id.clone());
        let readable = staging.contains(&id)
            && store
                .hash_staging(&id, record.acknowledged, crate::digest::Algorithm::Sha256)
                .is_ok();
        if !readable && record.acknowledged > 0 {
            drop_uploads.push(id.clone());
            report.problems.push(Problem {
                kind: "broken-upload",
                subject: format!("upload {id} ({})", record.repo),
                detail: format!(
                    "{} bytes were acknowledged but the staging file is missing or shorter",
                    record.acknowledged
                ),
                repaired: repair
                    .then(|| "session removed; the client must restart this upload".into()),
            });
        }
    }
    let orphans: Vec<String> = staging.difference(&sessions).cloned().collect();
    report.unacknowledged_staging_files = orphans.len();
    Ok(Found {
        drop_links,
        drop_manifests,
        drop_tags,
        drop_uploads,
        orphans,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::blob::fs::FsBlobStore;
    use crate::storage::paths::DataPaths;

    /// Nodes sharing a blob directory: the sweep at one node's start (or in its hourly
    /// purge) must leave alone the staging file of an upload another node is writing.
    #[test]
    fn the_sweep_removes_only_orphans_nothing_has_written_for_the_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let paths = DataPaths::new(dir.path());
        let store = FsBlobStore::open(paths.clone()).unwrap();
        let metadata = Store::redb_at(&paths.metadata_db()).unwrap();
        let (old, fresh) = (
            "00000000-0000-0000-0000-000000000001",
            "00000000-0000-0000-0000-000000000002",
        );
        for id in [old, fresh] {
            std::fs::write(paths.upload(id), b"never acknowledged").unwrap();
        }
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        std::fs::File::options()
            .write(true)
            .open(paths.upload(old))
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
        let removed =
            remove_unacknowledged_staging(&metadata, &store, ABANDONED_STAGING_AFTER).unwrap();
        assert_eq!(removed, 1);
        assert!(!paths.upload(old).exists());
        assert!(
            paths.upload(fresh).exists(),
            "another node may be writing it"
        );
    }
}
