//! `GET /v2/<name>/tags/list` — a repository's tags, in lexical order, paginated.
//!
//! ```text
//! GET /v2/<name>/tags/list?n=<n>&last=<tag>
//! → 200 {"name": "<name>", "tags": [...]}   Link: <…?last=<x>&n=<n>>; rel="next"
//! → 404 NAME_UNKNOWN
//! ```

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{next_link, pagination, query_params};
use crate::names::RepoName;
use crate::registry::Registry;
use crate::registry::errcode::{ErrorCode, RegistryError, RegistryResult};

/// Lists tags.
pub async fn list(
    registry: &Registry,
    name: &RepoName,
    query: Option<&str>,
) -> RegistryResult<Response> {
    let (n, last) = pagination(&query_params(query))?;
    let Some(mut tags) = registry.tags(name.as_str(), last, n + 1).await? else {
        return Err(RegistryError::new(ErrorCode::NameUnknown)
            .detail(serde_json::json!({ "name": name.as_str() })));
    };
    let more = tags.len() > n;
    tags.truncate(n);
    let body = serde_json::json!({ "name": name.as_str(), "tags": tags }).to_string();
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    if more && let Some(last) = tags.last() {
        let path = format!("/v2/{name}/tags/list");
        response.headers_mut().insert(
            header::LINK,
            next_link(&path, last, n).parse().expect("ascii link"),
        );
    }
    Ok(response)
}
