//! `/api/v1/projects`: projects, public or private.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::caller::ApiCaller;
use super::extract::{ApiJson, ApiQuery};
use super::problem::{ApiResult, Problem};
use super::{ApiState, Page};
use crate::auth::Action;
use crate::auth::projects::ProjectRecord;

/// A project.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Project {
    /// Its name, the first component of its repositories' names.
    pub name: String,
    /// Anyone may pull.
    pub public: bool,
    /// Who created it.
    pub created_by: String,
    /// When (ms since the epoch).
    pub created_at: u64,
    /// How many repositories it holds.
    pub repositories: usize,
}

/// `POST /api/v1/projects`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProject {
    /// Name: lowercase letters and digits, separated by '.', '_', '__' or '-'.
    pub name: String,
    /// Anyone may pull (default false).
    #[serde(default)]
    pub public: bool,
}

/// `PATCH /api/v1/projects/{name}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectUpdate {
    /// Make public or private.
    pub public: Option<bool>,
}

/// Filters of the project list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProjectFilter {
    /// Only names containing this.
    pub name: Option<String>,
    /// Only public (true) or private (false) projects.
    pub public: Option<bool>,
}

/// `DELETE` options.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteOptions {
    /// Delete even if the project holds repositories (they are deleted too).
    #[serde(default)]
    pub force: bool,
}

async fn view(state: &ApiState, p: ProjectRecord) -> ApiResult<Project> {
    let repositories = state.registry.non_empty_repositories(&p.name).await?.len();
    Ok(Project {
        name: p.name,
        public: p.public,
        created_by: p.created_by,
        created_at: p.created_at,
        repositories,
    })
}

/// Lists the projects the caller can see.
#[utoipa::path(get, operation_id = "projects_list", path = "/api/v1/projects", tag = "projects", params(Page, ProjectFilter),
    responses((status = 200, body = [Project]), (status = 401, body = Problem)))]
pub async fn list(
    State(state): State<ApiState>,
    caller: ApiCaller,
    ApiQuery(page): ApiQuery<Page>,
    ApiQuery(filter): ApiQuery<ProjectFilter>,
) -> ApiResult<(HeaderMap, Json<Vec<Project>>)> {
    let mut visible = Vec::new();
    for access in state.auth.visible_projects(&caller.principal)? {
        let p = access.project;
        let wanted = filter
            .name
            .as_ref()
            .is_none_or(|n| p.name.contains(n.as_str()))
            && filter.public.is_none_or(|pb| pb == p.public);
        if wanted {
            visible.push(view(&state, p).await?);
        }
    }
    let (headers, items) = page.apply(visible, "/api/v1/projects");
    Ok((headers, Json(items)))
}

/// Creates a project (system administrators only).
#[utoipa::path(post, operation_id = "projects_create", path = "/api/v1/projects", tag = "projects", request_body = NewProject,
    responses((status = 201, body = Project), (status = 400, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem)))]
pub async fn create(
    State(state): State<ApiState>,
    caller: ApiCaller,
    ApiJson(new): ApiJson<NewProject>,
) -> ApiResult<(StatusCode, Json<Project>)> {
    caller.require_admin()?;
    let record = state
        .auth
        .create_project(&new.name, new.public, caller.principal.name())
        .await?;
    caller
        .audit(&state, "project.create", &new.name, None)
        .await;
    Ok((StatusCode::CREATED, Json(view(&state, record).await?)))
}

/// One project.
#[utoipa::path(get, operation_id = "projects_get", path = "/api/v1/projects/{name}", tag = "projects", params(("name" = String, Path)),
    responses((status = 200, body = Project), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> ApiResult<Json<Project>> {
    let record = caller.visible_project(&state.auth, &name)?;
    Ok(Json(view(&state, record).await?))
}

/// Makes a project public or private (project admins).
#[utoipa::path(patch, operation_id = "projects_update", path = "/api/v1/projects/{name}", tag = "projects", params(("name" = String, Path)), request_body = ProjectUpdate,
    responses((status = 200, body = Project), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn update(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
    ApiJson(update): ApiJson<ProjectUpdate>,
) -> ApiResult<Json<Project>> {
    let mut record = caller.require(&state.auth, &name, Action::ManageProject)?;
    if let Some(public) = update.public {
        record = state.auth.set_project_public(&name, public).await?;
    }
    caller.audit(&state, "project.update", &name, None).await;
    Ok(Json(view(&state, record).await?))
}

/// Deletes a project; refused while it holds repositories unless `force=true`, which
/// deletes them (their manifests, tags and blob links) too.
#[utoipa::path(delete, operation_id = "projects_delete", path = "/api/v1/projects/{name}", tag = "projects", params(("name" = String, Path), DeleteOptions),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn delete(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
    ApiQuery(options): ApiQuery<DeleteOptions>,
) -> ApiResult<StatusCode> {
    caller.require(&state.auth, &name, Action::ManageProject)?;
    state.registry.delete_project(&name, options.force).await?;
    caller.audit(&state, "project.delete", &name, None).await;
    Ok(StatusCode::NO_CONTENT)
}
