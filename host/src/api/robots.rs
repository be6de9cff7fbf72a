//! `/api/v1/robots`: robot accounts for CI. The secret is returned once, at creation.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiState;
use super::caller::ApiCaller;
use super::extract::ApiJson;
use super::problem::{ApiError, ApiResult, Problem};
use crate::auth::principal::RobotGrant;
use crate::auth::{Action, passwords, robots};
use crate::storage::store::now_millis;

/// A robot account as the API shows it (never the secret's digest).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Robot {
    /// `robot$<name>`: the username for `docker login`.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// What it may do, per project.
    pub permissions: Vec<RobotGrant>,
    /// When it stops working (ms since the epoch), if ever.
    pub expires_at: Option<u64>,
    /// Revoked.
    pub disabled: bool,
    /// Who created it.
    pub created_by: String,
    /// When (ms since the epoch).
    pub created_at: u64,
}

/// `POST /api/v1/robots`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRobot {
    /// Short name; the account is `robot$<name>`.
    pub name: String,
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// What it may do, per project: actions among pull, push, delete.
    pub permissions: Vec<RobotGrant>,
    /// Days until it expires; absent for never.
    pub expires_in_days: Option<u64>,
}

/// The answer to a creation: the account, and its secret, shown this once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedRobot {
    /// The account.
    #[serde(flatten)]
    pub robot: Robot,
    /// The secret (the password for `docker login`). It is not stored and cannot be shown again.
    pub secret: String,
}

/// `PATCH /api/v1/robots/{name}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RobotUpdate {
    /// Revoke (true) or restore (false).
    pub disabled: Option<bool>,
}

fn view(name: String, r: robots::RobotRecord) -> Robot {
    Robot {
        name,
        description: r.description,
        permissions: r.grants,
        expires_at: r.expires_at,
        disabled: r.disabled,
        created_by: r.created_by,
        created_at: r.created_at,
    }
}

/// A caller may manage a robot if it may manage robots in every project the robot reaches.
fn require_manage(state: &ApiState, caller: &ApiCaller, grants: &[RobotGrant]) -> ApiResult<()> {
    if grants.is_empty() && !caller.principal.is_admin() {
        return Err(ApiError::forbidden(
            "only system administrators manage robots without project permissions",
        ));
    }
    for g in grants {
        caller.require(&state.auth, &g.project, Action::ManageRobots)?;
    }
    Ok(())
}

/// Lists the robots the caller may manage.
#[utoipa::path(get, operation_id = "robots_list", path = "/api/v1/robots", tag = "robots", responses((status = 200, body = [Robot]), (status = 401, body = Problem)))]
pub async fn list(State(state): State<ApiState>, caller: ApiCaller) -> ApiResult<Json<Vec<Robot>>> {
    let all = state.auth.robots().await?;
    Ok(Json(
        all.into_iter()
            .filter(|(_, r)| require_manage(&state, &caller, &r.grants).is_ok())
            .map(|(n, r)| view(n, r))
            .collect(),
    ))
}

/// Creates a robot; the caller must manage robots in every project it names.
#[utoipa::path(post, operation_id = "robots_create", path = "/api/v1/robots", tag = "robots", request_body = NewRobot,
    responses((status = 201, body = CreatedRobot), (status = 400, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem)))]
pub async fn create(
    State(state): State<ApiState>,
    caller: ApiCaller,
    ApiJson(new): ApiJson<NewRobot>,
) -> ApiResult<(StatusCode, Json<CreatedRobot>)> {
    let name = robots::full_name(&new.name)?;
    for g in &new.permissions {
        if g.actions.is_empty() || g.actions.iter().any(|a| !a.robot_grantable()) {
            return Err(ApiError::bad_request(format!(
                "robot permissions in {} must be among pull, push, delete, read_machines, operate_machines and manage_machines",
                g.project
            )));
        }
    }
    require_manage(&state, &caller, &new.permissions)?;
    let secret = passwords::random_secret();
    let record = robots::RobotRecord {
        secret_digest: passwords::secret_digest(&secret),
        description: new.description,
        grants: new.permissions,
        expires_at: new.expires_in_days.map(|d| now_millis() + d * 86_400_000),
        disabled: false,
        created_by: caller.principal.name().to_owned(),
        created_at: now_millis(),
    };
    state.auth.create_robot(&name, &record).await?;
    caller.audit(&state, "robot.create", &name, None).await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedRobot {
            robot: view(name, record),
            secret,
        }),
    ))
}

async fn load(state: &ApiState, caller: &ApiCaller, name: &str) -> ApiResult<robots::RobotRecord> {
    let record = state
        .auth
        .robot(name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no robot account {name}")))?;
    require_manage(state, caller, &record.grants)
        .map_err(|_| ApiError::not_found(format!("no robot account {name}")))?;
    Ok(record)
}

/// One robot.
#[utoipa::path(get, operation_id = "robots_get", path = "/api/v1/robots/{name}", tag = "robots", params(("name" = String, Path)),
    responses((status = 200, body = Robot), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> ApiResult<Json<Robot>> {
    let record = load(&state, &caller, &name).await?;
    Ok(Json(view(name, record)))
}

/// Revokes or restores a robot.
#[utoipa::path(patch, operation_id = "robots_update", path = "/api/v1/robots/{name}", tag = "robots", params(("name" = String, Path)), request_body = RobotUpdate,
    responses((status = 200, body = Robot), (status = 404, body = Problem)))]
pub async fn update(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
    ApiJson(update): ApiJson<RobotUpdate>,
) -> ApiResult<Json<Robot>> {
    let mut record = load(&state, &caller, &name).await?;
    if let Some(disabled) = update.disabled {
        record = state.auth.set_robot_disabled(&name, disabled).await?;
    }
    caller.audit(&state, "robot.update", &name, None).await;
    Ok(Json(view(name, record)))
}

/// Deletes (revokes for good) a robot.
#[utoipa::path(delete, operation_id = "robots_delete", path = "/api/v1/robots/{name}", tag = "robots", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn delete(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    load(&state, &caller, &name).await?;
    state.auth.delete_robot(&name).await?;
    caller.audit(&state, "robot.delete", &name, None).await;
    Ok(StatusCode::NO_CONTENT)
}
