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
        // The next page keeps the filters of this one.
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (key, value) in [
            ("actor", q.actor.as_deref()),
            ("action", q.action.as_deref()),
            ("resource", q.resource.as_deref()),
        ] {
            if let Some(value) = value {
                query.append_pair(key, value);
            }
        }
        if let Some(since) = q.since {
            query.append_pair("since", &since.to_string());
        }
        query.append_pair("before", &next.to_string());
        query.append_pair("limit", &q.limit.unwrap_or(100).to_string());
        if let Ok(v) = format!("</api/v1/audit?{}>; rel=\"next\"", query.finish()).parse() {
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
