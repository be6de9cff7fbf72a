//! `/api/v1/projects/{name}/members`: who holds which role in a project.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiState;
use super::caller::ApiCaller;
use super::extract::ApiJson;
use super::problem::{ApiResult, Problem};
use crate::auth::{Action, Role};

/// A membership.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Member {
    /// The user.
    pub username: String,
    /// `admin`, `developer` or `guest`.
    pub role: Role,
}

/// `PUT /api/v1/projects/{name}/members/{username}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    /// `admin`, `developer` or `guest`.
    pub role: Role,
}

/// Lists members (anyone who can see the project).
#[utoipa::path(get, operation_id = "members_list", path = "/api/v1/projects/{name}/members", tag = "members", params(("name" = String, Path)),
    responses((status = 200, body = [Member]), (status = 404, body = Problem)))]
pub async fn list(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<Member>>> {
    caller.visible_project(&state.auth, &name)?;
    let list = state.auth.members(&name).await?;
    Ok(Json(
        list.into_iter()
            .map(|(username, role)| Member { username, role })
            .collect(),
    ))
}

async fn set_role(
    state: &ApiState,
    caller: &ApiCaller,
    project: &str,
    username: &str,
    role: Role,
) -> ApiResult<()> {
    caller.require(&state.auth, project, Action::ManageMembers)?;
    state.auth.set_member(project, username, role).await?;
    caller
        .audit(
            state,
            "member.set",
            project,
            Some(format!("{username}: {}", role.as_str())),
        )
        .await;
    Ok(())
}

/// Adds a member (project admins).
#[utoipa::path(post, operation_id = "members_add", path = "/api/v1/projects/{name}/members", tag = "members", params(("name" = String, Path)), request_body = Member,
    responses((status = 201, body = Member), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn add(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
    ApiJson(member): ApiJson<Member>,
) -> ApiResult<(StatusCode, Json<Member>)> {
    set_role(&state, &caller, &name, &member.username, member.role).await?;
    Ok((StatusCode::CREATED, Json(member)))
}

/// Changes a member's role (project admins).
#[utoipa::path(put, operation_id = "members_set", path = "/api/v1/projects/{name}/members/{username}", tag = "members",
    params(("name" = String, Path), ("username" = String, Path)), request_body = RoleChange,
    responses((status = 200, body = Member), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn set(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path((name, username)): Path<(String, String)>,
    ApiJson(change): ApiJson<RoleChange>,
) -> ApiResult<Json<Member>> {
    set_role(&state, &caller, &name, &username, change.role).await?;
    Ok(Json(Member {
        username,
        role: change.role,
    }))
}

/// Removes a member (project admins).
#[utoipa::path(delete, operation_id = "members_remove", path = "/api/v1/projects/{name}/members/{username}", tag = "members",
    params(("name" = String, Path), ("username" = String, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn remove(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path((name, username)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.require(&state.auth, &name, Action::ManageMembers)?;
    state.auth.remove_member(&name, &username).await?;
    caller
        .audit(&state, "member.remove", &name, Some(username))
        .await;
    Ok(StatusCode::NO_CONTENT)
}
