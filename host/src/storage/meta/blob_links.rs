//! Table `blob_links`: which blobs each repository may reach, and their sizes.
//!
//! A repository reads a blob only through its own link, so that knowing a digest from
//! another repository grants nothing here.

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::{KEY_END, MetaResult, Reader};

const TABLE: TableDefinition<(&str, &str), u64> = TableDefinition::new("blob_links");

pub(super) fn create(tx: &WriteTransaction) -> MetaResult<()> {
    tx.open_table(TABLE)?;
    Ok(())
}

/// Links `digest` (of `size` bytes) into `repo`.
pub fn link(tx: &WriteTransaction, repo: &str, digest: &str, size: u64) -> MetaResult<()> {
    tx.open_table(TABLE)?.insert((repo, digest), size)?;
    Ok(())
}

/// Removes the link; returns whether there was one.
pub fn unlink(tx: &WriteTransaction, repo: &str, digest: &str) -> MetaResult<bool> {
    Ok(tx.open_table(TABLE)?.remove((repo, digest))?.is_some())
}

/// The size of `digest` if `repo` links it.
pub fn get(tx: &impl Reader, repo: &str, digest: &str) -> MetaResult<Option<u64>> {
    Ok(tx.open(TABLE)?.get((repo, digest))?.map(|v| v.value()))
}

/// Every (repository, digest, size) link: for fsck.
pub fn all(tx: &impl Reader) -> MetaResult<Vec<(String, String, u64)>> {
    let table = tx.open(TABLE)?;
    let mut out = Vec::new();
    for entry in table.iter()? {
        let (k, v) = entry?;
        let (repo, digest) = k.value();
        out.push((repo.to_owned(), digest.to_owned(), v.value()));
    }
    Ok(out)
}

/// Number of blobs `repo` links.
pub fn count(tx: &impl Reader, repo: &str) -> MetaResult<usize> {
    Ok(tx.open(TABLE)?.range((repo, "")..(repo, KEY_END))?.count())
}

/// Removes every link of `repo`.
pub fn remove_repository(tx: &WriteTransaction, repo: &str) -> MetaResult<()> {
    let mut table = tx.open_table(TABLE)?;
    table.retain_in((repo, "")..(repo, KEY_END), |_, _| false)?;
    Ok(())
}
