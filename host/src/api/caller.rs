//! The API caller: Basic credentials of a user or robot, checked on every request, and the
//! questions handlers ask about it.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::ApiState;
use super::problem::{ApiError, ApiResult};
use crate::auth::audit::AuditRecord;
use crate::auth::authenticate::Credentials;
use crate::auth::authenticate::ProjectAccess;
use crate::auth::projects::ProjectRecord;
use crate::auth::{AccessControl, Action, Principal};

/// An authenticated API caller.
#[derive(Debug, Clone)]
pub struct ApiCaller {
    /// Who.
    pub principal: Principal,
    /// From where.
    pub source: String,
}

impl FromRequestParts<ApiState> for ApiCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<ApiCaller, ApiError> {
        let source = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        match AccessControl::credentials(&parts.headers)? {
            Credentials::None => Err(ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "authentication required: send Basic credentials",
            )),
            Credentials::Bearer(_) => Err(ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "the admin API takes Basic credentials (a user or robot account), not registry tokens",
            )),
            Credentials::Basic { username, password } => {
                let auth: Arc<AccessControl> = state.auth.clone();
                let principal = tokio::task::spawn_blocking(move || {
                    auth.login_cached(&username, &password, source)
                })
                .await??;
                Ok(ApiCaller {
                    principal,
                    source: source.to_string(),
                })
            }
        }
    }
}

impl ApiCaller {
    /// Records a successful change made by this caller in the audit log.
    pub async fn audit(
        &self,
        state: &ApiState,
        action: &str,
        resource: &str,
        detail: Option<String>,
    ) {
        let mut record = AuditRecord::new(
            self.principal.name(),
            &self.source,
            action,
            resource,
            "success",
        );
        record.detail = detail;
        state.auth.audit.record(record).await;
    }

    /// Refuses callers who are not system administrators.
    pub fn require_admin(&self) -> ApiResult<()> {
        if self.principal.is_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "{} is not a system administrator",
                self.principal.name()
            )))
        }
    }

    /// The project, if the caller may see it (public, a member, a robot with a grant, or
    /// an admin); otherwise 404, so private projects' names are not disclosed.
    pub fn visible_project(&self, auth: &AccessControl, name: &str) -> ApiResult<ProjectRecord> {
        Ok(self.project_access(auth, name)?.project)
    }

    fn project_access(&self, auth: &AccessControl, name: &str) -> ApiResult<ProjectAccess> {
        match auth.project_access(&self.principal, name)? {
            Some(access) if access.actions.contains(&Action::Pull) => Ok(access),
            _ => Err(ApiError::not_found(format!(
                "project {name} does not exist or is not visible to you"
            ))),
        }
    }

    /// Refuses unless the caller may do `action` in the (visible) project.
    pub fn require(
        &self,
        auth: &AccessControl,
        project: &str,
        action: Action,
    ) -> ApiResult<ProjectRecord> {
        let access = self.project_access(auth, project)?;
        if access.actions.contains(&action) {
            Ok(access.project)
        } else {
            Err(ApiError::forbidden(format!(
                "{} may not {} in project {project}",
                self.principal.name(),
                serde_json::to_value(action)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
                    .replace('_', " ")
            )))
        }
    }
}
