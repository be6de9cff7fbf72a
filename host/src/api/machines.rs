//! `/api/v1/machines`: a project's machines — create, list, show, online, offline, stop,
//! start, retire, history. Who may do what is the permission matrix's (`auth::access`):
//! project admins create and retire, developers take machines online and offline and
//! stop and start them, guests read.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::ApiState;
use super::caller::ApiCaller;
use super::extract::{ApiJson, ApiQuery};
use super::problem::{ApiError, ApiResult, Problem};
use crate::auth::Action;
use crate::scheduling::machines::{MachineView, NewMachine, RegisterMachine};
use crate::scheduling::placement::{Placed, PlacementRequest, Plan};
use crate::scheduling::{MachineFilter, MachineState, TransitionRecord};

/// `GET /api/v1/machines` filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MachineQuery {
    /// The project (required unless a system administrator asks).
    pub project: Option<String>,
    /// Only in this cluster.
    pub cluster: Option<String>,
    /// Only in this state.
    pub state: Option<MachineState>,
}

/// `POST /api/v1/machines/{id}/offline` options.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Offline {
    /// Go offline at once instead of draining for `scheduling.drain_secs`.
    #[serde(default)]
    pub force: bool,
    /// Why, for the history.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /api/v1/machines/{id}/stop` options.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Stop {
    /// Why, for the history.
    #[serde(default)]
    pub reason: Option<String>,
}

/// The machine `id` if the caller may do `action` in its project (a machine of a project
/// the caller cannot see is not found).
async fn machine_for(
    state: &ApiState,
    caller: &ApiCaller,
    id: &str,
    action: Action,
) -> ApiResult<MachineView> {
    let machine = state.scheduling.machine(id).await?;
    caller
        .require(&state.auth, &machine.project, action)
        .map_err(|e| {
            if e.status() == StatusCode::NOT_FOUND {
                ApiError::not_found(format!("no machine {id}"))
            } else {
                e
            }
        })?;
    Ok(machine)
}

/// `202` for a machine just recorded (its job runs next), `200` for one its client token
/// had made already.
fn accepted_or_found(created: bool) -> StatusCode {
    if created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    }
}

/// Creates a machine in a project (project admins): recorded at once as `requested`,
/// then created by a job. The same `client_token` again answers with the same machine
/// (`200` instead of `202`).
#[utoipa::path(post, operation_id = "machines_create", path = "/api/v1/machines", tag = "machines", request_body = NewMachine,
    responses((status = 202, body = MachineView), (status = 200, body = MachineView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 415, body = Problem)))]
pub async fn create_machine(
    State(state): State<ApiState>,
    caller: ApiCaller,
    ApiJson(new): ApiJson<NewMachine>,
) -> ApiResult<(StatusCode, Json<MachineView>)> {
    caller.require(&state.auth, &new.project, Action::ManageMachines)?;
    let (machine, created) = state
        .scheduling
        .create_machine(new, caller.principal.name())
        .await?;
    if created {
        caller
            .audit(
                &state,
                "machine.create",
                &machine.id,
                Some(format!("{} in {}", machine.project, machine.cluster)),
            )
            .await;
    }
    Ok((accepted_or_found(created), Json(machine)))
}

/// The plan for placing machines across the clusters a project may use, creating nothing
/// (project admins): which cluster, region, zone, type or host each would get, and at
/// what price.
#[utoipa::path(post, operation_id = "machines_plan", path = "/api/v1/machines/plan", tag = "machines", request_body = PlacementRequest,
    responses((status = 200, body = Plan), (status = 400, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem), (status = 415, body = Problem), (status = 502, body = Problem)))]
pub async fn plan_machines(
    State(state): State<ApiState>,
    caller: ApiCaller,
    ApiJson(request): ApiJson<PlacementRequest>,
) -> ApiResult<Json<Plan>> {
    caller.require(&state.auth, &request.project, Action::ManageMachines)?;
    Ok(Json(state.scheduling.plan(&request).await?))
}

/// Places `count` machines by the plan's policy and creates them (project admins).
#[utoipa::path(post, operation_id = "machines_place", path = "/api/v1/machines/place", tag = "machines", request_body = PlacementRequest,
    responses((status = 202, body = Placed), (status = 400, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem), (status = 415, body = Problem), (status = 502, body = Problem)))]
pub async fn place_machines(
    State(state): State<ApiState>,
    caller: ApiCaller,
    ApiJson(request): ApiJson<PlacementRequest>,
) -> ApiResult<(StatusCode, Json<Placed>)> {
    caller.require(&state.auth, &request.project, Action::ManageMachines)?;
    let placed = state
        .scheduling
        .place(&request, caller.principal.name())
        .await?;
    for machine in &placed.machines {
        caller
            .audit(
                &state,
                "machine.create",
                &machine.id,
                Some(format!("{} in {}", machine.project, machine.cluster)),
            )
            .await;
    }
    Ok((StatusCode::ACCEPTED, Json(placed)))
}

/// Registers a physical host that already runs as a machine of a project (project
/// admins): recorded with the host's size, within the quota, online once it answers.
#[utoipa::path(post, operation_id = "machines_register", path = "/api/v1/machines/register", tag = "machines", request_body = RegisterMachine,
    responses((status = 202, body = MachineView), (status = 200, body = MachineView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 415, body = Problem)))]
pub async fn register_machine(
    State(state): State<ApiState>,
    caller: ApiCaller,
    ApiJson(register): ApiJson<RegisterMachine>,
) -> ApiResult<(StatusCode, Json<MachineView>)> {
    caller.require(&state.auth, &register.project, Action::ManageMachines)?;
    let host = register.host.clone();
    let (machine, created) = state
        .scheduling
        .register_machine(register, caller.principal.name())
        .await?;
    if created {
        caller
            .audit(
                &state,
                "machine.register",
                &machine.id,
                Some(format!("host {host} in {}", machine.cluster)),
            )
            .await;
    }
    Ok((accepted_or_found(created), Json(machine)))
}

/// Lists machines: a project's (whoever may read its machines), or all (system
/// administrators).
#[utoipa::path(get, operation_id = "machines_list", path = "/api/v1/machines", tag = "machines", params(MachineQuery),
    responses((status = 200, body = [MachineView]), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn list_machines(
    State(state): State<ApiState>,
    caller: ApiCaller,
    ApiQuery(query): ApiQuery<MachineQuery>,
) -> ApiResult<Json<Vec<MachineView>>> {
    match &query.project {
        Some(project) => {
            caller.require(&state.auth, project, Action::ReadMachines)?;
        }
        None => caller
            .require_admin()
            .map_err(|_| ApiError::bad_request("name the project: ?project=NAME"))?,
    }
    let filter = MachineFilter {
        project: query.project,
        cluster: query.cluster,
        states: query.state.into_iter().collect(),
    };
    Ok(Json(state.scheduling.machines(filter).await?))
}

/// One machine (whoever may read its project's machines).
#[utoipa::path(get, operation_id = "machines_get", path = "/api/v1/machines/{id}", tag = "machines", params(("id" = String, Path)),
    responses((status = 200, body = MachineView), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn get_machine(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(id): Path<String>,
) -> ApiResult<Json<MachineView>> {
    Ok(Json(
        machine_for(&state, &caller, &id, Action::ReadMachines).await?,
    ))
}

/// A machine's history: every move, with who, why and when.
#[utoipa::path(get, operation_id = "machines_history", path = "/api/v1/machines/{id}/history", tag = "machines", params(("id" = String, Path)),
    responses((status = 200, body = [TransitionRecord]), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn machine_history(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<TransitionRecord>>> {
    machine_for(&state, &caller, &id, Action::ReadMachines).await?;
    Ok(Json(state.scheduling.history(&id).await?))
}

/// Takes a machine offline: it drains, or with `force` goes offline at once (developers).
#[utoipa::path(post, operation_id = "machines_offline", path = "/api/v1/machines/{id}/offline", tag = "machines", params(("id" = String, Path)), request_body = Offline,
    responses((status = 200, body = MachineView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 415, body = Problem)))]
pub async fn offline_machine(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(id): Path<String>,
    ApiJson(offline): ApiJson<Offline>,
) -> ApiResult<Json<MachineView>> {
    machine_for(&state, &caller, &id, Action::OperateMachines).await?;
    let moved = state
        .scheduling
        .offline(&id, offline.force, caller.principal.name(), offline.reason)
        .await?;
    caller
        .audit(
            &state,
            "machine.offline",
            &id,
            Some(moved.state.as_str().to_owned()),
        )
        .await;
    Ok(Json(moved))
}

/// Puts a machine back online (developers).
#[utoipa::path(post, operation_id = "machines_online", path = "/api/v1/machines/{id}/online", tag = "machines", params(("id" = String, Path)),
    responses((status = 200, body = MachineView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn online_machine(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(id): Path<String>,
) -> ApiResult<Json<MachineView>> {
    machine_for(&state, &caller, &id, Action::OperateMachines).await?;
    let moved = state
        .scheduling
        .online(&id, caller.principal.name())
        .await?;
    caller.audit(&state, "machine.online", &id, None).await;
    Ok(Json(moved))
}

/// Stops a machine (developers): it goes `stopping` at once and a job switches it off at
/// its provider (or its pool host's BMC); a stopped cloud machine costs its disk price
/// only. Stopping one that is stopping or stopped answers it as it is.
#[utoipa::path(post, operation_id = "machines_stop", path = "/api/v1/machines/{id}/stop", tag = "machines", params(("id" = String, Path)), request_body = Stop,
    responses((status = 202, body = MachineView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 415, body = Problem)))]
pub async fn stop_machine(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(id): Path<String>,
    ApiJson(stop): ApiJson<Stop>,
) -> ApiResult<(StatusCode, Json<MachineView>)> {
    machine_for(&state, &caller, &id, Action::OperateMachines).await?;
    let stopping = state
        .scheduling
        .stop(&id, caller.principal.name(), stop.reason)
        .await?;
    caller.audit(&state, "machine.stop", &id, None).await;
    Ok((StatusCode::ACCEPTED, Json(stopping)))
}

/// Starts a stopped machine (developers): it goes `starting`, and a job switches it on
/// and brings it online once it answers. Starting one that is starting or running
/// answers it as it is.
#[utoipa::path(post, operation_id = "machines_start", path = "/api/v1/machines/{id}/start", tag = "machines", params(("id" = String, Path)),
    responses((status = 202, body = MachineView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn start_machine(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<MachineView>)> {
    machine_for(&state, &caller, &id, Action::OperateMachines).await?;
    let starting = state
        .scheduling
        .start_machine(&id, caller.principal.name())
        .await?;
    caller.audit(&state, "machine.start", &id, None).await;
    Ok((StatusCode::ACCEPTED, Json(starting)))
}

/// Retires a machine (project admins); retiring one already retiring or retired answers
/// with it as it is.
#[utoipa::path(post, operation_id = "machines_retire", path = "/api/v1/machines/{id}/retire", tag = "machines", params(("id" = String, Path)),
    responses((status = 202, body = MachineView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn retire_machine(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<MachineView>)> {
    machine_for(&state, &caller, &id, Action::ManageMachines).await?;
    let retiring = state
        .scheduling
        .retire(&id, caller.principal.name())
        .await?;
    caller.audit(&state, "machine.retire", &id, None).await;
    Ok((StatusCode::ACCEPTED, Json(retiring)))
}
