//! `/api/v1/replication/policies`: what is replicated where, how and when, and runs.

use crate::api::ApiState;
use crate::api::caller::ApiCaller;
use crate::api::extract::ApiJson;
use crate::api::problem::{ApiResult, Problem};
use crate::replication::policies::{self, Delivery, Filters, Mode, PolicyRecord, TopologySpec};
use crate::storage::store::now_millis;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::*;

/// A policy as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PolicyView {
    /// Its name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// A disabled policy runs on no trigger.
    pub enabled: bool,
    /// `push` or `pull`.
    pub mode: Mode,
    /// Push: where to send. Pull: the one source.
    pub endpoints: Vec<String>,
    /// Project, repository and tag globs.
    pub filters: Filters,
    /// Replaces the project on the destination.
    pub destination_namespace: Option<String>,
    /// Cron schedule (UTC).
    pub schedule: Option<String>,
    /// Runs on pushes, tag moves and deletes.
    pub on_change: bool,
    /// Carries deletes.
    pub replicate_deletions: bool,
    /// Moves destination tags that point elsewhere.
    pub override_existing: bool,
    /// Transfers of one job at once.
    pub concurrency: u32,
    /// Bytes per second cap, in megabits per second.
    pub bandwidth_limit_mbps: Option<u32>,
    /// Keeps users, projects, members, robots and replication settings converged with
    /// the endpoints (a dual-primary pair).
    pub metadata: bool,
    /// `async` or `sync`.
    pub delivery: Delivery,
    /// Sync: seconds a destination may be unreachable before pushes stop waiting.
    pub degrade_after_secs: u64,
    /// The strategy plugin.
    pub strategy: String,
    /// The topology it plans over.
    pub topology: Option<TopologySpec>,
    /// Who created it.
    pub created_by: String,
    /// When.
    pub created_at: u64,
    /// When it last changed.
    pub updated_at: u64,
}

impl From<PolicyRecord> for PolicyView {
    fn from(p: PolicyRecord) -> PolicyView {
        PolicyView {
            name: p.name,
            description: p.description,
            enabled: p.enabled,
            mode: p.mode,
            endpoints: p.endpoints,
            filters: p.filters,
            destination_namespace: p.destination_namespace,
            schedule: p.schedule,
            on_change: p.on_change,
            replicate_deletions: p.replicate_deletions,
            override_existing: p.override_existing,
            concurrency: p.concurrency,
            bandwidth_limit_mbps: p.bandwidth_limit_mbps,
            metadata: p.metadata,
            delivery: p.delivery,
            degrade_after_secs: p.degrade_after_secs,
            strategy: p.strategy,
            topology: p.topology,
            created_by: p.created_by,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// `POST /api/v1/replication/policies`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPolicy {
    /// Lowercase letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `push` (default) or `pull`.
    #[serde(default = "push")]
    pub mode: Mode,
    /// Push: where to send. Pull: the one source.
    pub endpoints: Vec<String>,
    /// Project, repository and tag globs.
    #[serde(default)]
    pub filters: Filters,
    /// Replaces the project on the destination.
    pub destination_namespace: Option<String>,
    /// Cron schedule (UTC), 5 or 6 fields.
    pub schedule: Option<String>,
    /// Run on pushes, tag moves (and deletes, with `replicate_deletions`). Push only.
    #[serde(default)]
    pub on_change: bool,
    /// Carry deletes.
    #[serde(default)]
    pub replicate_deletions: bool,
    /// Move destination tags that point elsewhere (default true).
    #[serde(default = "yes")]
    pub override_existing: bool,
    /// Transfers of one job at once (default 4).
    #[serde(default = "concurrency")]
    pub concurrency: u32,
    /// Bytes per second cap, in megabits per second.
    pub bandwidth_limit_mbps: Option<u32>,
    /// Keep users, projects, members, robots and replication settings converged with the
    /// endpoints (berths): for a dual-primary pair.
    #[serde(default)]
    pub metadata: bool,
    /// `async` (default): acknowledge pushes at once. `sync`: once every destination has
    /// them.
    #[serde(default)]
    pub delivery: Delivery,
    /// Sync: seconds a destination may be unreachable before pushes stop waiting for it
    /// (default 30).
    #[serde(default = "degrade_after")]
    pub degrade_after_secs: u64,
    /// The strategy plugin (default `star`).
    #[serde(default = "strategy")]
    pub strategy: String,
    /// The topology it plans over (default: this instance and the endpoints).
    pub topology: Option<TopologySpec>,
}

fn yes() -> bool {
    true
}
fn push() -> Mode {
    Mode::Push
}
fn concurrency() -> u32 {
    policies::DEFAULT_CONCURRENCY
}
fn degrade_after() -> u64 {
    policies::DEFAULT_DEGRADE_AFTER_SECS
}
fn strategy() -> String {
    policies::DEFAULT_STRATEGY.to_string()
}

/// `PATCH /api/v1/replication/policies/{name}`: absent fields stay; `null` clears the
/// optional ones.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyUpdate {
    /// Free text.
    pub description: Option<String>,
    /// Enable or disable.
    pub enabled: Option<bool>,
    /// `push` or `pull`.
    pub mode: Option<Mode>,
    /// The endpoints.
    pub endpoints: Option<Vec<String>>,
    /// Filters (replaced whole).
    pub filters: Option<Filters>,
    /// Destination namespace.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub destination_namespace: Option<Option<String>>,
    /// Cron schedule.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub schedule: Option<Option<String>>,
    /// Follow changes.
    pub on_change: Option<bool>,
    /// Carry deletes.
    pub replicate_deletions: Option<bool>,
    /// Move destination tags.
    pub override_existing: Option<bool>,
    /// Transfers at once.
    pub concurrency: Option<u32>,
    /// Bandwidth cap.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>)]
    pub bandwidth_limit_mbps: Option<Option<u32>>,
    /// Metadata convergence.
    pub metadata: Option<bool>,
    /// `async` or `sync`.
    pub delivery: Option<Delivery>,
    /// Sync: seconds before degrading.
    pub degrade_after_secs: Option<u64>,
    /// The strategy plugin.
    pub strategy: Option<String>,
    /// The topology.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<TopologySpec>)]
    pub topology: Option<Option<TopologySpec>>,
}

/// Lists the policies.
#[utoipa::path(get, operation_id = "replication_policies_list", path = "/api/v1/replication/policies", tag = "replication",
    responses((status = 200, body = [PolicyView]), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn list_policies(
    State(state): State<ApiState>,
    caller: ApiCaller,
) -> ApiResult<Json<Vec<PolicyView>>> {
    caller.require_admin()?;
    let list = state.replication.policies()?;
    Ok(Json(list.into_iter().map(PolicyView::from).collect()))
}

/// Creates a policy.
#[utoipa::path(post, operation_id = "replication_policies_create", path = "/api/v1/replication/policies", tag = "replication", request_body = NewPolicy,
    responses((status = 201, body = PolicyView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem), (status = 415, body = Problem)))]
pub async fn create_policy(
    State(state): State<ApiState>,
    caller: ApiCaller,
    ApiJson(new): ApiJson<NewPolicy>,
) -> ApiResult<(StatusCode, Json<PolicyView>)> {
    caller.require_admin()?;
    let now = now_millis();
    let record = PolicyRecord {
        name: new.name.clone(),
        description: new.description,
        enabled: new.enabled,
        mode: new.mode,
        endpoints: new.endpoints,
        filters: new.filters,
        destination_namespace: new.destination_namespace,
        schedule: new.schedule,
        on_change: new.on_change,
        replicate_deletions: new.replicate_deletions,
        override_existing: new.override_existing,
        concurrency: new.concurrency,
        bandwidth_limit_mbps: new.bandwidth_limit_mbps,
        metadata: new.metadata,
        delivery: new.delivery,
        degrade_after_secs: new.degrade_after_secs,
        strategy: new.strategy,
        topology: new.topology,
        created_by: caller.principal.name().to_string(),
        created_at: now,
        updated_at: now,
    };
    let record = state.replication.create_policy(record).await?;
    caller
        .audit(&state, "replication.policy.create", &new.name, None)
        .await;
    Ok((StatusCode::CREATED, Json(record.into())))
}

/// One policy.
#[utoipa::path(get, operation_id = "replication_policies_get", path = "/api/v1/replication/policies/{name}", tag = "replication", params(("name" = String, Path)),
    responses((status = 200, body = PolicyView), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn get_policy(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> ApiResult<Json<PolicyView>> {
    caller.require_admin()?;
    Ok(Json(state.replication.policy(&name)?.into()))
}

/// Changes a policy.
#[utoipa::path(patch, operation_id = "replication_policies_update", path = "/api/v1/replication/policies/{name}", tag = "replication", params(("name" = String, Path)), request_body = PolicyUpdate,
    responses((status = 200, body = PolicyView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 415, body = Problem)))]
pub async fn update_policy(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
    ApiJson(u): ApiJson<PolicyUpdate>,
) -> ApiResult<Json<PolicyView>> {
    caller.require_admin()?;
    let record = state
        .replication
        .update_policy(&name, |p| {
            if let Some(v) = u.description {
                p.description = v;
            }
            if let Some(v) = u.enabled {
                p.enabled = v;
            }
            if let Some(v) = u.mode {
                p.mode = v;
            }
            if let Some(v) = u.endpoints {
                p.endpoints = v;
            }
            if let Some(v) = u.filters {
                p.filters = v;
            }
            if let Some(v) = u.destination_namespace {
                p.destination_namespace = v;
            }
            if let Some(v) = u.schedule {
                p.schedule = v;
            }
            if let Some(v) = u.on_change {
                p.on_change = v;
            }
            if let Some(v) = u.replicate_deletions {
                p.replicate_deletions = v;
            }
            if let Some(v) = u.override_existing {
                p.override_existing = v;
            }
            if let Some(v) = u.concurrency {
                p.concurrency = v;
            }
            if let Some(v) = u.bandwidth_limit_mbps {
                p.bandwidth_limit_mbps = v;
            }
            if let Some(v) = u.metadata {
                p.metadata = v;
            }
            if let Some(v) = u.delivery {
                p.delivery = v;
            }
            if let Some(v) = u.degrade_after_secs {
                p.degrade_after_secs = v;
            }
            if let Some(v) = u.strategy {
                p.strategy = v;
            }
            if let Some(v) = u.topology {
                p.topology = v;
            }
        })
        .await?;
    caller
        .audit(&state, "replication.policy.update", &name, None)
        .await;
    Ok(Json(record.into()))
}

/// Deletes a policy, cancelling its unfinished jobs.
#[utoipa::path(delete, operation_id = "replication_policies_delete", path = "/api/v1/replication/policies/{name}", tag = "replication", params(("name" = String, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn delete_policy(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    state.replication.delete_policy(&name)?;
    caller
        .audit(&state, "replication.policy.delete", &name, None)
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Queues a full run of a policy; answers with the queued job.
#[utoipa::path(post, operation_id = "replication_policies_run", path = "/api/v1/replication/policies/{name}/run", tag = "replication", params(("name" = String, Path)),
    responses((status = 202, body = JobView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn run_policy(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> ApiResult<(StatusCode, Json<JobView>)> {
    caller.require_admin()?;
    let job = state.replication.run(&name, caller.principal.name())?;
    caller
        .audit(
            &state,
            "replication.run",
            &name,
            Some(format!("job {}", job.id)),
        )
        .await;
    Ok((StatusCode::ACCEPTED, Json(job.into())))
}

// ---- jobs ----
