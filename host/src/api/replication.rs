//! `/api/v1/replication/…`: endpoints, policies, jobs and the engine's status. System
//! administrators only: replication reads and writes every project.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::ApiState;
use super::caller::ApiCaller;
use super::extract::{ApiJson, ApiQuery};
use super::problem::{ApiError, ApiResult, Problem};
use crate::replication::delegate::{TransferRequest, TransferState};
use crate::replication::endpoints::{EndpointKind, EndpointRecord};
use crate::replication::jobs::{
    JobProgress, JobRecord, JobScope, JobStatus, PlanSummary, TaskCounts, TaskRecord, Trigger,
};
use crate::replication::metadata::MetadataState;
use crate::replication::policies::{self, Delivery, Filters, Mode, PolicyRecord, TopologySpec};
use crate::replication::{EndpointHealth, ReplicationError, Status};
use crate::storage::meta::now_millis;

impl From<ReplicationError> for ApiError {
    fn from(e: ReplicationError) -> ApiError {
        match e {
            ReplicationError::Invalid(d) => ApiError::bad_request(d),
            ReplicationError::NotFound(d) => ApiError::not_found(d),
            ReplicationError::Conflict(d) => ApiError::conflict(d),
            ReplicationError::Meta(e) => e.into(),
        }
    }
}

/// `Some(v)` for a present field (`v` may be `None` for JSON null); an absent field stays
/// `None` through `#[serde(default)]`. Lets a PATCH tell "clear" from "leave alone".
fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

// ---- endpoints ----

/// An endpoint as the API shows it: never its password.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EndpointView {
    /// Its name.
    pub name: String,
    /// `berth`, `distribution` or `oci`.
    pub kind: EndpointKind,
    /// `http(s)://host[:port]`.
    pub url: String,
    /// The account berth logs in as.
    pub username: Option<String>,
    /// Whether a password is stored (sealed).
    pub has_password: bool,
    /// TLS certificates are not verified.
    pub insecure: bool,
    /// Whether a CA certificate is set.
    pub has_ca_cert: bool,
    /// The instance name a berth endpoint reports (learnt when it answers).
    pub instance: Option<String>,
    /// Free text.
    pub description: String,
    /// Who created it.
    pub created_by: String,
    /// When (ms since the epoch).
    pub created_at: u64,
    /// When it last changed.
    pub updated_at: u64,
}

impl From<EndpointRecord> for EndpointView {
    fn from(r: EndpointRecord) -> EndpointView {
        EndpointView {
            name: r.name,
            kind: r.kind,
            url: r.url,
            username: r.username,
            has_password: r.sealed_password.is_some(),
            insecure: r.insecure,
            has_ca_cert: r.ca_cert.is_some(),
            instance: r.instance,
            description: r.description,
            created_by: r.created_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// `POST /api/v1/replication/endpoints`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEndpoint {
    /// Lowercase letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// What answers there (default `oci`).
    #[serde(default = "oci")]
    pub kind: EndpointKind,
    /// `http(s)://host[:port]`.
    pub url: String,
    /// The account to log in as; none for anonymous access.
    pub username: Option<String>,
    /// Its password or robot secret; stored sealed, never shown again.
    pub password: Option<String>,
    /// Accept any TLS certificate (prefer `ca_cert`).
    #[serde(default)]
    pub insecure: bool,
    /// A PEM CA certificate to trust for this endpoint.
    pub ca_cert: Option<String>,
    /// Free text.
    #[serde(default)]
    pub description: String,
}

fn oci() -> EndpointKind {
    EndpointKind::Oci
}

/// `PATCH /api/v1/replication/endpoints/{name}`: absent fields stay; `null` clears the
/// optional ones.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointUpdate {
    /// What answers there.
    pub kind: Option<EndpointKind>,
    /// `http(s)://host[:port]`.
    pub url: Option<String>,
    /// The account to log in as.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub username: Option<Option<String>>,
    /// Its password.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub password: Option<Option<String>>,
    /// Accept any TLS certificate.
    pub insecure: Option<bool>,
    /// A PEM CA certificate.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub ca_cert: Option<Option<String>>,
    /// Free text.
    pub description: Option<String>,
}

fn check_ca(pem: &Option<String>) -> ApiResult<()> {
    if let Some(pem) = pem {
        let certificates: Vec<_> = rustls_pemfile::certs(&mut pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| ApiError::bad_request(format!("ca_cert is not PEM: {e}")))?;
        if certificates.is_empty() {
            return Err(ApiError::bad_request(
                "ca_cert holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            ));
        }
    }
    Ok(())
}

/// Lists the endpoints.
#[utoipa::path(get, operation_id = "replication_endpoints_list", path = "/api/v1/replication/endpoints", tag = "replication",
    responses((status = 200, body = [EndpointView]), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn list_endpoints(
    State(state): State<ApiState>,
    caller: ApiCaller,
) -> ApiResult<Json<Vec<EndpointView>>> {
    caller.require_admin()?;
    let list = state.replication.endpoints()?;
    Ok(Json(list.into_iter().map(EndpointView::from).collect()))
}

/// Creates an endpoint.
#[utoipa::path(post, operation_id = "replication_endpoints_create", path = "/api/v1/replication/endpoints", tag = "replication", request_body = NewEndpoint,
    responses((status = 201, body = EndpointView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem), (status = 415, body = Problem)))]
pub async fn create_endpoint(
    State(state): State<ApiState>,
    caller: ApiCaller,
    ApiJson(new): ApiJson<NewEndpoint>,
) -> ApiResult<(StatusCode, Json<EndpointView>)> {
    caller.require_admin()?;
    check_ca(&new.ca_cert)?;
    let now = now_millis();
    let url = crate::replication::endpoints::check_url(&new.url)?;
    let mut record = EndpointRecord {
        name: new.name.clone(),
        kind: new.kind,
        url,
        username: new.username.filter(|u| !u.is_empty()),
        sealed_password: None,
        insecure: new.insecure,
        ca_cert: new.ca_cert,
        instance: None,
        description: new.description,
        created_by: caller.principal.name().to_string(),
        created_at: now,
        updated_at: now,
    };
    record.set_password(
        state.replication.sealer(),
        new.password.as_deref().filter(|p| !p.is_empty()),
    );
    let record = state.replication.create_endpoint(record)?;
    let replication = state.replication.clone();
    let learn = new.name.clone();
    tokio::spawn(async move { replication.learn_instance(&learn).await });
    caller
        .audit(&state, "replication.endpoint.create", &new.name, None)
        .await;
    Ok((StatusCode::CREATED, Json(record.into())))
}

/// One endpoint.
#[utoipa::path(get, operation_id = "replication_endpoints_get", path = "/api/v1/replication/endpoints/{name}", tag = "replication", params(("name" = String, Path)),
    responses((status = 200, body = EndpointView), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn get_endpoint(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> ApiResult<Json<EndpointView>> {
    caller.require_admin()?;
    Ok(Json(state.replication.endpoint(&name)?.into()))
}

/// Changes an endpoint.
#[utoipa::path(patch, operation_id = "replication_endpoints_update", path = "/api/v1/replication/endpoints/{name}", tag = "replication", params(("name" = String, Path)), request_body = EndpointUpdate,
    responses((status = 200, body = EndpointView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 415, body = Problem)))]
pub async fn update_endpoint(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
    ApiJson(update): ApiJson<EndpointUpdate>,
) -> ApiResult<Json<EndpointView>> {
    caller.require_admin()?;
    if let Some(ca) = &update.ca_cert {
        check_ca(ca)?;
    }
    let sealer = state.replication.clone();
    let record = state.replication.update_endpoint(&name, |r| {
        if let Some(kind) = update.kind {
            r.kind = kind;
        }
        if let Some(url) = update.url {
            r.url = url;
        }
        if let Some(username) = update.username {
            r.username = username.filter(|u| !u.is_empty());
        }
        if let Some(password) = update.password {
            r.set_password(
                sealer.sealer(),
                password.as_deref().filter(|p| !p.is_empty()),
            );
        }
        if let Some(insecure) = update.insecure {
            r.insecure = insecure;
        }
        if let Some(ca) = update.ca_cert {
            r.ca_cert = ca;
        }
        if let Some(d) = update.description {
            r.description = d;
        }
        Ok(())
    })?;
    let replication = state.replication.clone();
    let learn = name.clone();
    tokio::spawn(async move { replication.learn_instance(&learn).await });
    caller
        .audit(&state, "replication.endpoint.update", &name, None)
        .await;
    Ok(Json(record.into()))
}

/// Deletes an endpoint no policy uses.
#[utoipa::path(delete, operation_id = "replication_endpoints_delete", path = "/api/v1/replication/endpoints/{name}", tag = "replication", params(("name" = String, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn delete_endpoint(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    state.replication.delete_endpoint(&name)?;
    caller
        .audit(&state, "replication.endpoint.delete", &name, None)
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Checks that an endpoint answers as a registry and accepts its credentials.
#[utoipa::path(post, operation_id = "replication_endpoints_check", path = "/api/v1/replication/endpoints/{name}/check", tag = "replication", params(("name" = String, Path)),
    responses((status = 200, body = EndpointHealth), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn check_endpoint(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> ApiResult<Json<EndpointHealth>> {
    caller.require_admin()?;
    Ok(Json(state.replication.check_endpoint(&name).await?))
}

// ---- policies ----

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

/// A job as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    /// Its id.
    pub id: u64,
    /// Its policy.
    pub policy: String,
    /// What started it.
    pub trigger: Trigger,
    /// Where it is: `pending`, `running`, `succeeded`, `failed`, `cancelled`.
    pub status: JobStatus,
    /// Changes it covers (0 for a full run).
    pub changes: usize,
    /// When it was queued (ms since the epoch).
    pub created_at: u64,
    /// When it was planned.
    pub started_at: Option<u64>,
    /// When it ended.
    pub finished_at: Option<u64>,
    /// From planning to the end (or now), in milliseconds.
    pub duration_ms: Option<u64>,
    /// Its plan.
    pub plan: Option<PlanSummary>,
    /// Why it failed as a whole.
    pub error: Option<String>,
    /// Its tasks by status.
    pub tasks: TaskCounts,
    /// Work done.
    pub progress: JobProgress,
}

impl From<JobRecord> for JobView {
    fn from(j: JobRecord) -> JobView {
        let changes = match &j.scope {
            JobScope::All => 0,
            JobScope::Changes { changes } => changes.len(),
        };
        let duration_ms = j
            .started_at
            .map(|s| j.finished_at.unwrap_or_else(now_millis).saturating_sub(s));
        JobView {
            id: j.id,
            policy: j.policy,
            trigger: j.trigger,
            status: j.status,
            changes,
            created_at: j.created_at,
            started_at: j.started_at,
            finished_at: j.finished_at,
            duration_ms,
            plan: j.plan,
            error: j.error,
            tasks: j.tasks,
            progress: j.progress,
        }
    }
}

/// A job with its tasks.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobDetail {
    /// The job.
    #[serde(flatten)]
    pub job: JobView,
    /// Its tasks, in index order.
    #[schema(value_type = Vec<Object>)]
    pub task_list: Vec<TaskRecord>,
}

/// Filters of the job list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct JobFilter {
    /// Only this policy's jobs.
    pub policy: Option<String>,
    /// Only jobs in this status.
    pub status: Option<JobStatus>,
    /// At most this many, newest first (default 50, at most 500).
    pub limit: Option<usize>,
}

/// Lists jobs, newest first.
#[utoipa::path(get, operation_id = "replication_jobs_list", path = "/api/v1/replication/jobs", tag = "replication", params(JobFilter),
    responses((status = 200, body = [JobView]), (status = 400, body = Problem), (status = 403, body = Problem)))]
pub async fn list_jobs(
    State(state): State<ApiState>,
    caller: ApiCaller,
    ApiQuery(filter): ApiQuery<JobFilter>,
) -> ApiResult<Json<Vec<JobView>>> {
    caller.require_admin()?;
    let limit = filter.limit.unwrap_or(50).clamp(1, super::MAX_PAGE_SIZE);
    let list = state
        .replication
        .jobs(filter.policy.as_deref(), filter.status, limit)?;
    Ok(Json(list.into_iter().map(JobView::from).collect()))
}

fn job_id(text: &str) -> ApiResult<u64> {
    text.parse()
        .map_err(|_| ApiError::bad_request(format!("job ids are numbers, not {text:?}")))
}

/// One job with its tasks.
#[utoipa::path(get, operation_id = "replication_jobs_get", path = "/api/v1/replication/jobs/{id}", tag = "replication", params(("id" = u64, Path)),
    responses((status = 200, body = JobDetail), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn get_job(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(id): Path<String>,
) -> ApiResult<Json<JobDetail>> {
    caller.require_admin()?;
    let (job, tasks) = state.replication.job(job_id(&id)?)?;
    Ok(Json(JobDetail {
        job: job.into(),
        task_list: tasks,
    }))
}

/// Cancels a job.
#[utoipa::path(post, operation_id = "replication_jobs_cancel", path = "/api/v1/replication/jobs/{id}/cancel", tag = "replication", params(("id" = u64, Path)),
    responses((status = 200, body = JobView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn cancel_job(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(id): Path<String>,
) -> ApiResult<Json<JobView>> {
    caller.require_admin()?;
    let job = state.replication.cancel(job_id(&id)?)?;
    caller
        .audit(
            &state,
            "replication.cancel",
            &job.policy,
            Some(format!("job {}", job.id)),
        )
        .await;
    Ok(Json(job.into()))
}

/// Queues a new job that runs again what a failed or cancelled job did not complete.
#[utoipa::path(post, operation_id = "replication_jobs_retry", path = "/api/v1/replication/jobs/{id}/retry", tag = "replication", params(("id" = u64, Path)),
    responses((status = 202, body = JobView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn retry_job(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<JobView>)> {
    caller.require_admin()?;
    let old = job_id(&id)?;
    let job = state.replication.retry(old, caller.principal.name())?;
    caller
        .audit(
            &state,
            "replication.retry",
            &job.policy,
            Some(format!("job {old} as job {}", job.id)),
        )
        .await;
    Ok((StatusCode::ACCEPTED, Json(job.into())))
}

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
    let started = state.replication.start_transfer(request)?;
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
