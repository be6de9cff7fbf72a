//! Manifests: `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.
//!
//! ```text
//! GET|HEAD /v2/<name>/manifests/<tag|digest>
//!   → 200 <bytes as pushed>  Content-Type, Docker-Content-Digest, ETag
//!   → 404 MANIFEST_UNKNOWN
//! PUT /v2/<name>/manifests/<tag|digest>[?tag=<t>&tag=<u>…]   Content-Type: <media type>
//!   → 201 Location: /v2/<name>/manifests/<digest>, Docker-Content-Digest [, OCI-Subject]
//!         [, OCI-Tag: <t>, <u>]   (the ?tag= tags, set in the same commit)
//!   → 400 MANIFEST_INVALID | MANIFEST_BLOB_UNKNOWN | DIGEST_INVALID, 413 when too large
//! DELETE /v2/<name>/manifests/<digest>   → 202 (the manifest, its tags and referrer entry)
//! DELETE /v2/<name>/manifests/<tag>      → 202 (the tag only)
//! ```

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::json;

use crate::names::{Reference, RepoName, Tag};
use crate::registry::Registry;
use crate::registry::content::{self, Replicated};
use crate::registry::errcode::{ErrorCode, RegistryError, RegistryResult};
use crate::registry::routes::empty;

fn etag(digest: &str) -> String {
    format!("\"{digest}\"")
}

/// Serves a manifest by tag or digest, from one metadata snapshot.
pub async fn get(
    registry: &Registry,
    name: &RepoName,
    reference: &Reference,
    headers: &HeaderMap,
    head: bool,
) -> RegistryResult<Response> {
    let unknown = || {
        RegistryError::new(ErrorCode::ManifestUnknown)
            .detail(json!({ "name": name.as_str(), "reference": reference.to_string() }))
    };
    let found = registry
        .find_manifest(name.as_str(), &reference.to_string(), !head)
        .await?
        .ok_or_else(unknown)?;
    let (digest, record) = (found.digest, found.record);
    let tag = etag(&digest);
    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, &record.media_type)
        .header(header::CONTENT_LENGTH, record.size)
        .header("docker-content-digest", &digest)
        .header(header::ETAG, &tag);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag))
    {
        builder = builder.status(StatusCode::NOT_MODIFIED);
        return Ok(builder.body(Body::empty()).expect("valid response"));
    }
    let body = match found.bytes {
        Some(bytes) => Body::from(bytes),
        None => Body::empty(),
    };
    Ok(builder
        .status(StatusCode::OK)
        .body(body)
        .expect("valid response"))
}

/// Largest refused body still read to its end before answering (see [`read_body`]).
const DRAIN_LIMIT: u64 = 64 * 1024 * 1024;

/// Reads a request body of at most `limit` bytes.
pub async fn read_body(
    request: Request,
    limit: usize,
    what: &str,
    code: ErrorCode,
) -> RegistryResult<Bytes> {
    let too_large = |len: u64| {
        RegistryError::new(code)
            .status(StatusCode::PAYLOAD_TOO_LARGE)
            .message(format!(
                "{what} is {len} bytes; the limit is {limit} bytes (registry.max_manifest_bytes)"
            ))
    };
    if let Some(len) = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit as u64
    {
        // Read (and drop) a moderately oversized body so that the client, still sending,
        // receives the 413 instead of a reset connection. Far larger ones are cut off.
        if len <= DRAIN_LIMIT {
            let mut body = request.into_body().into_data_stream();
            while let Some(Ok(_)) = futures::StreamExt::next(&mut body).await {}
        }
        return Err(too_large(len));
    }
    match http_body_util::Limited::new(request.into_body(), limit)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large(limit as u64 + 1))
        }
        Err(e) => Err(RegistryError::new(code).message(format!("could not read the {what}: {e}"))),
    }
}

/// Stores a manifest after checking everything it references is in this repository.
pub async fn put(
    registry: &Arc<Registry>,
    name: RepoName,
    reference: Reference,
    request: Request,
    from: Option<&Replicated>,
) -> RegistryResult<Response> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let also_tags = tag_parameters(request.uri().query())?;
    let bytes = read_body(
        request,
        registry.config.max_manifest_bytes,
        "the manifest",
        ErrorCode::ManifestInvalid,
    )
    .await?;
    let stored = content::put_manifest(
        registry,
        &name,
        &reference,
        content_type.as_deref(),
        bytes,
        &also_tags,
        from,
    )
    .await?;
    // A client's push (not a peer's) waits here while synchronous replication delivers it,
    // under each name it was pushed by.
    if from.is_none()
        && let Some(gate) = registry.ack_gate.get()
    {
        gate.before_ack(name.as_str(), &reference.to_string()).await;
        for tag in also_tags.iter().filter(|t| match &reference {
            Reference::Tag(own) => own != *t,
            Reference::Digest(_) => true,
        }) {
            gate.before_ack(name.as_str(), tag.as_str()).await;
        }
    }
    let digest = stored.digest;
    let mut response = empty(StatusCode::CREATED);
    let h = response.headers_mut();
    h.insert(
        header::LOCATION,
        format!("/v2/{name}/manifests/{digest}")
            .parse()
            .expect("ascii"),
    );
    h.insert(
        "docker-content-digest",
        digest.to_string().parse().expect("ascii"),
    );
    if let Some(subject) = &stored.subject {
        h.insert("oci-subject", subject.to_string().parse().expect("ascii"));
    }
    if !also_tags.is_empty() {
        let accepted: Vec<&str> = also_tags.iter().map(|t| t.as_str()).collect();
        h.insert(
            "oci-tag",
            accepted.join(", ").parse().expect("tags are ascii"),
        );
    }
    Ok(response)
}

/// Most `?tag=` parameters one push may carry (the spec asks for at least 10).
const MAX_TAGS_PER_PUSH: usize = 100;

/// The `?tag=` parameters of a manifest push (distribution-spec 1.1), each checked.
fn tag_parameters(query: Option<&str>) -> RegistryResult<Vec<Tag>> {
    let values = super::query_values(query, "tag");
    if values.len() > MAX_TAGS_PER_PUSH {
        return Err(RegistryError::new(ErrorCode::Unsupported)
            .status(StatusCode::URI_TOO_LONG)
            .message(format!(
                "{} tags in one push; at most {MAX_TAGS_PER_PUSH} are accepted",
                values.len()
            )));
    }
    let mut tags: Vec<Tag> = Vec::with_capacity(values.len());
    for value in values {
        let tag = Tag::parse(&value)?;
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    Ok(tags)
}

/// Deletes a manifest (by digest) or a tag (by tag).
pub async fn delete(
    registry: &Arc<Registry>,
    name: &RepoName,
    reference: &Reference,
    from: Option<&Replicated>,
) -> RegistryResult<Response> {
    let found = content::delete(registry, name, reference, from).await?;
    if !found {
        return Err(RegistryError::new(ErrorCode::ManifestUnknown)
            .detail(json!({ "name": name.as_str(), "reference": reference.to_string() })));
    }
    Ok(empty(StatusCode::ACCEPTED))
}
