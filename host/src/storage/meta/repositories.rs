//! Table `repositories`: every repository that has held content, for the catalog.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{MetaResult, Reader, decode, encode, now_millis};

const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("repositories");

/// What is known about a repository itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepositoryRecord {
    /// When its first content arrived (ms since the epoch).
    pub created_at: u64,
}

pub(super) fn create(tx: &WriteTransaction) -> MetaResult<()> {
    tx.open_table(TABLE)?;
    Ok(())
}

/// Records `repo` if it is new.
pub fn ensure(tx: &WriteTransaction, repo: &str) -> MetaResult<()> {
    let mut table = tx.open_table(TABLE)?;
    if table.get(repo)?.is_none() {
        table.insert(
            repo,
            encode(&RepositoryRecord {
                created_at: now_millis(),
            })
            .as_slice(),
        )?;
    }
    Ok(())
}

/// Whether `repo` exists.
pub fn exists(tx: &impl Reader, repo: &str) -> MetaResult<bool> {
    Ok(tx.open(TABLE)?.get(repo)?.is_some())
}

/// The record of `repo`.
pub fn get(tx: &impl Reader, repo: &str) -> MetaResult<Option<RepositoryRecord>> {
    match tx.open(TABLE)?.get(repo)? {
        Some(v) => Ok(Some(decode("repositories", v.value())?)),
        None => Ok(None),
    }
}

/// Up to `limit` repository names in lexical order, strictly after `after`.
pub fn list(tx: &impl Reader, after: Option<&str>, limit: usize) -> MetaResult<Vec<String>> {
    let table = tx.open(TABLE)?;
    let mut out = Vec::new();
    let iter = match after {
        Some(after) => {
            table.range::<&str>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))?
        }
        None => table.range::<&str>(..)?,
    };
    for entry in iter {
        if out.len() >= limit {
            break;
        }
        out.push(entry?.0.value().to_owned());
    }
    Ok(out)
}

/// Removes `repo` and everything it holds: tags, manifests, referrer entries, blob links.
/// The blobs themselves stay until garbage collection finds them unreferenced.
pub fn purge(tx: &WriteTransaction, repo: &str) -> MetaResult<()> {
    super::tags::remove_repository(tx, repo)?;
    super::tag_history::remove_repository(tx, repo)?;
    super::referrers::remove_repository(tx, repo)?;
    super::manifests::remove_repository(tx, repo)?;
    super::blob_links::remove_repository(tx, repo)?;
    tx.open_table(TABLE)?.remove(repo)?;
    Ok(())
}
