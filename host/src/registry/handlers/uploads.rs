//! Blob uploads: `POST`/`GET`/`PATCH`/`PUT`/`DELETE /v2/<name>/blobs/uploads/…`.
//!
//! ```text
//! POST /v2/<name>/blobs/uploads/?digest=<d>        body = blob  → 201 (monolithic)
//! POST /v2/<name>/blobs/uploads/?mount=<d>&from=<repo>          → 201 (mounted) | 202 (new session)
//! POST /v2/<name>/blobs/uploads/                                → 202 Location: …/uploads/<id>
//! PATCH …/uploads/<id>  [Content-Range: <start>-<end>]  body    → 202 Range: 0-<last>
//!                        out-of-order chunk                     → 416 Range: 0-<last>
//! GET …/uploads/<id>                                            → 204 Range: 0-<last>
//! PUT …/uploads/<id>?digest=<d>  [final chunk]                  → 201 Location: …/blobs/<d>
//! DELETE …/uploads/<id>                                         → 204
//! ```
//!
//! Every acknowledgement (202 after a chunk, 201 after close) is sent only after the bytes
//! are fsync'd and the session's acknowledged length is committed.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use http_body::Body as _;
use serde_json::json;

use super::query_params;
use crate::auth::Action;
use crate::auth::authenticate::Caller;
use crate::digest::{Algorithm, Digest};
use crate::names::RepoName;
use crate::registry::Registry;
use crate::registry::content::{self, IngestError};
use crate::registry::errcode::{ErrorCode, RegistryError, RegistryResult};
use crate::registry::routes::empty;
use crate::registry::sessions::{self, Session, SessionState};
use crate::storage::blob::writer::{self, AppendError};
use crate::storage::store::{Durability, now_millis};
use crate::storage::tables::registry::UploadRecord;

fn upload_unknown(id: &str) -> RegistryError {
    RegistryError::new(ErrorCode::BlobUploadUnknown).detail(json!({ "uuid": id }))
}

/// `Range: 0-<last byte>` as the distribution API reports progress (`0-0` when empty).
fn progress(acknowledged: u64) -> String {
    format!("0-{}", acknowledged.saturating_sub(1))
}

fn session_response(status: StatusCode, name: &RepoName, id: &str, acknowledged: u64) -> Response {
    let mut response = empty(status);
    let h = response.headers_mut();
    h.insert(
        header::LOCATION,
        format!("/v2/{name}/blobs/uploads/{id}")
            .parse()
            .expect("ascii"),
    );
    h.insert(
        header::RANGE,
        progress(acknowledged).parse().expect("ascii"),
    );
    h.insert("docker-upload-uuid", id.parse().expect("ascii"));
    h.insert(header::CONTENT_LENGTH, 0.into());
    response
}

fn blob_created(name: &RepoName, digest: &Digest) -> Response {
    let mut response = empty(StatusCode::CREATED);
    let h = response.headers_mut();
    h.insert(
        header::LOCATION,
        format!("/v2/{name}/blobs/{digest}").parse().expect("ascii"),
    );
    h.insert(
        "docker-content-digest",
        digest.to_string().parse().expect("ascii"),
    );
    h.insert(header::CONTENT_LENGTH, 0.into());
    response
}

fn digest_param(query: Option<&str>) -> RegistryResult<Option<Digest>> {
    match query_params(query).get("digest") {
        None => Ok(None),
        Some(d) => Ok(Some(d.parse().map_err(
            |e: crate::digest::DigestError| {
                RegistryError::new(ErrorCode::DigestInvalid).message(e.to_string())
            },
        )?)),
    }
}

fn append_error(e: AppendError) -> RegistryError {
    match e {
        AppendError::Body(msg) => RegistryError::new(ErrorCode::BlobUploadInvalid).message(
            format!("the upload body was interrupted: {msg}; resume from the offset GET reports"),
        ),
        AppendError::TooLarge { limit } => RegistryError::new(ErrorCode::SizeInvalid)
            .status(StatusCode::PAYLOAD_TOO_LARGE)
            .message(format!(
                "the blob exceeds the maximum blob size of {limit} bytes (registry.max_blob_bytes)"
            )),
        AppendError::Io(e) => e.into(),
    }
}

/// `POST …/blobs/uploads/`: a monolithic upload, a mount, or a new session.
pub async fn start(
    registry: &Arc<Registry>,
    name: RepoName,
    request: Request,
    caller: &Caller,
) -> RegistryResult<Response> {
    let params = query_params(request.uri().query());
    if let (Some(mount), Some(from)) = (params.get("mount"), params.get("from")) {
        let digest: Digest = mount.parse().map_err(|e: crate::digest::DigestError| {
            RegistryError::new(ErrorCode::DigestInvalid).message(e.to_string())
        })?;
        // Mounting reads the source: the caller must be allowed to pull from it.
        if let Ok(from) = RepoName::parse(from)
            && registry.auth.allows(caller, from.as_str(), Action::Pull)?
            && content::mount(registry, &name, &from, &digest).await?
        {
            return Ok(blob_created(&name, &digest));
        }
        // Not mountable: fall through to an ordinary session without saying why, so the
        // answer reveals nothing about other repositories.
    }
    if let Some(digest) = digest_param(request.uri().query())? {
        return monolithic(registry, &name, digest, request.into_body()).await;
    }
    let id = uuid::Uuid::new_v4().to_string();
    let now = now_millis();
    let record = UploadRecord {
        repo: name.to_string(),
        acknowledged: 0,
        started_at: now,
        updated_at: now,
        claimed_by: None,
        claimed_until: 0,
    };
    let (registry2, id2, record2) = (registry.clone(), id.clone(), record.clone());
    // Lazy commit: losing a session that holds no data costs the client only a retry.
    tokio::task::spawn_blocking(move || {
        registry2.metadata.write_blocking(Durability::Lazy, |tx| {
            tx.registry().put_upload(&id2, &record2)
        })
    })
    .await??;
    registry
        .sessions
        .insert(&id, record, Algorithm::Sha256.hasher());
    Ok(session_response(StatusCode::ACCEPTED, &name, &id, 0))
}

/// The whole blob in the POST body.
async fn monolithic(
    registry: &Arc<Registry>,
    name: &RepoName,
    expected: Digest,
    body: Body,
) -> RegistryResult<Response> {
    match content::ingest_blob(registry, name, &expected, body.into_data_stream()).await {
        Ok(_) => Ok(blob_created(name, &expected)),
        Err(IngestError::Append(e)) => Err(append_error(e)),
        Err(IngestError::DigestMismatch { expected, actual }) => {
            Err(digest_mismatch(&expected, &actual))
        }
        Err(IngestError::Registry(e)) => Err(e),
    }
}

fn digest_mismatch(expected: &Digest, actual: &Digest) -> RegistryError {
    RegistryError::new(ErrorCode::DigestInvalid)
        .message(format!(
            "the uploaded content's digest is {actual}, not {expected}"
        ))
        .detail(json!({ "expected": expected.to_string(), "actual": actual.to_string() }))
}

/// Finds session `id` of repository `name`, locks it, and claims it for writing where
/// several nodes share the store (see `sessions::claim`).
async fn lock_for_writing(
    registry: &Registry,
    name: &RepoName,
    id: &str,
) -> RegistryResult<(Session, tokio::sync::OwnedMutexGuard<SessionState>)> {
    let (session, mut guard) = lock_session(registry, name, id).await?;
    sessions::claim(registry, id, &mut guard).await?;
    Ok((session, guard))
}

/// Finds session `id` of repository `name` and locks it.
async fn lock_session(
    registry: &Registry,
    name: &RepoName,
    id: &str,
) -> RegistryResult<(Session, tokio::sync::OwnedMutexGuard<SessionState>)> {
    let (session, guard) = registry
        .sessions
        .lock(registry, id, true)
        .await?
        .ok_or_else(|| upload_unknown(id))?;
    if guard.record.repo != name.as_str() {
        return Err(upload_unknown(id));
    }
    Ok((session, guard))
}

/// `GET …/uploads/<id>`: how much has been acknowledged.
pub async fn status(
    registry: &Arc<Registry>,
    name: &RepoName,
    id: &str,
) -> RegistryResult<Response> {
    let (_, guard) = lock_session(registry, name, id).await?;
    Ok(session_response(
        StatusCode::NO_CONTENT,
        name,
        id,
        guard.record.acknowledged,
    ))
}

/// Parses `Content-Range: <start>-<end>` (the spec's form; `bytes ` prefixes tolerated).
fn content_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>, ()> {
    let Some(value) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| ())?.trim();
    let value = value
        .strip_prefix("bytes ")
        .or_else(|| value.strip_prefix("bytes="))
        .unwrap_or(value);
    let value = value.split('/').next().unwrap_or(value);
    let (a, b) = value.split_once('-').ok_or(())?;
    let (a, b) = (
        a.trim().parse::<u64>().map_err(|_| ())?,
        b.trim().parse::<u64>().map_err(|_| ())?,
    );
    if b < a {
        return Err(());
    }
    Ok(Some((a, b)))
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn range_error(name: &RepoName, id: &str, acknowledged: u64, why: String) -> RegistryError {
    RegistryError::new(ErrorCode::BlobUploadInvalid)
        .status(StatusCode::RANGE_NOT_SATISFIABLE)
        .message(why)
        .header(header::RANGE, &progress(acknowledged))
        .header(header::LOCATION, &format!("/v2/{name}/blobs/uploads/{id}"))
        .header("docker-upload-uuid".parse().expect("static"), id)
}

/// Appends the request body to a locked session and makes the new length durable;
/// `report` hears the readable length as it grows.
async fn append_chunk(
    registry: &Arc<Registry>,
    name: &RepoName,
    id: &str,
    state: &mut SessionState,
    request: Request,
    report: Option<writer::Reporter>,
    keep_claim: bool,
) -> RegistryResult<()> {
    let acknowledged = state.record.acknowledged;
    let range = content_range(request.headers()).map_err(|()| {
        range_error(
            name,
            id,
            acknowledged,
            "Content-Range must be <start>-<end> in bytes".to_owned(),
        )
    })?;
    let declared_len = content_length(request.headers());
    if let Some((start, end)) = range {
        if start != acknowledged {
            return Err(range_error(
                name,
                id,
                acknowledged,
                format!(
                    "chunk starts at byte {start}, but {acknowledged} bytes have been received; send the chunk that starts at {acknowledged}"
                ),
            ));
        }
        if let Some(len) = declared_len
            && len != end - start + 1
        {
            return Err(range_error(
                name,
                id,
                acknowledged,
                format!(
                    "Content-Range covers {} bytes but Content-Length is {len}",
                    end - start + 1
                ),
            ));
        }
    }
    let hasher = match state.hasher.take() {
        Some(h) => h,
        // Nothing acknowledged yet (a session another node opened): nothing to re-read,
        // and there may be no staging file yet.
        None if acknowledged == 0 => Algorithm::Sha256.hasher(),
        None => {
            // First use here (after a restart, or of a session another node moved on) or
            // after a failed chunk: rebuild from disk.
            let (store, id2) = (registry.store.clone(), id.to_owned());
            let rebuilt = tokio::task::spawn_blocking(move || {
                store.hash_staging(&id2, acknowledged, Algorithm::Sha256)
            })
            .await?;
            match rebuilt {
                Ok(h) => h,
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound
                        || e.kind() == std::io::ErrorKind::UnexpectedEof =>
                {
                    forget(registry, id, state).await?;
                    return Err(upload_unknown(id).message("this upload's data is gone (the server lost it in a crash before it was acknowledged); start a new upload"));
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    let body = request.into_body();
    if body.is_end_stream() {
        state.hasher = Some(hasher);
        return Ok(());
    }
    // A claim is renewed while the chunk streams in, however long it takes.
    let renewer = state.record.claimed_by.clone().map(|token| {
        let (registry, id) = (registry.clone(), id.to_owned());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(sessions::CLAIM_TERM / 3).await;
                if !sessions::renew(&registry, &id, &token).await {
                    return;
                }
            }
        })
    });
    let appended = writer::append(
        registry.store.clone(),
        id.to_owned(),
        acknowledged,
        hasher,
        body.into_data_stream(),
        registry.config.max_blob_bytes,
        report,
    )
    .await;
    if let Some(renewer) = renewer {
        renewer.abort();
    }
    let appended = appended.map_err(append_error)?;
    let received = appended.len - acknowledged;
    let expected = range.map(|(s, e)| e - s + 1).or(declared_len);
    if let Some(expected) = expected
        && expected != received
    {
        return Err(RegistryError::new(ErrorCode::SizeInvalid)
            .message(format!(
                "the chunk declared {expected} bytes but {received} arrived"
            ))
            .header(header::RANGE, &progress(acknowledged)));
    }
    let mut record = state.record.clone();
    record.acknowledged = appended.len;
    record.updated_at = now_millis();
    if !keep_claim {
        record.claimed_by = None;
        record.claimed_until = 0;
    }
    let (registry2, id2, record2) = (registry.clone(), id.to_owned(), record.clone());
    let previous = state.record.acknowledged;
    let claim = state.record.claimed_by.clone();
    registry2
        .metadata
        .write(
            move |tx| -> Result<bool, crate::storage::store::StoreError> {
                // Another node may have taken the session on meanwhile (a client that sends
                // one session's chunks to two nodes at once): only one chunk counts.
                match tx.registry().upload(&id2)? {
                    Some(stored)
                        if stored.acknowledged == previous && stored.claimed_by == claim =>
                    {
                        tx.registry().put_upload(&id2, &record2)?;
                        Ok(true)
                    }
                    _ => Ok(false),
                }
            },
        )
        .await
        .map_err(RegistryError::from)
        .and_then(|kept| {
            if kept {
                Ok(())
            } else {
                Err(RegistryError::new(ErrorCode::BlobUploadInvalid).message(
                    "another request moved this upload on meanwhile; ask for its status and resume",
                ))
            }
        })?;
    state.record = record;
    state.hasher = Some(appended.hasher);
    Ok(())
}

/// Removes a session everywhere.
pub(crate) async fn forget(
    registry: &Arc<Registry>,
    id: &str,
    state: &mut SessionState,
) -> RegistryResult<()> {
    state.finished = true;
    registry.sessions.remove(id);
    let (registry2, id2) = (registry.clone(), id.to_owned());
    tokio::task::spawn_blocking(move || -> RegistryResult<()> {
        registry2
            .metadata
            .write_blocking(Durability::Immediate, |tx| {
                tx.registry().remove_upload(&id2)
            })?;
        registry2.store.remove_staging(&id2)?;
        Ok(())
    })
    .await??;
    Ok(())
}

/// `PATCH …/uploads/<id>`: appends a chunk (or, without Content-Range, a stream).
pub async fn patch(
    registry: &Arc<Registry>,
    name: RepoName,
    id: String,
    request: Request,
) -> RegistryResult<Response> {
    let (_session, mut guard) = lock_for_writing(registry, &name, &id).await?;
    let appended = append_chunk(registry, &name, &id, &mut guard, request, None, false).await;
    if appended.is_err() {
        sessions::release(registry, &id, &mut guard).await;
    }
    appended?;
    Ok(session_response(
        StatusCode::ACCEPTED,
        &name,
        &id,
        guard.record.acknowledged,
    ))
}

/// `PUT …/uploads/<id>?digest=<d>`: appends the final chunk, verifies, and commits.
pub async fn close(
    registry: &Arc<Registry>,
    name: RepoName,
    id: String,
    request: Request,
) -> RegistryResult<Response> {
    let expected = digest_param(request.uri().query())?.ok_or_else(|| {
        RegistryError::new(ErrorCode::DigestInvalid)
            .message("closing an upload needs ?digest=<algorithm>:<hex>")
    })?;
    let (_session, mut guard) = lock_for_writing(registry, &name, &id).await?;
    let closed = finish(registry, &name, &id, &mut guard, request, expected).await;
    if closed.is_err() && !guard.finished {
        sessions::release(registry, &id, &mut guard).await;
    }
    closed
}

/// The body of [`close`], on the locked and claimed session.
async fn finish(
    registry: &Arc<Registry>,
    name: &RepoName,
    id: &str,
    guard: &mut SessionState,
    request: Request,
    expected: Digest,
) -> RegistryResult<Response> {
    // The digest is known from here on: whoever waits for it may follow the bytes in.
    let arriving = registry.arrivals.begin(
        name.as_str(),
        &expected.to_string(),
        id,
        guard.record.acknowledged,
    );
    // The claim is kept past this chunk's commit, until the blob is committed.
    append_chunk(
        registry,
        name,
        id,
        guard,
        request,
        Some(arriving.reporter()),
        true,
    )
    .await?;
    let len = guard.record.acknowledged;
    let actual = match expected.algorithm() {
        Algorithm::Sha256 => guard.hasher.clone().expect("set by append_chunk").finish(),
        other => {
            let (store, id2) = (registry.store.clone(), id.to_owned());
            tokio::task::spawn_blocking(move || store.hash_staging(&id2, len, other))
                .await??
                .finish()
        }
    };
    if actual != expected {
        forget(registry, id, guard).await?;
        return Err(digest_mismatch(&expected, &actual));
    }
    content::commit_staging(registry, name, id, &expected, len, true).await?;
    arriving.committed(len);
    guard.finished = true;
    registry.sessions.remove(id);
    Ok(blob_created(name, &expected))
}

/// `DELETE …/uploads/<id>`: cancels the session.
pub async fn cancel(
    registry: &Arc<Registry>,
    name: &RepoName,
    id: &str,
) -> RegistryResult<Response> {
    let (_session, mut guard) = lock_for_writing(registry, name, id).await?;
    forget(registry, id, &mut guard).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}
