//! Blobs: `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`.
//!
//! ```text
//! GET|HEAD /v2/<name>/blobs/<digest>   [Range: bytes=<a>-<b>]
//!   → 200 | 206 (Content-Range)  Content-Length, Docker-Content-Digest, ETag, Accept-Ranges
//!   → 404 BLOB_UNKNOWN (not linked in this repository), 416 (unsatisfiable range)
//! DELETE /v2/<name>/blobs/<digest>     → 202 (the repository's link is removed)
//! ```

use std::io::Read;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde_json::json;

use crate::digest::Digest;
use crate::names::RepoName;
use crate::registry::Registry;
use crate::registry::errcode::{ErrorCode, RegistryError, RegistryResult};
use crate::registry::linked::LinkedError;
use crate::registry::routes::empty;

fn unknown(name: &RepoName, digest: &Digest) -> RegistryError {
    RegistryError::new(ErrorCode::BlobUnknown)
        .detail(json!({ "name": name.as_str(), "digest": digest.to_string() }))
}

impl From<LinkedError> for RegistryError {
    fn from(e: LinkedError) -> RegistryError {
        match e {
            LinkedError::Unknown => RegistryError::new(ErrorCode::BlobUnknown),
            LinkedError::Missing(_) => {
                RegistryError::internal("blob content is missing (run berth fsck)", e)
            }
            LinkedError::Store(e) => e.into(),
            LinkedError::Io(e) => e.into(),
        }
    }
}

/// A satisfiable byte range, inclusive.
#[derive(Debug, PartialEq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// Last byte.
    pub end: u64,
}

/// What a `Range` header asks of a blob.
#[derive(Debug, PartialEq)]
pub enum RangeRequest {
    /// Serve it all: no header, or one ignored as RFC 9110 allows (several ranges, other
    /// units, bad syntax).
    Whole,
    /// One satisfiable range.
    Part(ByteRange),
    /// A range past the end.
    Unsatisfiable,
}

/// Interprets a `Range` header against a blob of `size` bytes.
pub fn parse_range(value: Option<&str>, size: u64) -> RangeRequest {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeRequest::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end => ByteRange {
            start,
            end: end.min(size.saturating_sub(1)),
        },
        (Ok(start), Err(_)) if b.is_empty() => ByteRange {
            start,
            end: size.saturating_sub(1),
        },
        (Err(_), Ok(suffix)) if a.is_empty() && suffix > 0 => ByteRange {
            start: size.saturating_sub(suffix),
            end: size.saturating_sub(1),
        },
        (Err(_), Ok(0)) if a.is_empty() => return RangeRequest::Unsatisfiable,
        _ => return RangeRequest::Whole,
    };
    if range.start >= size {
        RangeRequest::Unsatisfiable
    } else {
        RangeRequest::Part(range)
    }
}

/// Serves a blob the repository links.
pub async fn get(
    registry: &Arc<Registry>,
    name: &RepoName,
    digest: &Digest,
    headers: &HeaderMap,
    head: bool,
) -> RegistryResult<Response> {
    let size = match registry.linked.stat(name.as_str(), digest).await {
        Ok(size) => size,
        Err(LinkedError::Unknown) => return Err(unknown(name, digest)),
        Err(e) => return Err(e.into()),
    };
    let digest_str = digest.to_string();
    let etag = format!("\"{digest_str}\"");
    let builder = Response::builder()
        .header("docker-content-digest", &digest_str)
        .header(header::ETAG, &etag)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_TYPE, "application/octet-stream");
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return Ok(builder
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .expect("valid response"));
    }
    let range = match parse_range(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        size,
    ) {
        RangeRequest::Whole => None,
        RangeRequest::Part(range) => Some(range),
        RangeRequest::Unsatisfiable => {
            let asked = headers
                .get(header::RANGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            return Err(RegistryError::new(ErrorCode::SizeInvalid)
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .message(format!(
                    "the range {asked:?} starts past the end of this {size}-byte blob"
                ))
                .header(header::CONTENT_RANGE, &format!("bytes */{size}"))
                .header(header::ACCEPT_RANGES, "bytes"));
        }
    };
    let (status, start, len, builder) = match &range {
        Some(r) => (
            StatusCode::PARTIAL_CONTENT,
            r.start,
            r.end - r.start + 1,
            builder.header(
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{size}", r.start, r.end),
            ),
        ),
        None => (StatusCode::OK, 0, size, builder),
    };
    let builder = builder.status(status).header(header::CONTENT_LENGTH, len);
    if head {
        return Ok(builder.body(Body::empty()).expect("valid response"));
    }
    let (registry2, repo, digest2) = (registry.clone(), name.to_string(), digest.clone());
    let reader =
        tokio::task::spawn_blocking(move || registry2.linked.open(&repo, &digest2, start)).await?;
    let reader = match reader {
        Ok(r) => r,
        Err(LinkedError::Unknown) => return Err(unknown(name, digest)),
        Err(e) => return Err(e.into()),
    };
    Ok(builder.body(stream(reader, len)).expect("valid response"))
}

/// The blob as a response body, streamed from a blocking thread.
fn stream(reader: Box<dyn Read + Send>, len: u64) -> Body {
    Body::from_stream(crate::storage::blob::stream_reader(reader, len))
}

/// Removes the repository's link to a blob. The content stays until garbage collection
/// finds no repository links it.
pub async fn delete(
    registry: &Arc<Registry>,
    name: &RepoName,
    digest: &Digest,
) -> RegistryResult<Response> {
    if !crate::registry::content::unlink_blob(registry, name, digest).await? {
        return Err(unknown(name, digest));
    }
    Ok(empty(StatusCode::ACCEPTED))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), RangeRequest::Whole);
        assert_eq!(
            parse_range(Some("bytes=0-3"), 10),
            RangeRequest::Part(ByteRange { start: 0, end: 3 })
        );
        assert_eq!(
            parse_range(Some("bytes=5-"), 10),
            RangeRequest::Part(ByteRange { start: 5, end: 9 })
        );
        assert_eq!(
            parse_range(Some("bytes=-4"), 10),
            RangeRequest::Part(ByteRange { start: 6, end: 9 })
        );
        assert_eq!(
            parse_range(Some("bytes=8-100"), 10),
            RangeRequest::Part(ByteRange { start: 8, end: 9 })
        );
        assert_eq!(
            parse_range(Some("bytes=10-"), 10),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), RangeRequest::Whole);
        assert_eq!(parse_range(Some("items=0-1"), 10), RangeRequest::Whole);
        assert_eq!(parse_range(Some("bytes=5-2"), 10), RangeRequest::Whole);
    }
}
