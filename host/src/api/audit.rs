//! `/api/v1/audit`: the audit log, newest first (system administrators).

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Serialize;
use utoipa::ToSchema;

use super::ApiState;
use super::caller::ApiCaller;
use super::extract::ApiQuery;
use super::problem::{ApiResult, Problem};
use crate::auth::audit::{AuditQuery, AuditRecord};

/// One entry with its id (the cursor for `before`).
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    /// The entry's id; pass the last one as `before` for the next page.
    pub id: u64,
    /// The entry.
    #[serde(flatten)]
    pub record: AuditRecord,
}

/// Reads the audit log. The `Link` header leads to the next page.
#[utoipa::path(get, operation_id = "audit_list", path = "/api/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = [AuditEntry]), (status = 403, body = Problem)))]
pub async fn list(
    State(state): State<ApiState>,
    caller: ApiCaller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<(HeaderMap, Json<Vec<AuditEntry>>)> {
    caller.require_admin()?;
    let (entries, next) = state.auth.audit.read(&q).await?;
    let mut headers = HeaderMap::new();
    if let Some(next) = next {
        let limit = q.limit.unwrap_or(100);
        if let Ok(v) = format!("</api/v1/audit?before={next}&limit={limit}>; rel=\"next\"").parse()
        {
            headers.insert(axum::http::header::LINK, v);
        }
    }
    Ok((
        headers,
        Json(
            entries
                .into_iter()
                .map(|(id, record)| AuditEntry { id, record })
                .collect(),
        ),
    ))
}
