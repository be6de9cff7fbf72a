//! `/api/v1/replication/…`: endpoints, policies, jobs and the engine's status. System
//! administrators only: replication reads and writes every project.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Deserializer};

use super::ApiState;
use super::caller::ApiCaller;
use super::extract::{ApiJson, ApiQuery};
use super::problem::{ApiError, ApiResult, Problem};
use crate::replication::delegate::{TransferRequest, TransferState};
use crate::replication::metadata::MetadataState;
use crate::replication::{ReplicationError, Status};

impl From<ReplicationError> for ApiError {
    fn from(e: ReplicationError) -> ApiError {
        match e {
            ReplicationError::Invalid(d) => ApiError::bad_request(d),
            ReplicationError::NotFound(d) => ApiError::not_found(d),
            ReplicationError::Conflict(d) => ApiError::conflict(d),
            ReplicationError::Store(e) => e.into(),
        }
    }
}

/// `Some(v)` for a present field (`v` may be `None` for JSON null); an absent field stays
/// `None` through `#[serde(default)]`. Lets a PATCH tell "clear" from "leave alone".
fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

mod endpoint;
mod job;
mod policy;

pub use endpoint::*;
pub use job::*;
pub use policy::*;

/// Runs a transfer for another instance (a hop of its tree): sends an artifact this
/// instance holds to the destination the request names, with the token it carries.
#[utoipa::path(post, operation_id = "replication_transfers_start", path = "/api/v1/replication/transfers", tag = "replication", request_body = TransferRequest,
    responses((status = 202, body = TransferState), (status = 400, body = Problem), (status = 403, body = Problem), (status = 415, body = Problem)))]
pub async fn start_transfer(
    State(state): State<ApiState>,
    caller: ApiCaller,
    ApiJson(request): ApiJson<TransferRequest>,
) -> ApiResult<(StatusCode, Json<TransferState>)> {
    caller.require_admin()?;
    let detail = format!("to {} {}", request.target.url, request.destination);
    let resource = format!("{}:{}", request.repository, request.reference);
    let started = state.replication.start_transfer(request).await?;
    caller
        .audit(&state, "replication.transfer", &resource, Some(detail))
        .await;
    Ok((StatusCode::ACCEPTED, Json(started)))
}

/// `GET …/transfers/{id}` options.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TransferWait {
    /// Wait up to this many milliseconds (at most 60000) for the transfer to end.
    pub wait_ms: Option<u64>,
}

/// A transfer this instance runs for another; with `wait_ms`, answered when it ends (or
/// when the wait is over).
#[utoipa::path(get, operation_id = "replication_transfers_get", path = "/api/v1/replication/transfers/{id}", tag = "replication", params(("id" = String, Path), TransferWait),
    responses((status = 200, body = TransferState), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn get_transfer(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(id): Path<String>,
    ApiQuery(wait): ApiQuery<TransferWait>,
) -> ApiResult<Json<TransferState>> {
    caller.require_admin()?;
    let wait = wait.wait_ms.map(std::time::Duration::from_millis);
    Ok(Json(state.replication.transfer(&id, wait).await?))
}

/// A dual-primary peer's metadata round: merges the peer's versioned users, projects,
/// members, robots and replication settings, and answers with this instance's.
#[utoipa::path(post, operation_id = "replication_metadata_exchange", path = "/api/v1/replication/metadata", tag = "replication", request_body = MetadataState,
    responses((status = 200, body = MetadataState), (status = 400, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem), (status = 415, body = Problem)))]
pub async fn exchange_metadata(
    State(state): State<ApiState>,
    caller: ApiCaller,
    ApiJson(incoming): ApiJson<MetadataState>,
) -> ApiResult<Json<MetadataState>> {
    caller.require_admin()?;
    let (replication, who) = (
        state.replication.clone(),
        caller.principal.name().to_string(),
    );
    let answer =
        tokio::task::spawn_blocking(move || replication.metadata_round(incoming, &who)).await??;
    Ok(Json(answer))
}

/// The engine's state: per policy, what is queued and not yet delivered.
#[utoipa::path(get, operation_id = "replication_status", path = "/api/v1/replication/status", tag = "replication",
    responses((status = 200, body = Status), (status = 403, body = Problem)))]
pub async fn status(State(state): State<ApiState>, caller: ApiCaller) -> ApiResult<Json<Status>> {
    caller.require_admin()?;
    Ok(Json(state.replication.status()?))
}
