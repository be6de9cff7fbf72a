//! Errors as RFC 9457 problem documents (`application/problem+json`).

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auth::{AuthError, AuthStoreError};
use crate::storage::store::StoreError;

/// A problem document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem (`about:blank` when the status says it all).
    #[serde(rename = "type")]
    pub kind: String,
    /// The status's phrase.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What happened and what to do.
    pub detail: String,
}

/// An API failure.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    detail: String,
    retry_after: Option<u64>,
}

impl ApiError {
    /// Its HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// A failure with `status` and an explanation.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            detail: detail.into(),
            retry_after: None,
        }
    }
    /// 400.
    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, detail)
    }
    /// 403.
    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, detail)
    }
    /// 404.
    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, detail)
    }
    /// 409.
    pub fn conflict(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, detail)
    }
    /// 500, with the cause logged rather than returned.
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        tracing::error!(%cause, "admin API request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; see the server log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = Problem {
            kind: "about:blank".into(),
            title: self.status.canonical_reason().unwrap_or("error").into(),
            status: self.status.as_u16(),
            detail: self.detail,
        };
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            serde_json::to_string(&problem).expect("serializes"),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                "Basic realm=\"berth\"".parse().expect("ascii"),
            );
        }
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, secs.into());
        }
        response
    }
}

/// A transaction that kept losing to concurrent ones is worth retrying (503 with
/// Retry-After); any other store failure is the server's.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Conflict { .. } => ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                detail: e.to_string(),
                retry_after: Some(1),
            },
            other => ApiError::internal(other),
        }
    }
}

/// A registry refusal keeps its status and message (`UNSUPPORTED` is 405: deletes are
/// off); a failure is logged where it happened and shown as the registry shows it.
impl From<crate::registry::errcode::RegistryError> for ApiError {
    fn from(e: crate::registry::errcode::RegistryError) -> ApiError {
        ApiError::new(e.http_status(), e.client_message())
    }
}

impl From<AuthStoreError> for ApiError {
    fn from(e: AuthStoreError) -> ApiError {
        match e {
            AuthStoreError::Store(e) => e.into(),
            AuthStoreError::Invalid(d) => ApiError::bad_request(d),
            AuthStoreError::NotFound(d) => ApiError::not_found(d),
            AuthStoreError::Conflict(d) => ApiError::conflict(d),
            AuthStoreError::Forbidden(d) => ApiError::forbidden(d),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        match e {
            AuthError::RateLimited(wait) => ApiError {
                status: StatusCode::TOO_MANY_REQUESTS,
                detail: e.to_string(),
                retry_after: Some(wait.as_secs().max(1)),
            },
            AuthError::Store(e) => e.into(),
            other => ApiError::new(StatusCode::UNAUTHORIZED, other.to_string()),
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> ApiError {
        ApiError::internal(e)
    }
}

/// Result alias for API handlers.
pub type ApiResult<T> = Result<T, ApiError>;
