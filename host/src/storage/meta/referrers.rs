//! Table `referrers`: for each subject manifest, the manifests that name it in `subject`
//! (signatures, SBOMs, attestations), with the descriptor the referrers API returns.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{KEY_END, MetaResult, Reader, decode, encode};

const TABLE: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("referrers");

/// A referrer as the referrers API lists it (an OCI descriptor).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReferrerDescriptor {
    /// The referrer's media type.
    pub media_type: String,
    /// The referrer's digest.
    pub digest: String,
    /// The referrer's size.
    pub size: u64,
    /// Its artifact type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Its annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

pub(super) fn create(tx: &WriteTransaction) -> MetaResult<()> {
    tx.open_table(TABLE)?;
    Ok(())
}

/// Records that `descriptor.digest` refers to `subject` in `repo`.
pub fn add(
    tx: &WriteTransaction,
    repo: &str,
    subject: &str,
    descriptor: &ReferrerDescriptor,
) -> MetaResult<()> {
    tx.open_table(TABLE)?.insert(
        (repo, subject, descriptor.digest.as_str()),
        encode(descriptor).as_slice(),
    )?;
    Ok(())
}

/// Forgets that `referrer` refers to `subject`.
pub fn remove(tx: &WriteTransaction, repo: &str, subject: &str, referrer: &str) -> MetaResult<()> {
    tx.open_table(TABLE)?.remove((repo, subject, referrer))?;
    Ok(())
}

/// The referrers of `subject` in `repo`, in digest order.
pub fn list(tx: &impl Reader, repo: &str, subject: &str) -> MetaResult<Vec<ReferrerDescriptor>> {
    let table = tx.open(TABLE)?;
    let mut out = Vec::new();
    for entry in table.range((repo, subject, "")..(repo, subject, KEY_END))? {
        out.push(decode("referrers", entry?.1.value())?);
    }
    Ok(out)
}

/// Removes every referrer entry of `repo`.
pub fn remove_repository(tx: &WriteTransaction, repo: &str) -> MetaResult<()> {
    tx.open_table(TABLE)?
        .retain_in((repo, "", "")..(repo, KEY_END, ""), |_, _| false)?;
    Ok(())
}
