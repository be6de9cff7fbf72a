//! Tables `manifests` and `manifest_bytes`: the manifests each repository holds, by
//! digest. The bytes are kept exactly as pushed, so a pull returns the pushed digest.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::changes::{Change, ChangeKind};
use super::{KEY_END, MetaResult, Reader, decode, encode};

const RECORDS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("manifests");
const BYTES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("manifest_bytes");

/// What berth learned about a manifest when it accepted it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManifestRecord {
    /// The media type it was pushed with.
    pub media_type: String,
    /// Its length in bytes.
    pub size: u64,
    /// `artifactType`, or the config's media type for an image manifest (as the referrers
    /// API reports it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The `subject` digest, for referrers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Blobs it references (config and layers), each required to be linked.
    #[serde(default)]
    pub blobs: Vec<String>,
    /// Manifests it references (an index's children).
    #[serde(default)]
    pub children: Vec<String>,
    /// Its annotations, as the referrers API reports them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
    /// When it was pushed (ms since the epoch).
    pub created_at: u64,
}

pub(super) fn create(tx: &WriteTransaction) -> MetaResult<()> {
    tx.open_table(RECORDS)?;
    tx.open_table(BYTES)?;
    Ok(())
}

/// Stores a manifest in `repo` (replacing an identical earlier push).
pub fn put(
    tx: &WriteTransaction,
    repo: &str,
    digest: &str,
    record: &ManifestRecord,
    bytes: &[u8],
) -> MetaResult<()> {
    tx.open_table(RECORDS)?
        .insert((repo, digest), encode(record).as_slice())?;
    tx.open_table(BYTES)?.insert((repo, digest), bytes)?;
    Ok(())
}

/// Removes a manifest; returns its record if it was there.
pub fn remove(
    tx: &WriteTransaction,
    repo: &str,
    digest: &str,
) -> MetaResult<Option<ManifestRecord>> {
    let record = match tx.open_table(RECORDS)?.remove((repo, digest))? {
        Some(v) => Some(decode("manifests", v.value())?),
        None => None,
    };
    tx.open_table(BYTES)?.remove((repo, digest))?;
    Ok(record)
}

/// The record of a manifest in `repo`.
pub fn get(tx: &impl Reader, repo: &str, digest: &str) -> MetaResult<Option<ManifestRecord>> {
    match tx.open(RECORDS)?.get((repo, digest))? {
        Some(v) => Ok(Some(decode("manifests", v.value())?)),
        None => Ok(None),
    }
}

/// The exact bytes of a manifest in `repo`.
pub fn bytes(tx: &impl Reader, repo: &str, digest: &str) -> MetaResult<Option<Vec<u8>>> {
    Ok(tx
        .open(BYTES)?
        .get((repo, digest))?
        .map(|v| v.value().to_vec()))
}

/// Whether `repo` holds the manifest.
pub fn exists(tx: &impl Reader, repo: &str, digest: &str) -> MetaResult<bool> {
    Ok(tx.open(RECORDS)?.get((repo, digest))?.is_some())
}

/// Every (repository, digest, record): for fsck.
pub fn all(tx: &impl Reader) -> MetaResult<Vec<(String, String, ManifestRecord)>> {
    let table = tx.open(RECORDS)?;
    let mut out = Vec::new();
    for entry in table.iter()? {
        let (k, v) = entry?;
        let (repo, digest) = k.value();
        out.push((
            repo.to_owned(),
            digest.to_owned(),
            decode("manifests", v.value())?,
        ));
    }
    Ok(out)
}

/// Number of manifests in `repo`.
pub fn count(tx: &impl Reader, repo: &str) -> MetaResult<usize> {
    Ok(tx
        .open(RECORDS)?
        .range((repo, "")..(repo, KEY_END))?
        .count())
}

/// Removes every manifest of `repo`.
pub fn remove_repository(tx: &WriteTransaction, repo: &str) -> MetaResult<()> {
    tx.open_table(RECORDS)?
        .retain_in((repo, "")..(repo, KEY_END), |_, _| false)?;
    tx.open_table(BYTES)?
        .retain_in((repo, "")..(repo, KEY_END), |_, _| false)?;
    Ok(())
}

/// Deletes a manifest from `repo` with everything that points at it there: the tags that
/// name it (each leaving a tombstone and a history entry) and its entry in its subject's
/// referrers, and records the delete in the change feed. Returns whether the manifest
/// existed.
pub fn delete_with_references(
    tx: &WriteTransaction,
    repo: &str,
    digest: &str,
    by: &super::tags::Writer<'_>,
) -> MetaResult<bool> {
    let Some(record) = remove(tx, repo, digest)? else {
        return Ok(false);
    };
    let tags = super::tags::pointing_at(tx, repo, digest)?;
    for tag in &tags {
        super::tags::bury(tx, repo, tag, by)?;
    }
    if let Some(subject) = &record.subject {
        super::referrers::remove(tx, repo, subject, digest)?;
    }
    let change = ChangeKind::ManifestDeleted {
        digest: digest.to_owned(),
        tags,
    };
    super::changes::append(tx, &Change::new(repo, change, by.origin))?;
    Ok(true)
}
