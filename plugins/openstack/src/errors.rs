//! OpenStack's error replies as provider errors. Nova answers `{"<fault>": {"code",
//! "message"}}` (`badRequest`, `itemNotFound`, `forbidden`, `overLimit`, …), Keystone
//! `{"error": {"code", "message", "title"}}`; the status decides the kind, except a 403
//! over a quota, which is a quota.

use berth_plugin_sdk::http::Response;
use berth_plugin_sdk::provider::{ErrorKind, ProviderError};
use serde_json::Value;

/// The provider error `response` (not 2xx) means; `what` names the request.
pub fn error_of(response: &Response, what: &str) -> ProviderError {
    let body: Value = response.json().unwrap_or(Value::Null);
    let fault = body
        .as_object()
        .and_then(|o| o.iter().next())
        .filter(|(_, v)| v.is_object());
    let code = fault.map(|(name, _)| name.clone());
    let message = fault
        .and_then(|(_, v)| v.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| {
            let mut text = response.text();
            text.truncate(512);
            text
        });
    let kind = match response.status {
        403 if message.contains("Quota exceeded") => ErrorKind::Quota,
        401 | 403 => ErrorKind::Auth,
        404 => ErrorKind::NotFound,
        409 => ErrorKind::Conflict,
        413 | 429 => ErrorKind::Throttled,
        400 | 406 | 422 => ErrorKind::Invalid,
        500..=599 => ErrorKind::Transient,
        _ => ErrorKind::Other,
    };
    let request_id = response
        .header("x-openstack-request-id")
        .or_else(|| response.header("x-compute-request-id"))
        .map(str::to_string);
    let mut error =
        ProviderError::new(kind, format!("{what}: {message}")).with_code(code, request_id);
    if kind == ErrorKind::Throttled {
        error.retry_after_ms = response.retry_after_ms().or(Some(1000));
    }
    error
}
