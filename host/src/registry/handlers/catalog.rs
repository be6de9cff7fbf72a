//! `GET /v2/_catalog` — the repositories, in lexical order, paginated.
//!
//! ```text
//! GET /v2/_catalog?n=<n>&last=<name>
//! → 200 {"repositories": [...]}   Link: </v2/_catalog?last=<x>&n=<n>>; rel="next"
//! ```

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{next_link, pagination, query_params};
use crate::auth::Action;
use crate::auth::authenticate::Caller;
use crate::registry::Registry;
use crate::registry::errcode::RegistryResult;

/// Lists repositories.
/// Lists the repositories the caller may pull from.
pub async fn get(
    registry: &Registry,
    query: Option<&str>,
    caller: &Caller,
) -> RegistryResult<Response> {
    let (n, last) = pagination(&query_params(query))?;
    // One extra tells whether a next page exists without a second query. Repositories the
    // caller cannot see are skipped, so pages are read until n + 1 visible ones are found.
    let mut names = Vec::new();
    let mut cursor = last;
    loop {
        let batch = registry
            .repositories(cursor.clone(), (n + 1).max(64))
            .await?;
        let exhausted = batch.len() < (n + 1).max(64);
        cursor = batch.last().cloned();
        for name in batch {
            if caller.principal.is_admin()
                || registry
                    .auth
                    .allows_current(&caller.principal, &name, Action::Pull)?
            {
                names.push(name);
            }
        }
        if names.len() > n || exhausted {
            break;
        }
    }
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
