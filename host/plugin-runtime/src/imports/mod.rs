//! The host side of the interfaces plugins import: `host` (log, clocks, config), `http`
//! and `secrets`. Each checks the plugin's settings, never trusts the guest's input, and
//! logs under the plugin's name.

mod host;
mod http;
mod secrets;

/// Longest log message kept from a plugin; the rest is cut, so a plugin cannot flood the
/// host's log with one call.
pub(crate) const LOG_MESSAGE_LIMIT: usize = 4096;
/// Most structured fields kept per log event.
pub(crate) const LOG_FIELDS_LIMIT: usize = 32;
/// Largest HTTP response body handed to a plugin.
pub const HTTP_RESPONSE_LIMIT: u64 = 32 * 1024 * 1024;
/// Largest HTTP request body a plugin may send.
pub const HTTP_REQUEST_LIMIT: usize = 32 * 1024 * 1024;
/// Per-request time limit when the plugin names none (or a longer one).
pub(crate) const HTTP_TIMEOUT_MS: u32 = 60_000;
