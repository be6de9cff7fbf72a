//! Tables `tag_history` and `tag_tombstones`: what a tag pointed at before, and tags that
//! were deleted.
//!
//! History keeps the losers of races between primaries and the targets a tag was moved
//! away from, so an operator can see (and restore) what was replaced. Tombstones remember
//! a deleted tag's clock, so that a replicated push older than the delete does not bring
//! the tag back.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{KEY_END, MetaResult, Reader, decode, encode};
use crate::storage::clock::Clock;

const HISTORY: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("tag_history");
const TOMBSTONES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("tag_tombstones");

/// Entries kept per tag; older ones are dropped.
pub const HISTORY_PER_TAG: usize = 50;

/// What happened to a target of a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum HistoryEvent {
    /// The tag was moved away from it (by a push, here or replicated).
    Replaced,
    /// A replicated move to it arrived with an older clock than the tag's, and lost.
    Lost,
    /// The tag was deleted while pointing at it.
    Deleted,
}

/// One former (or refused) target of a tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    /// The manifest digest.
    pub digest: String,
    /// Its clock, when it had one.
    #[schema(value_type = Option<String>)]
    pub clock: Option<Clock>,
    /// Where the move came from, when it was replicated.
    pub origin: Option<String>,
    /// What happened.
    pub event: HistoryEvent,
    /// When (ms since the epoch).
    pub at: u64,
}

/// A deleted tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    /// Where it pointed.
    pub digest: String,
    /// The delete's clock.
    pub clock: Clock,
    /// When (ms since the epoch).
    pub at: u64,
}

pub(super) fn create(tx: &WriteTransaction) -> MetaResult<()> {
    tx.open_table(HISTORY)?;
    tx.open_table(TOMBSTONES)?;
    Ok(())
}

/// Adds an entry to a tag's history, dropping the oldest beyond [`HISTORY_PER_TAG`].
pub fn record(
    tx: &WriteTransaction,
    repo: &str,
    tag: &str,
    entry: &HistoryEntry,
) -> MetaResult<()> {
    let mut table = tx.open_table(HISTORY)?;
    let (next, count) = {
        let mut range = table.range((repo, tag, 0)..=(repo, tag, u64::MAX))?;
        let last = range.next_back().transpose()?.map(|(k, _)| k.value().2);
        let count = table.range((repo, tag, 0)..=(repo, tag, u64::MAX))?.count();
        (last.map_or(1, |l| l + 1), count)
    };
    table.insert((repo, tag, next), encode(entry).as_slice())?;
    if count + 1 > HISTORY_PER_TAG {
        let drop_through = next - HISTORY_PER_TAG as u64;
        table.retain_in((repo, tag, 0)..=(repo, tag, drop_through), |_, _| false)?;
    }
    Ok(())
}

/// A tag's history, newest first.
pub fn list(tx: &impl Reader, repo: &str, tag: &str) -> MetaResult<Vec<HistoryEntry>> {
    let table = tx.open(HISTORY)?;
    let mut out = Vec::new();
    for entry in table.range((repo, tag, 0)..=(repo, tag, u64::MAX))?.rev() {
        let (_, v) = entry?;
        out.push(decode("tag_history", v.value())?);
    }
    Ok(out)
}

/// The tombstone of a deleted tag, if any.
pub fn tombstone(tx: &impl Reader, repo: &str, tag: &str) -> MetaResult<Option<Tombstone>> {
    match tx.open(TOMBSTONES)?.get((repo, tag))? {
        Some(v) => Ok(Some(decode("tag_tombstones", v.value())?)),
        None => Ok(None),
    }
}

/// Records that a tag was deleted at `clock` (keeping a later tombstone if there is one).
pub fn bury(tx: &WriteTransaction, repo: &str, tag: &str, tombstone: &Tombstone) -> MetaResult<()> {
    if let Some(existing) = self::tombstone(tx, repo, tag)?
        && existing.clock > tombstone.clock
    {
        return Ok(());
    }
    tx.open_table(TOMBSTONES)?
        .insert((repo, tag), encode(tombstone).as_slice())?;
    Ok(())
}

/// Forgets a tag's tombstone (the tag exists again).
pub fn unbury(tx: &WriteTransaction, repo: &str, tag: &str) -> MetaResult<()> {
    tx.open_table(TOMBSTONES)?.remove((repo, tag))?;
    Ok(())
}

/// Removes history and tombstones of every tag of `repo`.
pub fn remove_repository(tx: &WriteTransaction, repo: &str) -> MetaResult<()> {
    tx.open_table(HISTORY)?
        .retain_in((repo, "", 0)..(repo, KEY_END, 0), |_, _| false)?;
    tx.open_table(TOMBSTONES)?
        .retain_in((repo, "")..(repo, KEY_END), |_, _| false)?;
    Ok(())
}
