//! Every error the registry API can answer, registered once: its wire code, default
//! message and HTTP status (OCI Distribution Spec v1.1, "Error Codes").
//!
//! Handlers return [`RegistryError`]; this module alone turns it into a response, so the
//! status and body of a given code can never differ between two endpoints.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The error codes of the distribution spec (plus `UNKNOWN` for server faults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// BLOB_UNKNOWN: blob unknown to registry.
    BlobUnknown,
    /// BLOB_UPLOAD_INVALID: blob upload invalid.
    BlobUploadInvalid,
    /// BLOB_UPLOAD_UNKNOWN: blob upload unknown to registry.
    BlobUploadUnknown,
    /// DIGEST_INVALID: provided digest did not match uploaded content.
    DigestInvalid,
    /// MANIFEST_BLOB_UNKNOWN: manifest references a manifest or blob unknown to registry.
    ManifestBlobUnknown,
    /// MANIFEST_INVALID: manifest invalid.
    ManifestInvalid,
    /// MANIFEST_UNKNOWN: manifest unknown to registry.
    ManifestUnknown,
    /// NAME_INVALID: invalid repository name.
    NameInvalid,
    /// NAME_UNKNOWN: repository name not known to registry.
    NameUnknown,
    /// SIZE_INVALID: provided length did not match content length.
    SizeInvalid,
    /// UNAUTHORIZED: authentication required.
    Unauthorized,
    /// DENIED: requested access to the resource is denied.
    Denied,
    /// UNSUPPORTED: the operation is unsupported.
    Unsupported,
    /// TOOMANYREQUESTS: too many requests.
    TooManyRequests,
    /// UNKNOWN: a server-side failure; details are in the server log, not the response.
    Unknown,
}

impl ErrorCode {
    /// (wire code, default message, default status): the one table.
    pub const fn registration(self) -> (&'static str, &'static str, StatusCode) {
        use ErrorCode::*;
        match self {
            BlobUnknown => (
                "BLOB_UNKNOWN",
                "blob unknown to registry",
                StatusCode::NOT_FOUND,
            ),
            BlobUploadInvalid => (
                "BLOB_UPLOAD_INVALID",
                "blob upload invalid",
                StatusCode::BAD_REQUEST,
            ),
            BlobUploadUnknown => (
                "BLOB_UPLOAD_UNKNOWN",
                "blob upload unknown to registry",
                StatusCode::NOT_FOUND,
            ),
            DigestInvalid => (
                "DIGEST_INVALID",
                "provided digest did not match uploaded content",
                StatusCode::BAD_REQUEST,
            ),
            ManifestBlobUnknown => (
                "MANIFEST_BLOB_UNKNOWN",
                "manifest references a manifest or blob unknown to registry",
                StatusCode::BAD_REQUEST,
            ),
            ManifestInvalid => (
                "MANIFEST_INVALID",
                "manifest invalid",
                StatusCode::BAD_REQUEST,
            ),
            ManifestUnknown => (
                "MANIFEST_UNKNOWN",
                "manifest unknown to registry",
                StatusCode::NOT_FOUND,
            ),
            NameInvalid => (
                "NAME_INVALID",
                "invalid repository name",
                StatusCode::BAD_REQUEST,
            ),
            NameUnknown => (
                "NAME_UNKNOWN",
                "repository name not known to registry",
                StatusCode::NOT_FOUND,
            ),
            SizeInvalid => (
                "SIZE_INVALID",
                "provided length did not match content length",
                StatusCode::BAD_REQUEST,
            ),
            Unauthorized => (
                "UNAUTHORIZED",
                "authentication required",
                StatusCode::UNAUTHORIZED,
            ),
            Denied => (
                "DENIED",
                "requested access to the resource is denied",
                StatusCode::FORBIDDEN,
            ),
            Unsupported => (
                "UNSUPPORTED",
                "the operation is unsupported",
                StatusCode::METHOD_NOT_ALLOWED,
            ),
            TooManyRequests => (
                "TOOMANYREQUESTS",
                "too many requests",
                StatusCode::TOO_MANY_REQUESTS,
            ),
            Unknown => (
                "UNKNOWN",
                "internal server error; see the server log",
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        }
    }

    /// The wire code, e.g. `BLOB_UNKNOWN`.
    pub const fn as_str(self) -> &'static str {
        self.registration().0
    }
}

/// An error answer of the registry API. Boxed: handlers return it through every layer, and
/// a small `Err` keeps their `Result`s cheap to move.
#[derive(Debug)]
pub struct RegistryError(Box<ErrorBody>);

#[derive(Debug)]
struct ErrorBody {
    code: ErrorCode,
    status: StatusCode,
    message: String,
    detail: Option<Value>,
    headers: HeaderMap,
}

impl RegistryError {
    /// An error with the code's registered status and message.
    pub fn new(code: ErrorCode) -> RegistryError {
        let (_, message, status) = code.registration();
        RegistryError(Box::new(ErrorBody {
            code,
            status,
            message: message.to_owned(),
            detail: None,
            headers: HeaderMap::new(),
        }))
    }

    /// Replaces the message with one that says what happened and what to do.
    pub fn message(mut self, message: impl Into<String>) -> RegistryError {
        self.0.message = message.into();
        self
    }

    /// Attaches structured detail (e.g. the unknown digest).
    pub fn detail(mut self, detail: Value) -> RegistryError {
        self.0.detail = Some(detail);
        self
    }

    /// Overrides the HTTP status where the spec asks for another one (416, 413, …).
    pub fn status(mut self, status: StatusCode) -> RegistryError {
        self.0.status = status;
        self
    }

    /// Adds a response header (e.g. `Range` on a 416).
    pub fn header(mut self, name: HeaderName, value: &str) -> RegistryError {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.0.headers.insert(name, v);
        }
        self
    }

    /// The code.
    pub fn code(&self) -> ErrorCode {
        self.0.code
    }

    /// The HTTP status it is answered with.
    pub fn http_status(&self) -> StatusCode {
        self.0.status
    }

    /// The message a client sees.
    pub fn client_message(&self) -> &str {
        &self.0.message
    }

    /// A server-side failure. The cause is logged here, once; the client sees only that
    /// something failed on the server.
    pub fn internal(context: &str, cause: impl std::fmt::Display) -> RegistryError {
        tracing::error!(%cause, "{context}");
        RegistryError::new(ErrorCode::Unknown).message(format!("{context}; see the server log"))
    }
}

impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.0.code.as_str(), self.0.message)
    }
}

impl std::error::Error for RegistryError {}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let e = *self.0;
        let mut error = json!({ "code": e.code.as_str(), "message": e.message });
        if let Some(detail) = e.detail {
            error["detail"] = detail;
        }
        let body = json!({ "errors": [error] }).to_string();
        let mut response = (
            e.status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        response.headers_mut().extend(e.headers);
        response
    }
}

/// A transaction that kept losing to concurrent ones (many nodes writing one tag at once)
/// is worth retrying: 429 with Retry-After, as clients back off and retry on it; any other
/// store failure is the server's.
impl From<crate::storage::store::StoreError> for RegistryError {
    fn from(e: crate::storage::store::StoreError) -> RegistryError {
        match e {
            crate::storage::store::StoreError::Conflict { .. } => {
                RegistryError::new(ErrorCode::TooManyRequests)
                    .message(e.to_string())
                    .header(axum::http::header::RETRY_AFTER, "1")
            }
            e => RegistryError::internal("metadata store failed", e),
        }
    }
}

impl From<std::io::Error> for RegistryError {
    fn from(e: std::io::Error) -> RegistryError {
        RegistryError::internal("blob storage failed", e)
    }
}

impl From<tokio::task::JoinError> for RegistryError {
    fn from(e: tokio::task::JoinError) -> RegistryError {
        RegistryError::internal("a storage task failed", e)
    }
}

impl From<crate::names::NameError> for RegistryError {
    fn from(e: crate::names::NameError) -> RegistryError {
        use crate::names::NameError;
        let code = match &e {
            NameError::Tag(_) => ErrorCode::ManifestInvalid,
            NameError::Digest(_) => ErrorCode::DigestInvalid,
            _ => ErrorCode::NameInvalid,
        };
        RegistryError::new(code).message(e.to_string())
    }
}

impl From<crate::digest::DigestError> for RegistryError {
    fn from(e: crate::digest::DigestError) -> RegistryError {
        RegistryError::new(ErrorCode::DigestInvalid).message(e.to_string())
    }
}

/// Result alias for handlers.
pub type RegistryResult<T> = Result<T, RegistryError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_registered_once_with_a_distinct_wire_name() {
        use ErrorCode::*;
        let all = [
            BlobUnknown,
            BlobUploadInvalid,
            BlobUploadUnknown,
            DigestInvalid,
            ManifestBlobUnknown,
            ManifestInvalid,
            ManifestUnknown,
            NameInvalid,
            NameUnknown,
            SizeInvalid,
            Unauthorized,
            Denied,
            Unsupported,
            TooManyRequests,
            Unknown,
        ];
        let mut names: Vec<_> = all.iter().map(|c| c.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len());
    }
}
