//! Table `changes`: the registry's change feed.
//!
//! Every manifest push that adds a manifest or moves a tag, and every delete, appends one
//! record in the same transaction as the change itself. A consumer (the replication
//! engine) that remembers the last sequence number it handled therefore sees every
//! committed change exactly once, across crashes, and never one that was rolled back.

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{MetaResult, Reader, decode, encode, now_millis};

const TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("changes");

/// What changed in one repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ChangeKind {
    /// A manifest was pushed (new to the repository, or re-tagged): `tag` names the tag
    /// that now points at it, if the push was by tag.
    Manifest {
        /// The manifest's digest.
        digest: String,
        /// Its media type.
        media_type: String,
        /// The tag it was pushed under, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
    },
    /// A tag was removed (the manifest stays).
    TagDeleted {
        /// The tag.
        tag: String,
        /// Where it pointed.
        digest: String,
        /// The delete's clock, which travels with it so that the peer orders it against
        /// its own moves of the tag.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clock: Option<crate::storage::clock::Clock>,
    },
    /// A manifest was deleted, with every tag that pointed at it.
    ManifestDeleted {
        /// The manifest's digest.
        digest: String,
        /// The tags that went with it.
        #[serde(default)]
        tags: Vec<String>,
    },
}

/// One entry of the feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The repository.
    pub repository: String,
    /// What happened.
    #[serde(flatten)]
    pub kind: ChangeKind,
    /// Where the content came from when it arrived by replication (an endpoint or
    /// instance name), so that it is not sent back there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// When (ms since the epoch).
    pub at: u64,
}

impl Change {
    /// A change made now.
    pub fn new(repository: &str, kind: ChangeKind, origin: Option<&str>) -> Change {
        Change {
            repository: repository.to_owned(),
            kind,
            origin: origin.map(str::to_owned),
            at: now_millis(),
        }
    }
}

pub(super) fn create(tx: &WriteTransaction) -> MetaResult<()> {
    tx.open_table(TABLE)?;
    Ok(())
}

/// Appends `change`; returns its sequence number (1 for the first change ever).
pub fn append(tx: &WriteTransaction, change: &Change) -> MetaResult<u64> {
    let mut table = tx.open_table(TABLE)?;
    let seq = table.last()?.map(|(k, _)| k.value()).unwrap_or(0) + 1;
    table.insert(seq, encode(change).as_slice())?;
    Ok(seq)
}

/// Up to `limit` changes with a sequence number greater than `after`, oldest first.
pub fn after(tx: &impl Reader, after: u64, limit: usize) -> MetaResult<Vec<(u64, Change)>> {
    let table = tx.open(TABLE)?;
    let mut out = Vec::new();
    for entry in table.range(after.saturating_add(1)..)? {
        if out.len() >= limit {
            break;
        }
        let (k, v) = entry?;
        out.push((k.value(), decode("changes", v.value())?));
    }
    Ok(out)
}

/// The sequence number of the newest change, 0 when there is none.
pub fn last_seq(tx: &impl Reader) -> MetaResult<u64> {
    Ok(tx.open(TABLE)?.last()?.map(|(k, _)| k.value()).unwrap_or(0))
}

/// Removes every change up to and including `seq`, once every consumer has handled them.
/// The newest change is always kept, so that sequence numbers never restart.
pub fn trim_through(tx: &WriteTransaction, seq: u64) -> MetaResult<u64> {
    let mut table = tx.open_table(TABLE)?;
    let newest = table.last()?.map(|(k, _)| k.value()).unwrap_or(0);
    let upto = seq.min(newest.saturating_sub(1));
    let before = table.len()?;
    table.retain_in(..=upto, |_, _| false)?;
    Ok(before - table.len()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::meta::Metadata;

    fn manifest(digest: &str) -> ChangeKind {
        ChangeKind::Manifest {
            digest: digest.into(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            tag: Some("v1".into()),
        }
    }

    #[test]
    fn changes_are_numbered_in_order_and_read_after_a_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Metadata::open(&dir.path().join("m.redb")).unwrap();
        for i in 0..5 {
            let seq = meta
                .write(|tx| {
                    append(
                        tx,
                        &Change::new("team/app", manifest(&format!("d{i}")), None),
                    )
                })
                .unwrap();
            assert_eq!(seq, i + 1);
        }
        let tx = meta.read().unwrap();
        let read = after(&tx, 2, 2).unwrap();
        assert_eq!(read.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [3, 4]);
        assert_eq!(last_seq(&tx).unwrap(), 5);
    }

    #[test]
    fn trimming_keeps_the_newest_so_numbers_never_restart() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Metadata::open(&dir.path().join("m.redb")).unwrap();
        for i in 0..3 {
            meta.write(|tx| {
                append(
                    tx,
                    &Change::new("team/app", manifest(&format!("d{i}")), None),
                )
            })
            .unwrap();
        }
        let removed = meta.write(|tx| trim_through(tx, 10)).unwrap();
        assert_eq!(removed, 2);
        let seq = meta
            .write(|tx| append(tx, &Change::new("team/app", manifest("d9"), Some("peer"))))
            .unwrap();
        assert_eq!(seq, 4);
        let tx = meta.read().unwrap();
        let rest = after(&tx, 0, 10).unwrap();
        assert_eq!(rest.len(), 2);
        assert_eq!(rest[1].1.origin.as_deref(), Some("peer"));
    }
}
