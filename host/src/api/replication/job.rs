//! `/api/v1/replication/jobs`: jobs, their tasks, cancelling and retrying them.

use crate::api::ApiState;
use crate::api::caller::ApiCaller;
use crate::api::extract::ApiQuery;
use crate::api::problem::{ApiError, ApiResult, Problem};
use crate::replication::jobs::{
    JobProgress, JobRecord, JobScope, JobStatus, PlanSummary, TaskCounts, TaskRecord, Trigger,
};
use crate::storage::store::now_millis;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
    /// The node running it now (`server.node_id`), while one holds its lease.
    pub node: Option<String>,
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
    let limit = filter
        .limit
        .unwrap_or(50)
        .clamp(1, crate::api::MAX_PAGE_SIZE);
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
    let (job, tasks, node) = state.replication.job_with_runner(job_id(&id)?)?;
    Ok(Json(JobDetail {
        job: job.into(),
        task_list: tasks,
        node,
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
