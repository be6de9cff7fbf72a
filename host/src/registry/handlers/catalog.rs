//! `GET /v2/_catalog` — the repositories, in lexical order, paginated.
//!
//! ```text
//! GET /v2/_catalog?n=<n>&last=<name>
//! → 200 {"repositories": [...]}   Link: </v2/_catalog?last=<x>&n=<n>>; rel="next"
//! ```

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{next_link, pagination, query_params};
use crate::registry::Registry;
use crate::registry::errcode::RegistryResult;
use crate::storage::meta;

/// Lists repositories.
pub async fn get(registry: &Registry, query: Option<&str>) -> RegistryResult<Response> {
    let (n, last) = pagination(&query_params(query))?;
    let tx = registry.meta.read()?;
    // One extra tells whether a next page exists without a second query.
    let mut names = meta::repositories::list(&tx, last.as_deref(), n + 1)?;
    let more = names.len() > n;
    names.truncate(n);
    let body = serde_json::json!({ "repositories": names }).to_string();
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    if more && let Some(last) = names.last() {
        response.headers_mut().insert(
            header::LINK,
            next_link("/v2/_catalog", last, n)
                .parse()
                .expect("ascii link"),
        );
    }
    Ok(response)
}
