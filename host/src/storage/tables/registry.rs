//! Tables of the registry (`host/src/registry/`): `repositories`, `blob_links` (which
//! blobs each repository may reach), `manifests` (with their exact bytes), `tags`,
//! `tag_history` and `tag_tombstones`, `referrers`, and `uploads` (open upload sessions).
//!
//! The operations are the tables' own (get, put, remove, list in key order); what a tag
//! move means (last writer wins by clock, history, tombstones) is the registry's, which
//! composes them in one transaction.

use serde::{Deserialize, Serialize};

use crate::storage::clock::Clock;
use crate::storage::store::StoreResult;

/// What is known about a repository itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryRecord {
    /// When its first content arrived (ms since the epoch).
    pub created_at: u64,
}

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

/// Entries of history kept per tag; adding one more drops the oldest.
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

/// A deleted tag: its clock keeps a replicated push older than the delete from bringing
/// the tag back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    /// Where it pointed (empty when a replicated delete found no tag here).
    pub digest: String,
    /// The delete's clock.
    pub clock: Clock,
    /// When (ms since the epoch).
    pub at: u64,
}

/// An upload session. The staging file may hold more than `acknowledged` bytes after a
/// crash mid-chunk; only the acknowledged prefix counts, and the rest is cut off when the
/// session resumes.
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
    /// The request writing the session now, where several nodes share the store: a claim
    /// that other nodes' requests on the session are refused during, so that two nodes
    /// never write one staging file at once. Lapses at `claimed_until` unless renewed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_by: Option<String>,
    /// When the claim lapses (ms since the epoch).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub claimed_until: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A manifest as a pull finds it: by tag or by digest.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestFound {
    /// Its digest.
    pub digest: String,
    /// The tag it was found by, when the reference was a tag.
    pub tag: Option<TagRecord>,
    /// Its record.
    pub record: ManifestRecord,
    /// Its exact bytes, when asked for.
    pub bytes: Option<Vec<u8>>,
}

/// Reads of the registry's tables. Lists come in byte order of their keys.
pub trait RegistryRead {
    /// The manifest `reference` names in `repo`: a digest when it holds a `:`, else a
    /// tag; with its bytes when `with_bytes`. A backend may answer it in one query (what
    /// every pull asks); this default asks the tables one by one.
    fn find_manifest(
        &self,
        repo: &str,
        reference: &str,
        with_bytes: bool,
    ) -> StoreResult<Option<ManifestFound>> {
        let (digest, tag) = if reference.contains(':') {
            (reference.to_owned(), None)
        } else {
            match self.tag(repo, reference)? {
                Some(tag) => (tag.digest.clone(), Some(tag)),
                None => return Ok(None),
            }
        };
        let Some(record) = self.manifest(repo, &digest)? else {
            return Ok(None);
        };
        let bytes = if with_bytes {
            match self.manifest_bytes(repo, &digest)? {
                Some(bytes) => Some(bytes),
                None => return Ok(None),
            }
        } else {
            None
        };
        Ok(Some(ManifestFound {
            digest,
            tag,
            record,
            bytes,
        }))
    }

    /// The record of repository `name`.
    fn repository(&self, name: &str) -> StoreResult<Option<RepositoryRecord>>;

    /// Up to `limit` repository names strictly after `after`.
    fn repositories(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<String>>;

    /// The size of blob `digest` if `repo` links it.
    fn blob_link(&self, repo: &str, digest: &str) -> StoreResult<Option<u64>>;

    /// How many blobs `repo` links.
    fn blob_link_count(&self, repo: &str) -> StoreResult<u64>;

    /// Every `(repository, digest, size)` link, for fsck.
    fn all_blob_links(&self) -> StoreResult<Vec<(String, String, u64)>>;

    /// The record of manifest `digest` in `repo`.
    fn manifest(&self, repo: &str, digest: &str) -> StoreResult<Option<ManifestRecord>>;

    /// The exact bytes of manifest `digest` in `repo`.
    fn manifest_bytes(&self, repo: &str, digest: &str) -> StoreResult<Option<Vec<u8>>>;

    /// How many manifests `repo` holds.
    fn manifest_count(&self, repo: &str) -> StoreResult<u64>;

    /// Every `(repository, digest, record)`, for fsck.
    fn all_manifests(&self) -> StoreResult<Vec<(String, String, ManifestRecord)>>;

    /// Where `tag` of `repo` points.
    fn tag(&self, repo: &str, tag: &str) -> StoreResult<Option<TagRecord>>;

    /// Up to `limit` tags of `repo` strictly after `after`.
    fn tags(&self, repo: &str, after: Option<&str>, limit: usize) -> StoreResult<Vec<String>>;

    /// Every tag of `repo` pointing at `digest`, in tag order.
    fn tags_pointing_at(&self, repo: &str, digest: &str) -> StoreResult<Vec<String>>;

    /// Every `(repository, tag, record)`, for fsck.
    fn all_tags(&self) -> StoreResult<Vec<(String, String, TagRecord)>>;

    /// The history of `tag`, newest first.
    fn tag_history(&self, repo: &str, tag: &str) -> StoreResult<Vec<HistoryEntry>>;

    /// The tombstone of deleted `tag`, if it has one.
    fn tombstone(&self, repo: &str, tag: &str) -> StoreResult<Option<Tombstone>>;

    /// The referrers of `subject` in `repo`, in digest order.
    fn referrers(&self, repo: &str, subject: &str) -> StoreResult<Vec<ReferrerDescriptor>>;

    /// Upload session `id`.
    fn upload(&self, id: &str) -> StoreResult<Option<UploadRecord>>;

    /// Every upload session, in id order.
    fn uploads(&self) -> StoreResult<Vec<(String, UploadRecord)>>;
}

/// Writes of the registry's tables.
pub trait RegistryWrite: RegistryRead {
    /// Records repository `name` (created at `now`) if it is new.
    fn ensure_repository(&self, name: &str, now: u64) -> StoreResult<()>;

    /// Removes repository `name` and everything it holds: links, manifests, tags, their
    /// history and tombstones, referrer entries. Its blobs stay until garbage collection
    /// finds them unreferenced.
    fn remove_repository(&self, name: &str) -> StoreResult<()>;

    /// Links blob `digest` of `size` bytes into `repo`.
    fn link_blob(&self, repo: &str, digest: &str, size: u64) -> StoreResult<()>;

    /// Removes a link; says whether there was one.
    fn unlink_blob(&self, repo: &str, digest: &str) -> StoreResult<bool>;

    /// Stores manifest `digest` in `repo` with its exact bytes (replacing an identical
    /// earlier push).
    fn put_manifest(
        &self,
        repo: &str,
        digest: &str,
        record: &ManifestRecord,
        bytes: &[u8],
    ) -> StoreResult<()>;

    /// Removes a manifest; returns its record if it was there.
    fn remove_manifest(&self, repo: &str, digest: &str) -> StoreResult<Option<ManifestRecord>>;

    /// Points `tag` of `repo` as `record` says.
    fn put_tag(&self, repo: &str, tag: &str, record: &TagRecord) -> StoreResult<()>;

    /// Removes a tag; says whether there was one.
    fn remove_tag(&self, repo: &str, tag: &str) -> StoreResult<bool>;

    /// Adds `entry` to the history of `tag`, dropping the oldest beyond
    /// [`HISTORY_PER_TAG`].
    fn add_tag_history(&self, repo: &str, tag: &str, entry: &HistoryEntry) -> StoreResult<()>;

    /// Sets the tombstone of `tag`.
    fn put_tombstone(&self, repo: &str, tag: &str, tombstone: &Tombstone) -> StoreResult<()>;

    /// Removes the tombstone of `tag` (it exists again).
    fn remove_tombstone(&self, repo: &str, tag: &str) -> StoreResult<()>;

    /// Records that `descriptor.digest` refers to `subject` in `repo`.
    fn add_referrer(
        &self,
        repo: &str,
        subject: &str,
        descriptor: &ReferrerDescriptor,
    ) -> StoreResult<()>;

    /// Forgets that `referrer` refers to `subject`.
    fn remove_referrer(&self, repo: &str, subject: &str, referrer: &str) -> StoreResult<()>;

    /// Records or updates upload session `id`.
    fn put_upload(&self, id: &str, record: &UploadRecord) -> StoreResult<()>;

    /// Removes upload session `id`; says whether it existed.
    fn remove_upload(&self, id: &str) -> StoreResult<bool>;
}
