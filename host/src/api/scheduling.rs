//! `/api/v1/clusters` and `/api/v1/projects/{name}/quota`: where machines come from, who
//! may use it, and how much of it. Clusters and quotas are system administrators'; a
//! project's quota is visible to whoever can see the project.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::ApiState;
use super::caller::ApiCaller;
use super::extract::ApiJson;
use super::problem::{ApiError, ApiResult, Problem};
use crate::scheduling::clusters::{ClusterChange, ClusterView, NewCluster, QuotaView};
use crate::scheduling::machines::MachineView;
use crate::scheduling::pool::HostSpec;
use crate::scheduling::reconcile::{OrphanView, ReconcileReport};
use crate::scheduling::{PoolHostRecord, QuotaRecord, SchedulingError};

impl From<SchedulingError> for ApiError {
    fn from(e: SchedulingError) -> ApiError {
        match e {
            SchedulingError::NotFound(m) => ApiError::not_found(m),
            SchedulingError::Invalid(m) => ApiError::bad_request(m),
            SchedulingError::Conflict(m) => ApiError::conflict(m),
            SchedulingError::Provider(m) => ApiError::new(StatusCode::BAD_GATEWAY, m),
            SchedulingError::Store(e) => e.into(),
        }
    }
}

/// A physical pool's host as the API shows it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct PoolHostView {
    /// Its name in the pool.
    pub name: String,
    /// Where berth reaches it.
    pub address: String,
    /// Its SSH port.
    pub ssh_port: u16,
    /// vCPUs.
    pub cpus: u32,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Disk sizes, GiB.
    pub disks_gib: Vec<u32>,
    /// Labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Its rack.
    pub rack: Option<String>,
    /// Its zone.
    pub zone: Option<String>,
    /// Its power control, if any.
    pub power: Option<crate::scheduling::PowerControl>,
    /// The machine it is allocated as.
    pub machine: Option<String>,
    /// Released and not set up again yet.
    pub needs_init: bool,
}

impl From<PoolHostRecord> for PoolHostView {
    fn from(h: PoolHostRecord) -> PoolHostView {
        PoolHostView {
            name: h.name,
            address: h.address,
            ssh_port: h.ssh_port,
            cpus: h.cpus,
            memory_mib: h.memory_mib,
            disks_gib: h.disks_gib,
            labels: h.labels,
            rack: h.rack,
            zone: h.zone,
            power: h.power,
            machine: h.machine,
            needs_init: h.needs_init,
        }
    }
}

/// Lists clusters (system administrators).
#[utoipa::path(get, operation_id = "clusters_list", path = "/api/v1/clusters", tag = "clusters",
    responses((status = 200, body = [ClusterView]), (status = 403, body = Problem)))]
pub async fn list_clusters(
    State(state): State<ApiState>,
    caller: ApiCaller,
) -> ApiResult<Json<Vec<ClusterView>>> {
    caller.require_admin()?;
    Ok(Json(state.scheduling.clusters().await?))
}

/// Adds a cluster (system administrators). Credentials are sealed and never shown again.
#[utoipa::path(post, operation_id = "clusters_create", path = "/api/v1/clusters", tag = "clusters", request_body = NewCluster,
    responses((status = 201, body = ClusterView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 415, body = Problem)))]
pub async fn create_cluster(
    State(state): State<ApiState>,
    caller: ApiCaller,
    ApiJson(new): ApiJson<NewCluster>,
) -> ApiResult<(StatusCode, Json<ClusterView>)> {
    caller.require_admin()?;
    let name = new.name.clone();
    let created = state
        .scheduling
        .add_cluster(new, caller.principal.name())
        .await?;
    caller
        .audit(
            &state,
            "cluster.create",
            &name,
            Some(created.provider.clone()),
        )
        .await;
    Ok((StatusCode::CREATED, Json(created)))
}

/// One cluster (system administrators).
#[utoipa::path(get, operation_id = "clusters_get", path = "/api/v1/clusters/{name}", tag = "clusters", params(("name" = String, Path)),
    responses((status = 200, body = ClusterView), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn get_cluster(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> ApiResult<Json<ClusterView>> {
    caller.require_admin()?;
    Ok(Json(state.scheduling.cluster(&name).await?))
}

/// Changes a cluster (system administrators).
#[utoipa::path(patch, operation_id = "clusters_update", path = "/api/v1/clusters/{name}", tag = "clusters", params(("name" = String, Path)), request_body = ClusterChange,
    responses((status = 200, body = ClusterView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 415, body = Problem)))]
pub async fn update_cluster(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
    ApiJson(change): ApiJson<ClusterChange>,
) -> ApiResult<Json<ClusterView>> {
    caller.require_admin()?;
    let updated = state.scheduling.update_cluster(&name, change).await?;
    caller.audit(&state, "cluster.update", &name, None).await;
    Ok(Json(updated))
}

/// Removes a cluster that has no machines left (system administrators).
#[utoipa::path(delete, operation_id = "clusters_delete", path = "/api/v1/clusters/{name}", tag = "clusters", params(("name" = String, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn delete_cluster(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    state.scheduling.remove_cluster(&name).await?;
    caller.audit(&state, "cluster.delete", &name, None).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Lets a project use a cluster (system administrators).
#[utoipa::path(put, operation_id = "clusters_grant", path = "/api/v1/clusters/{name}/projects/{project}", tag = "clusters", params(("name" = String, Path), ("project" = String, Path)),
    responses((status = 200, body = ClusterView), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn grant_cluster(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path((name, project)): Path<(String, String)>,
) -> ApiResult<Json<ClusterView>> {
    caller.require_admin()?;
    let granted = state.scheduling.grant(&name, &project, true).await?;
    caller
        .audit(&state, "cluster.grant", &name, Some(project))
        .await;
    Ok(Json(granted))
}

/// Stops a project from placing new machines on a cluster; its machines stay (system
/// administrators).
#[utoipa::path(delete, operation_id = "clusters_revoke", path = "/api/v1/clusters/{name}/projects/{project}", tag = "clusters", params(("name" = String, Path), ("project" = String, Path)),
    responses((status = 200, body = ClusterView), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn revoke_cluster(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path((name, project)): Path<(String, String)>,
) -> ApiResult<Json<ClusterView>> {
    caller.require_admin()?;
    let revoked = state.scheduling.grant(&name, &project, false).await?;
    caller
        .audit(&state, "cluster.revoke", &name, Some(project))
        .await;
    Ok(Json(revoked))
}

/// A physical pool's hosts (system administrators).
#[utoipa::path(get, operation_id = "clusters_hosts_list", path = "/api/v1/clusters/{name}/hosts", tag = "clusters", params(("name" = String, Path)),
    responses((status = 200, body = [PoolHostView]), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn list_hosts(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<PoolHostView>>> {
    caller.require_admin()?;
    let hosts = state.scheduling.pool_hosts(&name).await?;
    Ok(Json(hosts.into_iter().map(PoolHostView::from).collect()))
}

/// Adds hosts to a physical pool, or updates them (an allocated host keeps its machine);
/// answers with the pool's hosts (system administrators).
#[utoipa::path(post, operation_id = "clusters_hosts_import", path = "/api/v1/clusters/{name}/hosts", tag = "clusters", params(("name" = String, Path)), request_body = [HostSpec],
    responses((status = 200, body = [PoolHostView]), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 415, body = Problem)))]
pub async fn import_hosts(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
    ApiJson(hosts): ApiJson<Vec<HostSpec>>,
) -> ApiResult<Json<Vec<PoolHostView>>> {
    caller.require_admin()?;
    let count = hosts.len();
    let all = state.scheduling.import_hosts(&name, hosts).await?;
    caller
        .audit(
            &state,
            "cluster.hosts.import",
            &name,
            Some(format!("{count} hosts")),
        )
        .await;
    Ok(Json(all.into_iter().map(PoolHostView::from).collect()))
}

/// A provider cluster's orphans: machines tagged for it that berth keeps no living record
/// of, read from the provider now (system administrators).
#[utoipa::path(get, operation_id = "clusters_orphans_list", path = "/api/v1/clusters/{name}/orphans", tag = "clusters", params(("name" = String, Path)),
    responses((status = 200, body = [OrphanView]), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 502, body = Problem)))]
pub async fn list_orphans(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<OrphanView>>> {
    caller.require_admin()?;
    Ok(Json(state.scheduling.orphans(&name).await?))
}

/// Runs a provider cluster's reconcile round now and answers what it found: machines
/// retired because the provider no longer has them, stuck creates failed, orphans counted
/// (system administrators).
#[utoipa::path(post, operation_id = "clusters_reconcile", path = "/api/v1/clusters/{name}/reconcile", tag = "clusters", params(("name" = String, Path)),
    responses((status = 200, body = ReconcileReport), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 502, body = Problem)))]
pub async fn reconcile(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> ApiResult<Json<ReconcileReport>> {
    caller.require_admin()?;
    let report = state.scheduling.reconcile_now(&name).await?;
    caller
        .audit(
            &state,
            "cluster.reconcile",
            &name,
            Some(format!(
                "{} listed, {} retired, {} failed, {} orphans",
                report.listed,
                report.retired.len(),
                report.failed.len(),
                report.orphans
            )),
        )
        .await;
    Ok(Json(report))
}

/// `POST …/orphans/{provider_id}/adopt`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Adopt {
    /// The project that will own it (within its quota, on a cluster granted to it).
    pub project: String,
}

/// Takes an orphan under berth's management as a machine of a project; it goes online
/// like a new machine (system administrators).
#[utoipa::path(post, operation_id = "clusters_orphans_adopt", path = "/api/v1/clusters/{name}/orphans/{provider_id}/adopt", tag = "clusters",
    params(("name" = String, Path), ("provider_id" = String, Path)), request_body = Adopt,
    responses((status = 202, body = MachineView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 415, body = Problem), (status = 502, body = Problem)))]
pub async fn adopt_orphan(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path((name, provider_id)): Path<(String, String)>,
    ApiJson(adopt): ApiJson<Adopt>,
) -> ApiResult<(StatusCode, Json<MachineView>)> {
    caller.require_admin()?;
    let adopted = state
        .scheduling
        .adopt(&name, &provider_id, &adopt.project, caller.principal.name())
        .await?;
    caller
        .audit(
            &state,
            "machine.adopt",
            &adopted.id,
            Some(format!("{name}/{provider_id}")),
        )
        .await;
    Ok((StatusCode::ACCEPTED, Json(adopted)))
}

/// Deletes an orphan at its provider, as a job (system administrators).
#[utoipa::path(post, operation_id = "clusters_orphans_delete", path = "/api/v1/clusters/{name}/orphans/{provider_id}/delete", tag = "clusters",
    params(("name" = String, Path), ("provider_id" = String, Path)),
    responses((status = 202), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 502, body = Problem)))]
pub async fn delete_orphan(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path((name, provider_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    state.scheduling.delete_orphan(&name, &provider_id).await?;
    caller
        .audit(&state, "cluster.orphan.delete", &name, Some(provider_id))
        .await;
    Ok(StatusCode::ACCEPTED)
}

/// A project's quota and what its machines hold (whoever can see the project).
#[utoipa::path(get, operation_id = "quotas_get", path = "/api/v1/projects/{name}/quota", tag = "clusters", params(("name" = String, Path)),
    responses((status = 200, body = QuotaView), (status = 404, body = Problem)))]
pub async fn get_quota(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> ApiResult<Json<QuotaView>> {
    caller.visible_project(&state.auth, &name)?;
    Ok(Json(state.scheduling.quota(&name).await?))
}

/// Sets a project's quota; an absent limit is none (system administrators).
#[utoipa::path(put, operation_id = "quotas_set", path = "/api/v1/projects/{name}/quota", tag = "clusters", params(("name" = String, Path)), request_body = QuotaRecord,
    responses((status = 200, body = QuotaView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 415, body = Problem)))]
pub async fn set_quota(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
    ApiJson(quota): ApiJson<QuotaRecord>,
) -> ApiResult<Json<QuotaView>> {
    caller.require_admin()?;
    let set = state.scheduling.set_quota(&name, quota).await?;
    caller
        .audit(
            &state,
            "quota.set",
            &name,
            serde_json::to_string(&set.quota).ok(),
        )
        .await;
    Ok(Json(set))
}
