//! `/api/v1/projects/{project}/repositories` and `/api/v1/repositories/{repository}/…`:
//! what a project holds, and deleting tags and manifests. `{repository}` is the full name
//! with its slashes percent-encoded (`team%2Fapp`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiState;
use super::caller::ApiCaller;
use super::problem::{ApiError, ApiResult, Problem};
use crate::auth::Action;
use crate::auth::audit::AuditRecord;
use crate::names::{Reference, RepoName, Tag};
use crate::registry::content;
use crate::storage::tables::registry::HistoryEntry;

/// A repository.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Repository {
    /// Full name.
    pub name: String,
    /// Number of tags.
    pub tags: u64,
    /// Number of manifests.
    pub manifests: u64,
}

/// A tag.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TagInfo {
    /// The tag.
    pub name: String,
    /// The manifest it points to.
    pub digest: String,
    /// When it last moved (ms since the epoch).
    pub updated_at: u64,
    /// The clock of its last move (`<ms>.<counter>.<instance>`), which orders moves made
    /// on two primaries.
    pub clock: Option<String>,
}

/// A tag's former targets, and replicated moves that lost to a later one.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TagHistory {
    /// The tag.
    pub name: String,
    /// Where it points now, if it exists.
    pub current: Option<TagInfo>,
    /// Newest first.
    pub history: Vec<HistoryEntry>,
}

fn repo_of(name: &str) -> ApiResult<(RepoName, String)> {
    let repo = RepoName::parse(name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let project = repo.project().to_owned();
    Ok((repo, project))
}

/// The repositories of a project.
#[utoipa::path(get, operation_id = "repositories_list", path = "/api/v1/projects/{project}/repositories", tag = "repositories", params(("project" = String, Path)),
    responses((status = 200, body = [Repository]), (status = 404, body = Problem)))]
pub async fn list(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(project): Path<String>,
) -> ApiResult<Json<Vec<Repository>>> {
    caller.require(&state.auth, &project, Action::Pull)?;
    let out = state
        .registry
        .non_empty_repositories(&project)
        .await?
        .into_iter()
        .map(|r| Repository {
            name: r.name,
            tags: r.tags,
            manifests: r.manifests,
        })
        .collect();
    Ok(Json(out))
}

/// The tags of a repository with their digests.
#[utoipa::path(get, operation_id = "repositories_tags", path = "/api/v1/repositories/{repository}/tags", tag = "repositories", params(("repository" = String, Path)),
    responses((status = 200, body = [TagInfo]), (status = 404, body = Problem)))]
pub async fn tags(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(repository): Path<String>,
) -> ApiResult<Json<Vec<TagInfo>>> {
    let (repo, project) = repo_of(&repository)?;
    caller.require(&state.auth, &project, Action::Pull)?;
    let out = state
        .registry
        .tag_targets(repo.as_str())
        .await?
        .into_iter()
        .map(|(name, t)| TagInfo {
            name,
            digest: t.digest,
            updated_at: t.updated_at,
            clock: t.clock.map(|c| c.to_string()),
        })
        .collect();
    Ok(Json(out))
}

/// A tag's history: the targets it was moved away from or deleted at, and replicated
/// moves that arrived late and lost (last writer wins by clock).
#[utoipa::path(get, operation_id = "repositories_tag_history", path = "/api/v1/repositories/{repository}/tags/{tag}/history", tag = "repositories",
    params(("repository" = String, Path), ("tag" = String, Path)),
    responses((status = 200, body = TagHistory), (status = 404, body = Problem)))]
pub async fn tag_history(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path((repository, tag)): Path<(String, String)>,
) -> ApiResult<Json<TagHistory>> {
    let (repo, project) = repo_of(&repository)?;
    caller.require(&state.auth, &project, Action::Pull)?;
    let (current, history) = state.registry.tag_history(repo.as_str(), &tag).await?;
    let current = current.map(|t| TagInfo {
        name: tag.clone(),
        digest: t.digest,
        updated_at: t.updated_at,
        clock: t.clock.map(|c| c.to_string()),
    });
    if current.is_none() && history.is_empty() {
        return Err(ApiError::not_found(format!(
            "{repo} has no tag {tag}, nor had one"
        )));
    }
    Ok(Json(TagHistory {
        name: tag,
        current,
        history,
    }))
}

async fn audit_delete(
    state: &ApiState,
    caller: &ApiCaller,
    repo: &str,
    tag: Option<String>,
    digest: Option<String>,
) {
    let mut record = AuditRecord::new(
        caller.principal.name(),
        &caller.source,
        "delete",
        repo,
        "success",
    );
    record.tag = tag;
    record.digest = digest;
    state.auth.audit.record(record).await;
}

/// Deletes a tag (project admins).
#[utoipa::path(delete, operation_id = "repositories_delete_tag", path = "/api/v1/repositories/{repository}/tags/{tag}", tag = "repositories",
    params(("repository" = String, Path), ("tag" = String, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn delete_tag(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path((repository, tag)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (repo, project) = repo_of(&repository)?;
    caller.require(&state.auth, &project, Action::Delete)?;
    let reference =
        Reference::Tag(Tag::parse(&tag).map_err(|e| ApiError::bad_request(e.to_string()))?);
    if !content::delete(&state.registry, &repo, &reference, None).await? {
        return Err(ApiError::not_found(format!("{repo} has no tag {tag}")));
    }
    audit_delete(&state, &caller, repo.as_str(), Some(tag), None).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a manifest and every tag pointing at it (project admins).
#[utoipa::path(delete, operation_id = "repositories_delete_manifest", path = "/api/v1/repositories/{repository}/manifests/{digest}", tag = "repositories",
    params(("repository" = String, Path), ("digest" = String, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn delete_manifest(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path((repository, digest)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (repo, project) = repo_of(&repository)?;
    caller.require(&state.auth, &project, Action::Delete)?;
    let reference = Reference::Digest(
        digest
            .parse()
            .map_err(|e: crate::digest::DigestError| ApiError::bad_request(e.to_string()))?,
    );
    if !content::delete(&state.registry, &repo, &reference, None).await? {
        return Err(ApiError::not_found(format!(
            "{repo} has no manifest {digest}"
        )));
    }
    audit_delete(&state, &caller, repo.as_str(), None, Some(digest)).await;
    Ok(StatusCode::NO_CONTENT)
}
