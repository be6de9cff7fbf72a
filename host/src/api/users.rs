//! `/api/v1/users`: local accounts.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::caller::ApiCaller;
use super::extract::{ApiJson, ApiQuery};
use super::problem::{ApiError, ApiResult, Problem};
use super::{ApiState, Page};
use crate::auth::users::UserRecord;

/// A user as the API shows it (never the hash).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct User {
    /// Login name.
    pub username: String,
    /// System administrator.
    pub admin: bool,
    /// Disabled users cannot log in.
    pub disabled: bool,
    /// When created (ms since the epoch).
    pub created_at: u64,
}

/// `POST /api/v1/users`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Login name: letters, digits, '.', '_', '-'.
    pub username: String,
    /// At least 12 characters.
    pub password: String,
    /// Make a system administrator.
    #[serde(default)]
    pub admin: bool,
}

/// `PATCH /api/v1/users/{username}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    /// Grant or withdraw system administration.
    pub admin: Option<bool>,
    /// Disable or enable.
    pub disabled: Option<bool>,
}

/// `PUT /api/v1/users/{username}/password`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The current password (required when changing one's own).
    pub old_password: Option<String>,
    /// The new password, at least 12 characters.
    pub new_password: String,
}

fn view(name: String, r: UserRecord) -> User {
    User {
        username: name,
        admin: r.admin,
        disabled: r.disabled,
        created_at: r.created_at,
    }
}

/// Lists users (system administrators only).
#[utoipa::path(get, operation_id = "users_list", path = "/api/v1/users", tag = "users", params(Page),
    responses((status = 200, body = [User]), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn list(
    State(state): State<ApiState>,
    caller: ApiCaller,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<(HeaderMap, Json<Vec<User>>)> {
    caller.require_admin()?;
    let all: Vec<User> = state
        .auth
        .users()
        .await?
        .into_iter()
        .map(|(n, r)| view(n, r))
        .collect();
    let (headers, items) = page.apply(all, "/api/v1/users");
    Ok((headers, Json(items)))
}

/// Creates a user (system administrators only).
#[utoipa::path(post, operation_id = "users_create", path = "/api/v1/users", tag = "users", request_body = NewUser,
    responses((status = 201, body = User), (status = 400, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem)))]
pub async fn create(
    State(state): State<ApiState>,
    caller: ApiCaller,
    ApiJson(new): ApiJson<NewUser>,
) -> ApiResult<(StatusCode, Json<User>)> {
    caller.require_admin()?;
    let name = new.username.clone();
    let record = state
        .auth
        .create_user(&new.username, &new.password, new.admin)
        .await?;
    caller.audit(&state, "user.create", &name, None).await;
    Ok((StatusCode::CREATED, Json(view(name, record))))
}

/// The calling user.
#[utoipa::path(get, operation_id = "users_current", path = "/api/v1/users/current", tag = "users", responses((status = 200, body = User), (status = 401, body = Problem)))]
pub async fn current(State(state): State<ApiState>, caller: ApiCaller) -> ApiResult<Json<User>> {
    let name = caller.principal.name().to_owned();
    let record = state.auth.user(&name).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "{name} is not a user account (robots have no user record)"
        ))
    })?;
    Ok(Json(view(name, record)))
}

/// One user (system administrators, or the user themself).
#[utoipa::path(get, operation_id = "users_get", path = "/api/v1/users/{username}", tag = "users", params(("username" = String, Path)),
    responses((status = 200, body = User), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(username): Path<String>,
) -> ApiResult<Json<User>> {
    if caller.principal.name() != username {
        caller.require_admin()?;
    }
    let record = state
        .auth
        .user(&username)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no user {username}")))?;
    Ok(Json(view(username, record)))
}

/// Grants or withdraws administration, disables or enables (system administrators only).
#[utoipa::path(patch, operation_id = "users_update", path = "/api/v1/users/{username}", tag = "users", params(("username" = String, Path)), request_body = UserUpdate,
    responses((status = 200, body = User), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn update(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(username): Path<String>,
    ApiJson(update): ApiJson<UserUpdate>,
) -> ApiResult<Json<User>> {
    caller.require_admin()?;
    if username == caller.principal.name()
        && (update.admin == Some(false) || update.disabled == Some(true))
    {
        return Err(ApiError::conflict(
            "you cannot disable yourself or drop your own administration; ask another administrator",
        ));
    }
    let record = state
        .auth
        .update_user(&username, update.admin, update.disabled)
        .await?;
    caller.audit(&state, "user.update", &username, None).await;
    Ok(Json(view(username, record)))
}

/// Deletes a user and their memberships (system administrators only).
#[utoipa::path(delete, operation_id = "users_delete", path = "/api/v1/users/{username}", tag = "users", params(("username" = String, Path)),
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn delete(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(username): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    if username == caller.principal.name() {
        return Err(ApiError::conflict("you cannot delete yourself"));
    }
    state.auth.delete_user(&username).await?;
    caller.audit(&state, "user.delete", &username, None).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Changes a password: one's own (with the old one) or anyone's (system administrators).
/// Refresh tokens issued before stop working.
#[utoipa::path(put, operation_id = "users_change_password", path = "/api/v1/users/{username}/password", tag = "users", params(("username" = String, Path)), request_body = PasswordChange,
    responses((status = 204), (status = 400, body = Problem), (status = 403, body = Problem)))]
pub async fn change_password(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(username): Path<String>,
    ApiJson(change): ApiJson<PasswordChange>,
) -> ApiResult<StatusCode> {
    let own = caller.principal.name() == username;
    if !own {
        caller.require_admin()?;
    }
    let old = if own {
        Some(change.old_password.as_deref().ok_or_else(|| {
            ApiError::forbidden("changing your own password needs the old one (old_password)")
        })?)
    } else {
        None
    };
    state
        .auth
        .change_password(&username, old, &change.new_password)
        .await?;
    caller.audit(&state, "user.password", &username, None).await;
    Ok(StatusCode::NO_CONTENT)
}
