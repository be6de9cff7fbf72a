//! `GET /v2/` — the API version check.
//!
//! ```text
//! GET /v2/            → 200 {}   Docker-Distribution-API-Version: registry/2.0
//! ```

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Answers that this is a v2 registry.
pub fn get() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        "{}",
    )
        .into_response()
}
