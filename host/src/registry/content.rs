//! The registry's writes, apart from HTTP: storing a manifest, taking in a whole blob,
//! mounting one, deleting a tag or a manifest.
//!
//! The `/v2` handlers and replication's local side both use these functions, so content
//! that arrives by replication is checked and recorded exactly like a client's push, and
//! lands in the change feed with the origin it came from.

use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;
use serde_json::json;

use super::Registry;
use super::errcode::{ErrorCode, RegistryError, RegistryResult};
use super::manifest::{self, ParsedManifest};
use super::tags::{self, TagWrite, Writer};
use crate::digest::Digest;
use crate::events::{self, Change, ChangeKind};
use crate::names::{Reference, RepoName, Tag};
use crate::storage::blob::writer::{self, AppendError};
use crate::storage::clock::Clock;
use crate::storage::store::{Durability, StoreError, now_millis};
use crate::storage::tables::registry::{ManifestRecord, ReferrerDescriptor};

/// Where a write came from, when a peer replicated it here.
#[derive(Debug, Clone)]
pub struct Replicated {
    /// The peer's name, recorded as the change's origin so it is not sent back there.
    pub origin: String,
    /// The clock of the tag move or delete at the peer; `None` when the peer keeps no
    /// clocks (then the write takes a clock here, as a client's would).
    pub clock: Option<Clock>,
}

impl Registry {
    /// The writer of a tag move or delete: a fresh clock for a client's write, the
    /// peer's (which this clock then stays ahead of) for a replicated one.
    pub fn tag_writer<'a>(&self, from: Option<&'a Replicated>) -> Writer<'a> {
        match from {
            Some(Replicated {
                origin,
                clock: Some(clock),
            }) => {
                self.clock.observe(clock);
                Writer {
                    clock: clock.clone(),
                    origin: Some(origin),
                    replicated: true,
                }
            }
            Some(Replicated {
                origin,
                clock: None,
            }) => Writer {
                clock: self.clock.now(),
                origin: Some(origin),
                replicated: false,
            },
            None => Writer {
                clock: self.clock.now(),
                origin: None,
                replicated: false,
            },
        }
    }
}

/// A manifest the registry accepted.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    /// Its digest.
    pub digest: Digest,
    /// The `subject` it refers to, for the `OCI-Subject` header.
    pub subject: Option<Digest>,
    /// Whether anything changed (a new manifest, or a tag moved): pushing what is already
    /// there is accepted but recorded nowhere.
    pub changed: bool,
    /// What happened to the tag, for a push by tag.
    pub tag: Option<TagWrite>,
}

/// What a manifest PUT transaction can refuse.
enum PutRefusal {
    Missing {
        kind: &'static str,
        digest: String,
    },
    SizeMismatch {
        digest: String,
        declared: u64,
        actual: u64,
    },
    Store(StoreError),
}

impl From<StoreError> for PutRefusal {
    fn from(e: StoreError) -> PutRefusal {
        PutRefusal::Store(e)
    }
}

/// Checks and stores a manifest under `reference`: its digest against a digest
/// reference, its schema, and that every blob and child manifest it references is in the
/// repository; `also_tags` are further tags for it (a push's `?tag=` parameters), set in
/// the same commit. `from` says where it came from when a peer replicated it.
pub async fn put_manifest(
    registry: &Arc<Registry>,
    name: &RepoName,
    reference: &Reference,
    content_type: Option<&str>,
    bytes: Bytes,
    also_tags: &[Tag],
    from: Option<&Replicated>,
) -> RegistryResult<StoredManifest> {
    let digest = match reference {
        Reference::Digest(expected) => {
            let actual = Digest::of(expected.algorithm(), &bytes);
            if &actual != expected {
                return Err(RegistryError::new(ErrorCode::DigestInvalid)
                    .message(format!(
                        "the manifest's digest is {actual}, not {expected} as the URL says"
                    ))
                    .detail(
                        json!({ "expected": expected.to_string(), "actual": actual.to_string() }),
                    ));
            }
            actual
        }
        Reference::Tag(_) => Digest::sha256_of(&bytes),
    };
    let parsed = manifest::parse(content_type, &bytes)
        .map_err(|e| RegistryError::new(ErrorCode::ManifestInvalid).message(e.0))?;

    let registry2 = registry.clone();
    let (name2, digest2, parsed2) = (name.clone(), digest.to_string(), parsed.clone());
    let mut tags: Vec<Tag> = Vec::new();
    if let Reference::Tag(tag) = reference {
        tags.push(tag.clone());
    }
    for tag in also_tags {
        if !tags.contains(tag) {
            tags.push(tag.clone());
        }
    }
    let from = from.cloned();
    let outcome = tokio::task::spawn_blocking(move || {
        let writer = registry2.tag_writer(from.as_ref());
        store(
            &registry2, &name2, &tags, &digest2, &parsed2, &bytes, &writer,
        )
    })
    .await?;
    let (changed, tag) = match outcome {
        Ok(done) => done,
        Err(PutRefusal::Missing { kind, digest }) => {
            return Err(RegistryError::new(ErrorCode::ManifestBlobUnknown)
                .message(format!("the manifest references {kind} {digest}, which is not in repository {name}; push it first"))
                .detail(json!({ "digest": digest })));
        }
        Err(PutRefusal::SizeMismatch {
            digest,
            declared,
            actual,
        }) => {
            return Err(RegistryError::new(ErrorCode::ManifestInvalid)
                .message(format!(
                    "the manifest says {digest} is {declared} bytes, but it is {actual} bytes"
                ))
                .detail(json!({ "digest": digest, "declared": declared, "actual": actual })));
        }
        Err(PutRefusal::Store(e)) => return Err(e.into()),
    };
    if changed {
        registry.feed.published();
    }
    registry.arrivals.landed();
    Ok(StoredManifest {
        digest,
        subject: parsed.subject.map(|s| s.digest),
        changed,
        tag,
    })
}

/// The manifest PUT transaction: checks and writes in one durable commit, so a manifest
/// is visible exactly when everything it references is, a crash leaves all or nothing,
/// and the change feed holds the change exactly when it happened.
#[allow(clippy::too_many_arguments)]
fn store(
    registry: &Registry,
    name: &RepoName,
    tags: &[Tag],
    digest: &str,
    parsed: &ParsedManifest,
    bytes: &[u8],
    writer: &Writer<'_>,
) -> Result<(bool, Option<TagWrite>), PutRefusal> {
    let repo = name.as_str();
    registry.metadata.write_blocking(
        Durability::Immediate,
        |tx| -> Result<(bool, Option<TagWrite>), PutRefusal> {
            let tables = tx.registry();
            for blob in &parsed.blobs {
                let d = blob.digest.to_string();
                match tables.blob_link(repo, &d)? {
                    None => {
                        return Err(PutRefusal::Missing {
                            kind: "blob",
                            digest: d,
                        });
                    }
                    Some(actual) if actual != blob.size => {
                        return Err(PutRefusal::SizeMismatch {
                            digest: d,
                            declared: blob.size,
                            actual,
                        });
                    }
                    Some(_) => {}
                }
            }
            for child in &parsed.children {
                let d = child.digest.to_string();
                match tables.manifest(repo, &d)? {
                    None => {
                        return Err(PutRefusal::Missing {
                            kind: "manifest",
                            digest: d,
                        });
                    }
                    Some(record) if record.size != child.size => {
                        return Err(PutRefusal::SizeMismatch {
                            digest: d,
                            declared: child.size,
                            actual: record.size,
                        });
                    }
                    Some(_) => {}
                }
            }
            let existed = tables.manifest(repo, digest)?.is_some();
            if !existed {
                let record = ManifestRecord {
                    media_type: parsed.media_type.clone(),
                    size: bytes.len() as u64,
                    artifact_type: parsed.artifact_type.clone(),
                    subject: parsed.subject.as_ref().map(|s| s.digest.to_string()),
                    blobs: parsed.blobs.iter().map(|b| b.digest.to_string()).collect(),
                    children: parsed
                        .children
                        .iter()
                        .map(|c| c.digest.to_string())
                        .collect(),
                    annotations: parsed.annotations.clone(),
                    created_at: now_millis(),
                };
                tables.ensure_repository(repo, now_millis())?;
                tables.put_manifest(repo, digest, &record, bytes)?;
                if let Some(subject) = &parsed.subject {
                    let descriptor = ReferrerDescriptor {
                        media_type: parsed.media_type.clone(),
                        digest: digest.to_owned(),
                        size: bytes.len() as u64,
                        artifact_type: parsed.artifact_type.clone(),
                        annotations: parsed.annotations.clone(),
                    };
                    tables.add_referrer(repo, &subject.digest.to_string(), &descriptor)?;
                }
            }
            let mut first = None;
            let mut moved = Vec::new();
            for tag in tags {
                let write = tags::write(tx, repo, tag.as_str(), digest, writer)?;
                first.get_or_insert(write);
                if write == TagWrite::Moved {
                    moved.push(tag.as_str());
                }
            }
            if existed && moved.is_empty() {
                return Ok((false, first));
            }
            // One change per tag moved (the feed carries one tag per change), or one for
            // the new manifest when no tag moved.
            let changed_tags: Vec<Option<&str>> = if moved.is_empty() {
                vec![None]
            } else {
                moved.into_iter().map(Some).collect()
            };
            for tag in changed_tags {
                let change = ChangeKind::Manifest {
                    digest: digest.to_owned(),
                    media_type: parsed.media_type.clone(),
                    tag: tag.map(str::to_owned),
                };
                events::publish(tx, Change::new(repo, change, writer.origin))?;
            }
            Ok((true, first))
        },
    )
}

/// Deletes a tag (the manifest stays) or a manifest (with its tags and referrer entry).
/// Returns whether it existed (a replicated tag delete older than the tag's last move
/// finds nothing to delete).
///
/// The one path of every delete, whoever asks (`/v2`, the admin API, the CLI through it,
/// replication): a client's delete is refused with `UNSUPPORTED` when
/// `registry.delete_enabled` is off. A replicated delete (`from`) carries out one that its
/// origin allowed, and goes through: refusing it would leave the two sides apart for good.
pub async fn delete(
    registry: &Arc<Registry>,
    name: &RepoName,
    reference: &Reference,
    from: Option<&Replicated>,
) -> RegistryResult<bool> {
    if from.is_none() && !registry.config.delete_enabled {
        return Err(deletes_disabled());
    }
    let (registry2, repo, reference2) = (registry.clone(), name.to_string(), reference.clone());
    let from = from.cloned();
    let found = tokio::task::spawn_blocking(move || {
        let writer = registry2.tag_writer(from.as_ref());
        registry2
            .metadata
            .write_blocking(Durability::Immediate, |tx| match &reference2 {
                Reference::Tag(tag) => {
                    Ok(tags::delete(tx, &repo, tag.as_str(), &writer)?.is_some())
                }
                Reference::Digest(digest) => {
                    tags::delete_manifest(tx, &repo, &digest.to_string(), &writer)
                }
            })
    })
    .await
    .map_err(RegistryError::from)?
    .map_err(RegistryError::from)?;
    if found {
        registry.feed.published();
    }
    Ok(found)
}

/// The refusal of a delete while `registry.delete_enabled` is off.
pub fn deletes_disabled() -> RegistryError {
    RegistryError::new(ErrorCode::Unsupported)
        .message("deletes are disabled on this registry (registry.delete_enabled = false)")
}

/// Links `digest` from `from` into `name` if `from` links it; returns whether it did.
/// The caller has checked that whoever asked may read `from`.
pub async fn mount(
    registry: &Arc<Registry>,
    name: &RepoName,
    from: &RepoName,
    digest: &Digest,
) -> RegistryResult<bool> {
    let (registry2, to, from, d) = (
        registry.clone(),
        name.to_string(),
        from.to_string(),
        digest.to_string(),
    );
    let mounted = registry2
        .metadata
        .write(move |tx| -> Result<bool, StoreError> {
            let tables = tx.registry();
            let Some(size) = tables.blob_link(&from, &d)? else {
                return Ok(false);
            };
            tables.ensure_repository(&to, now_millis())?;
            tables.link_blob(&to, &d, size)?;
            Ok(true)
        })
        .await?;
    if mounted {
        registry.arrivals.landed();
    }
    Ok(mounted)
}

/// Removes `name`'s link to blob `digest`; says whether there was one. The content stays
/// until garbage collection finds no repository links it.
pub async fn unlink_blob(
    registry: &Arc<Registry>,
    name: &RepoName,
    digest: &Digest,
) -> RegistryResult<bool> {
    if !registry.config.delete_enabled {
        return Err(deletes_disabled());
    }
    let (repo, d) = (name.to_string(), digest.to_string());
    Ok(registry
        .metadata
        .write(move |tx| tx.registry().unlink_blob(&repo, &d))
        .await?)
}

/// Why taking in a whole blob failed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The body could not be read or stored, or was too large.
    #[error(transparent)]
    Append(#[from] AppendError),
    /// The content does not match the digest it was sent as.
    #[error("the blob's digest is {actual}, not {expected}")]
    DigestMismatch {
        /// What the sender said.
        expected: Digest,
        /// What arrived.
        actual: Digest,
    },
    /// Storing it failed after it arrived.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// Takes in a whole blob from `body`: streams it to a staging file while hashing it,
/// checks it against `expected`, makes it durable and links it into `name`. Returns its
/// size. Nothing is linked unless all of it arrived and matched.
pub async fn ingest_blob<S, E>(
    registry: &Arc<Registry>,
    name: &RepoName,
    expected: &Digest,
    body: S,
) -> Result<u64, IngestError>
where
    S: Stream<Item = Result<Bytes, E>> + Send,
    E: std::fmt::Display,
{
    let id = uuid::Uuid::new_v4().to_string();
    let arriving = registry
        .arrivals
        .begin(name.as_str(), &expected.to_string(), &id, 0);
    let appended = writer::append(
        registry.store.clone(),
        id.clone(),
        0,
        expected.algorithm().hasher(),
        body,
        registry.config.max_blob_bytes,
        Some(arriving.reporter()),
    )
    .await;
    let appended = match appended {
        Ok(a) => a,
        Err(e) => {
            discard_staging(registry, &id).await;
            return Err(e.into());
        }
    };
    let actual = appended.hasher.finish();
    if &actual != expected {
        discard_staging(registry, &id).await;
        return Err(IngestError::DigestMismatch {
            expected: expected.clone(),
            actual,
        });
    }
    commit_staging(registry, name, &id, expected, appended.len, false).await?;
    arriving.committed(appended.len);
    Ok(appended.len)
}

/// Removes a staging file that will not be committed.
pub(crate) async fn discard_staging(registry: &Arc<Registry>, id: &str) {
    let (store, id) = (registry.store.clone(), id.to_owned());
    let _ = tokio::task::spawn_blocking(move || store.remove_staging(&id)).await;
}

/// Puts a staging file in place as `digest` and links it into `name`, removing the
/// upload session's record (when it has one) in the same commit.
///
/// The order is what makes every crash point recover: (1) the content is published under
/// its digest with the staging file kept; (2) one metadata commit links it and ends the
/// session; (3) the staging file goes. A crash after (1) leaves the session intact and
/// resumable (plus an unreferenced copy of the same bytes); after (2), a staging file no
/// session owns, which the next start removes.
pub(crate) async fn commit_staging(
    registry: &Arc<Registry>,
    name: &RepoName,
    id: &str,
    digest: &Digest,
    size: u64,
    has_record: bool,
) -> RegistryResult<()> {
    let (registry2, repo, id, d) = (
        registry.clone(),
        name.to_string(),
        id.to_owned(),
        digest.clone(),
    );
    tokio::task::spawn_blocking(move || -> RegistryResult<()> {
        registry2.store.publish_staging(&id, &d)?;
        registry2.metadata.write_blocking(
            Durability::Immediate,
            |tx| -> Result<(), StoreError> {
                let tables = tx.registry();
                tables.ensure_repository(&repo, now_millis())?;
                tables.link_blob(&repo, &d.to_string(), size)?;
                if has_record {
                    tables.remove_upload(&id)?;
                }
                Ok(())
            },
        )?;
        registry2.store.remove_staging(&id)?;
        Ok(())
    })
    .await??;
    registry.arrivals.landed();
    Ok(())
}
