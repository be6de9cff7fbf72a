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
use crate::auth::{members, passwords, users};
use crate::storage::meta::now_millis;

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

fn view(name: String, r: users::UserRecord) -> User {
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
    let all: Vec<User> = users::list(&state.auth.meta().read()?)?
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
    let meta = state.auth.meta().clone();
    let name = new.username.clone();
    let record = tokio::task::spawn_blocking(move || {
        meta.write(|tx| users::insert(tx, &new.username, &new.password, new.admin))
    })
    .await??;
    caller.audit(&state, "user.create", &name, None).await;
    Ok((StatusCode::CREATED, Json(view(name, record))))
}

/// The calling user.
#[utoipa::path(get, operation_id = "users_current", path = "/api/v1/users/current", tag = "users", responses((status = 200, body = User), (status = 401, body = Problem)))]
pub async fn current(State(state): State<ApiState>, caller: ApiCaller) -> ApiResult<Json<User>> {
    let name = caller.principal.name().to_owned();
    let record = users::get(&state.auth.meta().read()?, &name)?.ok_or_else(|| {
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
    let record = users::get(&state.auth.meta().read()?, &username)?
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
        .meta()
        .write(|tx| -> ApiResult<users::UserRecord> {
            let mut r = users::get(tx, &username)?
                .ok_or_else(|| ApiError::not_found(format!("no user {username}")))?;
            if let Some(admin) = update.admin {
                r.admin = admin;
            }
            if let Some(disabled) = update.disabled {
                r.disabled = disabled;
            }
            users::put(tx, &username, &r)?;
            Ok(r)
        })?;
    state.auth.invalidate_cached_logins();
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
    let found = state.auth.meta().write(|tx| -> ApiResult<bool> {
        members::remove_user(tx, &username)?;
        Ok(users::remove(tx, &username)?)
    })?;
    if !found {
        return Err(ApiError::not_found(format!("no user {username}")));
    }
    state.auth.invalidate_cached_logins();
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
    passwords::check_policy(&change.new_password).map_err(ApiError::bad_request)?;
    let meta = state.auth.meta().clone();
    let user = username.clone();
    tokio::task::spawn_blocking(move || {
        meta.write(|tx| -> ApiResult<()> {
            let mut r = users::get(tx, &user)?
                .ok_or_else(|| ApiError::not_found(format!("no user {user}")))?;
            if own
                && !change
                    .old_password
                    .as_deref()
                    .is_some_and(|old| passwords::verify(old, &r.password_hash))
            {
                return Err(ApiError::forbidden("the old password is wrong"));
            }
            r.password_hash = passwords::hash(&change.new_password);
            r.password_changed_at = now_millis();
            users::put(tx, &user, &r)?;
            Ok(())
        })
    })
    .await??;
    state.auth.invalidate_cached_logins();
    caller.audit(&state, "user.password", &username, None).await;
    Ok(StatusCode::NO_CONTENT)
}
