//! Table `tags`: which manifest each tag of a repository points to.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::changes::{Change, ChangeKind};
use super::{KEY_END, MetaResult, Reader, decode, encode, now_millis};

const TABLE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("tags");

/// A tag's target.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TagRecord {
    /// The manifest digest it points to.
    pub digest: String,
    /// When it was last moved (ms since the epoch).
    pub updated_at: u64,
}

pub(super) fn create(tx: &WriteTransaction) -> MetaResult<()> {
    tx.open_table(TABLE)?;
    Ok(())
}

/// Points `tag` of `repo` at `digest`.
pub fn set(tx: &WriteTransaction, repo: &str, tag: &str, digest: &str) -> MetaResult<()> {
    let record = TagRecord {
        digest: digest.to_owned(),
        updated_at: now_millis(),
    };
    tx.open_table(TABLE)?
        .insert((repo, tag), encode(&record).as_slice())?;
    Ok(())
}

/// Removes a tag; returns whether it existed.
pub fn remove(tx: &WriteTransaction, repo: &str, tag: &str) -> MetaResult<bool> {
    Ok(tx.open_table(TABLE)?.remove((repo, tag))?.is_some())
}

/// Removes a tag and records the delete in the change feed (`origin`: where the delete
/// came from, when it was replicated); returns whether it existed.
pub fn delete(
    tx: &WriteTransaction,
    repo: &str,
    tag: &str,
    origin: Option<&str>,
) -> MetaResult<bool> {
    let mut table = tx.open_table(TABLE)?;
    let Some(record) = table
        .remove((repo, tag))?
        .map(|old| decode::<TagRecord>("tags", old.value()))
    else {
        return Ok(false);
    };
    let record = record?;
    drop(table);
    let change = ChangeKind::TagDeleted {
        tag: tag.to_owned(),
        digest: record.digest,
    };
    super::changes::append(tx, &Change::new(repo, change, origin))?;
    Ok(true)
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
