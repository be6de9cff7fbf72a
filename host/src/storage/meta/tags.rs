//! Table `tags`: which manifest each tag of a repository points to.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::changes::{Change, ChangeKind};
use super::tag_history::{self, HistoryEntry, HistoryEvent, Tombstone};
use super::{KEY_END, MetaResult, Reader, decode, encode, now_millis};
use crate::storage::clock::Clock;

const TABLE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("tags");

/// A tag's target.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TagRecord {
    /// The manifest digest it points to.
    pub digest: String,
    /// When it was last moved (ms since the epoch).
    pub updated_at: u64,
    /// The clock of its last move; tags written before clocks existed have none and lose
    /// to any replicated move.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<Clock>,
}

pub(super) fn create(tx: &WriteTransaction) -> MetaResult<()> {
    tx.open_table(TABLE)?;
    Ok(())
}

/// Who moves or deletes a tag, and with what clock.
#[derive(Debug, Clone)]
pub struct Writer<'a> {
    /// The move's clock: a fresh local reading, or the one a replicated move carried.
    pub clock: Clock,
    /// Where the move came from, when it was replicated (`None`: a client of this
    /// instance, whose writes always win here).
    pub origin: Option<&'a str>,
    /// Whether the clock came from a peer, so that it must beat what is here.
    pub replicated: bool,
}

/// What a tag write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagWrite {
    /// The tag now points at the digest.
    Moved,
    /// It pointed there already.
    Unchanged,
    /// A replicated move that lost to a later move or delete here; kept in the history.
    Lost,
}

/// Points `tag` of `repo` at `digest`, last writer wins by clock: a replicated move older
/// than the tag's last move (or its deletion) loses and is recorded in the history; the
/// target a move replaces is recorded too.
pub fn write(
    tx: &WriteTransaction,
    repo: &str,
    tag: &str,
    digest: &str,
    by: &Writer<'_>,
) -> MetaResult<TagWrite> {
    let current = get(tx, repo, tag)?;
    if let Some(current) = &current
        && current.digest == digest
    {
        if by.replicated && current.clock.as_ref().is_none_or(|c| *c < by.clock) {
            // Same target, later clock: both sides now agree on the clock too.
            let record = TagRecord {
                clock: Some(by.clock.clone()),
                ..current.clone()
            };
            tx.open_table(TABLE)?
                .insert((repo, tag), encode(&record).as_slice())?;
        }
        return Ok(TagWrite::Unchanged);
    }
    if by.replicated {
        let newer_here = match &current {
            Some(c) => c.clock.as_ref().is_some_and(|c| *c > by.clock),
            None => tag_history::tombstone(tx, repo, tag)?.is_some_and(|t| t.clock > by.clock),
        };
        if newer_here {
            let lost = HistoryEntry {
                digest: digest.to_owned(),
                clock: Some(by.clock.clone()),
                origin: by.origin.map(str::to_owned),
                event: HistoryEvent::Lost,
                at: now_millis(),
            };
            tag_history::record(tx, repo, tag, &lost)?;
            return Ok(TagWrite::Lost);
        }
    }
    if let Some(old) = current {
        let replaced = HistoryEntry {
            digest: old.digest,
            clock: old.clock,
            origin: by.origin.map(str::to_owned),
            event: HistoryEvent::Replaced,
            at: now_millis(),
        };
        tag_history::record(tx, repo, tag, &replaced)?;
    }
    let record = TagRecord {
        digest: digest.to_owned(),
        updated_at: now_millis(),
        clock: Some(by.clock.clone()),
    };
    tx.open_table(TABLE)?
        .insert((repo, tag), encode(&record).as_slice())?;
    tag_history::unbury(tx, repo, tag)?;
    Ok(TagWrite::Moved)
}

/// Removes a tag because its manifest is being deleted: a history entry and a tombstone,
/// but no change of its own (the manifest's delete is the change).
pub fn bury(tx: &WriteTransaction, repo: &str, tag: &str, by: &Writer<'_>) -> MetaResult<()> {
    let Some(record) = get(tx, repo, tag)? else {
        return Ok(());
    };
    tx.open_table(TABLE)?.remove((repo, tag))?;
    let gone = HistoryEntry {
        digest: record.digest.clone(),
        clock: record.clock,
        origin: by.origin.map(str::to_owned),
        event: HistoryEvent::Deleted,
        at: now_millis(),
    };
    tag_history::record(tx, repo, tag, &gone)?;
    let tombstone = Tombstone {
        digest: record.digest,
        clock: by.clock.clone(),
        at: now_millis(),
    };
    tag_history::bury(tx, repo, tag, &tombstone)
}

/// Removes a tag without a trace: for fsck's repairs and whole-repository deletes.
pub fn remove(tx: &WriteTransaction, repo: &str, tag: &str) -> MetaResult<bool> {
    Ok(tx.open_table(TABLE)?.remove((repo, tag))?.is_some())
}

/// Deletes a tag, leaving a tombstone with the delete's clock and a history entry, and
/// records the delete in the change feed. A replicated delete older than the tag's last
/// move is ignored (the move happened after it). Returns the deleted tag, if it was.
pub fn delete(
    tx: &WriteTransaction,
    repo: &str,
    tag: &str,
    by: &Writer<'_>,
) -> MetaResult<Option<TagRecord>> {
    let Some(record) = get(tx, repo, tag)? else {
        if by.replicated {
            // Remember the delete anyway: a move it beat may still be on its way here.
            let tombstone = Tombstone {
                digest: String::new(),
                clock: by.clock.clone(),
                at: now_millis(),
            };
            tag_history::bury(tx, repo, tag, &tombstone)?;
        }
        return Ok(None);
    };
    if by.replicated && record.clock.as_ref().is_some_and(|c| *c > by.clock) {
        return Ok(None);
    }
    tx.open_table(TABLE)?.remove((repo, tag))?;
    let gone = HistoryEntry {
        digest: record.digest.clone(),
        clock: record.clock.clone(),
        origin: by.origin.map(str::to_owned),
        event: HistoryEvent::Deleted,
        at: now_millis(),
    };
    tag_history::record(tx, repo, tag, &gone)?;
    let tombstone = Tombstone {
        digest: record.digest.clone(),
        clock: by.clock.clone(),
        at: now_millis(),
    };
    tag_history::bury(tx, repo, tag, &tombstone)?;
    let change = ChangeKind::TagDeleted {
        tag: tag.to_owned(),
        digest: record.digest.clone(),
        clock: Some(by.clock.clone()),
    };
    super::changes::append(tx, &Change::new(repo, change, by.origin))?;
    Ok(Some(record))
}

/// Where `tag` points.
pub fn get(tx: &impl Reader, repo: &str, tag: &str) -> MetaResult<Option<TagRecord>> {
    match tx.open(TABLE)?.get((repo, tag))? {
        Some(v) => Ok(Some(decode("tags", v.value())?)),
        None => Ok(None),
    }
}

/// Up to `limit` tags of `repo` in lexical order, strictly after `after`.
pub fn list(
    tx: &impl Reader,
    repo: &str,
    after: Option<&str>,
    limit: usize,
) -> MetaResult<Vec<String>> {
    let table = tx.open(TABLE)?;
    let start = after.unwrap_or("");
    let mut out = Vec::new();
    for entry in table.range((repo, start)..(repo, KEY_END))? {
        let (k, _) = entry?;
        let tag = k.value().1;
        if after.is_some_and(|a| tag <= a) {
            continue;
        }
        if out.len() >= limit {
            break;
        }
        out.push(tag.to_owned());
    }
    Ok(out)
}

/// Every tag of `repo` pointing at `digest`.
pub fn pointing_at(tx: &impl Reader, repo: &str, digest: &str) -> MetaResult<Vec<String>> {
    let table = tx.open(TABLE)?;
    let mut out = Vec::new();
    for entry in table.range((repo, "")..(repo, KEY_END))? {
        let (k, v) = entry?;
        let record: TagRecord = decode("tags", v.value())?;
        if record.digest == digest {
            out.push(k.value().1.to_owned());
        }
    }
    Ok(out)
}

/// Every (repository, tag, record): for fsck.
pub fn all(tx: &impl Reader) -> MetaResult<Vec<(String, String, TagRecord)>> {
    let table = tx.open(TABLE)?;
    let mut out = Vec::new();
    for entry in table.iter()? {
        let (k, v) = entry?;
        let (repo, tag) = k.value();
        out.push((repo.to_owned(), tag.to_owned(), decode("tags", v.value())?));
    }
    Ok(out)
}

/// Removes every tag of `repo`.
pub fn remove_repository(tx: &WriteTransaction, repo: &str) -> MetaResult<()> {
    tx.open_table(TABLE)?
        .retain_in((repo, "")..(repo, KEY_END), |_, _| false)?;
    Ok(())
}
