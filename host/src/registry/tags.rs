//! Tag moves and deletes, and manifest deletes, as one registry transaction each: last
//! writer wins by clock (so two primaries moving one tag converge), the target a move
//! replaces and a replicated move that lost are kept in the tag's history, a deleted tag
//! leaves a tombstone, and the change goes into the event feed in the same commit.
//!
//! On PostgreSQL the read-modify-write runs at `SERIALIZABLE`: two nodes moving one tag at
//! once conflict, and the loser runs again on what the winner wrote.

use crate::events::{self, Change, ChangeKind};
use crate::storage::clock::Clock;
use crate::storage::store::{StoreResult, WriteTx, now_millis};
use crate::storage::tables::registry::{HistoryEntry, HistoryEvent, TagRecord, Tombstone};

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
    tx: &dyn WriteTx,
    repo: &str,
    tag: &str,
    digest: &str,
    by: &Writer<'_>,
) -> StoreResult<TagWrite> {
    let tables = tx.registry();
    let current = tables.tag(repo, tag)?;
    if let Some(current) = &current
        && current.digest == digest
    {
        if by.replicated && current.clock.as_ref().is_none_or(|c| *c < by.clock) {
            // Same target, later clock: both sides now agree on the clock too.
            let record = TagRecord {
                clock: Some(by.clock.clone()),
                ..current.clone()
            };
            tables.put_tag(repo, tag, &record)?;
        }
        return Ok(TagWrite::Unchanged);
    }
    if by.replicated {
        let newer_here = match &current {
            Some(c) => c.clock.as_ref().is_some_and(|c| *c > by.clock),
            None => tables
                .tombstone(repo, tag)?
                .is_some_and(|t| t.clock > by.clock),
        };
        if newer_here {
            let lost = HistoryEntry {
                digest: digest.to_owned(),
                clock: Some(by.clock.clone()),
                origin: by.origin.map(str::to_owned),
                event: HistoryEvent::Lost,
                at: now_millis(),
            };
            tables.add_tag_history(repo, tag, &lost)?;
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
        tables.add_tag_history(repo, tag, &replaced)?;
    }
    let record = TagRecord {
        digest: digest.to_owned(),
        updated_at: now_millis(),
        clock: Some(by.clock.clone()),
    };
    tables.put_tag(repo, tag, &record)?;
    tables.remove_tombstone(repo, tag)?;
    Ok(TagWrite::Moved)
}

/// Records that a tag was deleted at `tombstone.clock`, keeping a later tombstone if
/// there is one.
fn bury(tx: &dyn WriteTx, repo: &str, tag: &str, tombstone: &Tombstone) -> StoreResult<()> {
    let tables = tx.registry();
    if let Some(existing) = tables.tombstone(repo, tag)?
        && existing.clock > tombstone.clock
    {
        return Ok(());
    }
    tables.put_tombstone(repo, tag, tombstone)
}

/// Removes `record`, the current target of `tag`: a history entry and a tombstone.
fn remove_with_trace(
    tx: &dyn WriteTx,
    repo: &str,
    tag: &str,
    record: &TagRecord,
    by: &Writer<'_>,
) -> StoreResult<()> {
    let tables = tx.registry();
    tables.remove_tag(repo, tag)?;
    let gone = HistoryEntry {
        digest: record.digest.clone(),
        clock: record.clock.clone(),
        origin: by.origin.map(str::to_owned),
        event: HistoryEvent::Deleted,
        at: now_millis(),
    };
    tables.add_tag_history(repo, tag, &gone)?;
    let tombstone = Tombstone {
        digest: record.digest.clone(),
        clock: by.clock.clone(),
        at: now_millis(),
    };
    bury(tx, repo, tag, &tombstone)
}

/// Deletes a tag, leaving a tombstone with the delete's clock and a history entry, and
/// records the delete in the event feed. A replicated delete older than the tag's last
/// move is ignored (the move happened after it). Returns the deleted tag, if it was.
pub fn delete(
    tx: &dyn WriteTx,
    repo: &str,
    tag: &str,
    by: &Writer<'_>,
) -> StoreResult<Option<TagRecord>> {
    let Some(record) = tx.registry().tag(repo, tag)? else {
        if by.replicated {
            // Remember the delete anyway: a move it beat may still be on its way here.
            let tombstone = Tombstone {
                digest: String::new(),
                clock: by.clock.clone(),
                at: now_millis(),
            };
            bury(tx, repo, tag, &tombstone)?;
        }
        return Ok(None);
    };
    if by.replicated && record.clock.as_ref().is_some_and(|c| *c > by.clock) {
        return Ok(None);
    }
    remove_with_trace(tx, repo, tag, &record, by)?;
    let change = ChangeKind::TagDeleted {
        tag: tag.to_owned(),
        digest: record.digest.clone(),
        clock: Some(by.clock.clone()),
    };
    events::publish(tx, Change::new(repo, change, by.origin))?;
    Ok(Some(record))
}

/// Deletes a manifest from `repo` with everything that points at it there: the tags that
/// name it (each leaving a tombstone and a history entry) and its entry in its subject's
/// referrers, and records the delete in the event feed. Returns whether it existed.
pub fn delete_manifest(
    tx: &dyn WriteTx,
    repo: &str,
    digest: &str,
    by: &Writer<'_>,
) -> StoreResult<bool> {
    let tables = tx.registry();
    let Some(record) = tables.remove_manifest(repo, digest)? else {
        return Ok(false);
    };
    let tags = tables.tags_pointing_at(repo, digest)?;
    for tag in &tags {
        if let Some(current) = tables.tag(repo, tag)? {
            remove_with_trace(tx, repo, tag, &current, by)?;
        }
    }
    if let Some(subject) = &record.subject {
        tables.remove_referrer(repo, subject, digest)?;
    }
    let change = ChangeKind::ManifestDeleted {
        digest: digest.to_owned(),
        tags,
    };
    events::publish(tx, Change::new(repo, change, by.origin))?;
    Ok(true)
}
