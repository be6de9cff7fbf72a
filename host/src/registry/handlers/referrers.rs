//! `GET /v2/<name>/referrers/<digest>` — the manifests whose `subject` is `<digest>`.
//!
//! ```text
//! GET /v2/<name>/referrers/<digest>?artifactType=<type>
//! → 200 application/vnd.oci.image.index.v1+json {"schemaVersion":2,"manifests":[…]}
//!       OCI-Filters-Applied: artifactType   (when the filter was applied)
//! ```
//! An unknown subject, or a repository with no content yet, has no referrers: an empty
//! index, never a 404 (the spec: a registry with the API must not answer 404 to it, and a
//! client falls back to the tag schema on one).

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::query_params;
use crate::digest::Digest;
use crate::names::RepoName;
use crate::registry::Registry;
use crate::registry::errcode::RegistryResult;
use crate::registry::manifest::OCI_INDEX;

/// Lists referrers.
pub async fn list(
    registry: &Registry,
    name: &RepoName,
    subject: &Digest,
    query: Option<&str>,
) -> RegistryResult<Response> {
    let params = query_params(query);
    let mut referrers = registry
        .referrers(name.as_str(), &subject.to_string())
        .await?;
    let filter = params.get("artifactType").filter(|t| !t.is_empty());
    if let Some(wanted) = filter {
        referrers.retain(|r| r.artifact_type.as_deref() == Some(wanted.as_str()));
    }
    let body =
        serde_json::json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": referrers })
            .to_string();
    let mut response = (StatusCode::OK, [(header::CONTENT_TYPE, OCI_INDEX)], body).into_response();
    if filter.is_some() {
        response.headers_mut().insert(
            "oci-filters-applied",
            "artifactType".parse().expect("ascii"),
        );
    }
    Ok(response)
}
