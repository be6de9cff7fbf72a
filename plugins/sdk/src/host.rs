//! The host interface every plugin has: structured logs, the clock, its configuration.

use crate::bindings::berth::plugin::host as raw;
pub use crate::{Datetime, LogLevel};

/// Writes one event to berth's log, under this plugin's name.
pub fn log(level: LogLevel, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    raw::log(level, message, &fields);
}

/// `log` at debug level.
pub fn debug(message: &str, fields: &[(&str, &str)]) {
    log(LogLevel::Debug, message, fields)
}

/// `log` at info level.
pub fn info(message: &str, fields: &[(&str, &str)]) {
    log(LogLevel::Info, message, fields)
}

/// `log` at warn level.
pub fn warn(message: &str, fields: &[(&str, &str)]) {
    log(LogLevel::Warn, message, fields)
}

/// `log` at error level.
pub fn error(message: &str, fields: &[(&str, &str)]) {
    log(LogLevel::Error, message, fields)
}

/// Wall-clock time from the host (WASI's clock inside the sandbox reads zero).
pub fn now() -> Datetime {
    raw::now()
}

/// Nanoseconds from a fixed origin; for measuring durations.
pub fn monotonic_now() -> u64 {
    raw::monotonic_now()
}

/// A value from the configuration the admin set for this plugin.
pub fn config(key: &str) -> Option<String> {
    raw::config(key)
}

/// A configuration value, or `default` when unset.
pub fn config_or(key: &str, default: &str) -> String {
    config(key).unwrap_or_else(|| default.to_string())
}

/// Every configuration key set for this plugin.
pub fn config_keys() -> Vec<String> {
    raw::config_keys()
}
