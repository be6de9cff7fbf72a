//! Table `uploads`: open upload sessions and how many of their bytes were acknowledged.
//!
//! The staging file may hold more than `acknowledged` bytes after a crash mid-chunk; only
//! the acknowledged prefix counts, and the rest is cut off when the session resumes.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{MetaResult, Reader, decode, encode};

const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("uploads");

/// An upload session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UploadRecord {
    /// The repository it uploads into.
    pub repo: String,
    /// Bytes acknowledged to the client (durable in the staging file).
    pub acknowledged: u64,
    /// When it started (ms since the epoch).
    pub started_at: u64,
    /// When a chunk last arrived (ms since the epoch).
    pub updated_at: u64,
}

pub(super) fn create(tx: &WriteTransaction) -> MetaResult<()> {
    tx.open_table(TABLE)?;
    Ok(())
}

/// Records or updates session `id`.
pub fn put(tx: &WriteTransaction, id: &str, record: &UploadRecord) -> MetaResult<()> {
    tx.open_table(TABLE)?
        .insert(id, encode(record).as_slice())?;
    Ok(())
}

/// Removes session `id`; returns whether it existed.
pub fn remove(tx: &WriteTransaction, id: &str) -> MetaResult<bool> {
    Ok(tx.open_table(TABLE)?.remove(id)?.is_some())
}

/// Session `id`.
pub fn get(tx: &impl Reader, id: &str) -> MetaResult<Option<UploadRecord>> {
    match tx.open(TABLE)?.get(id)? {
        Some(v) => Ok(Some(decode("uploads", v.value())?)),
        None => Ok(None),
    }
}

/// Every session: for fsck and expiry.
pub fn all(tx: &impl Reader) -> MetaResult<Vec<(String, UploadRecord)>> {
    let table = tx.open(TABLE)?;
    let mut out = Vec::new();
    for entry in table.iter()? {
        let (k, v) = entry?;
        out.push((k.value().to_owned(), decode("uploads", v.value())?));
    }
    Ok(out)
}
