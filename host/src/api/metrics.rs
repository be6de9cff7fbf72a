//! `GET /metrics`: the replication engine's state in the Prometheus text format, for
//! alerting on a degraded sync pair or a growing backlog. System administrators only
//! (scrape with `basic_auth`): policy and endpoint names describe the topology.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use std::fmt::Write as _;

use super::ApiState;
use super::caller::ApiCaller;
use super::problem::{ApiResult, Problem};
use crate::replication::policies::Delivery;

/// Replication gauges in the Prometheus text exposition format.
#[utoipa::path(get, operation_id = "metrics", path = "/metrics", tag = "replication",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn metrics(
    State(state): State<ApiState>,
    caller: ApiCaller,
) -> ApiResult<impl IntoResponse> {
    caller.require_admin()?;
    let status = state.replication.status()?;
    let policies = state.replication.policies()?;
    let mut out = String::new();
    let gauge = |out: &mut String, name: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    };
    gauge(
        &mut out,
        "berth_replication_degraded",
        "1 while a sync policy acknowledges pushes without an unreachable destination.",
    );
    for policy in policies.iter().filter(|p| p.delivery == Delivery::Sync) {
        let degraded = status
            .policies
            .iter()
            .find(|s| s.policy == policy.name)
            .map(|s| s.degraded.clone())
            .unwrap_or_default();
        for endpoint in &policy.endpoints {
            let value = u8::from(degraded.iter().any(|d| &d.endpoint == endpoint));
            let _ = writeln!(
                out,
                "berth_replication_degraded{{policy=\"{}\",endpoint=\"{endpoint}\"}} {value}",
                policy.name
            );
        }
    }
    for (name, help, pick) in [
        (
            "berth_replication_pending_tasks",
            "Transfers and deletes queued or running: what the destinations do not have yet.",
            (|s: &crate::replication::PolicyStatus| s.pending_tasks) as fn(&_) -> u32,
        ),
        (
            "berth_replication_pending_changes",
            "Changes queued in jobs not yet planned.",
            |s| s.pending_changes,
        ),
        (
            "berth_replication_unfinished_jobs",
            "Jobs queued or running.",
            |s| s.unfinished_jobs,
        ),
    ] {
        gauge(&mut out, name, help);
        for s in &status.policies {
            let _ = writeln!(out, "{name}{{policy=\"{}\"}} {}", s.policy, pick(s));
        }
    }
    gauge(
        &mut out,
        "berth_replication_unread_changes",
        "Registry changes the replication engine has not read yet.",
    );
    let _ = writeln!(
        out,
        "berth_replication_unread_changes {}",
        status.unread_changes
    );
    gauge(
        &mut out,
        "berth_replication_running_jobs",
        "Replication jobs running in this process.",
    );
    let _ = writeln!(
        out,
        "berth_replication_running_jobs {}",
        status.running_jobs
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out))
}
