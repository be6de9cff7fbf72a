//! `berth:plugin/host`: log, clocks and the plugin's own configuration, as one set of
//! functions every package version's bindings call (see `imports/mod.rs`).

use std::time::SystemTime;

use crate::log::escape;
use crate::state::CallState;

use super::{LOG_FIELDS_LIMIT, LOG_MESSAGE_LIMIT};

/// A log event's level, whatever the package version.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl CallState {
    /// Writes one event a plugin logged: escaped (one event stays one line, and cannot
    /// pass for berth's own), then weighed against the call's budget as written. An
    /// event at a level berth does not write is dropped first, unescaped and uncounted:
    /// a plugin's debug lines cost next to nothing where nobody reads them.
    pub(crate) fn plugin_log(
        &mut self,
        level: Level,
        message: String,
        fields: Vec<(String, String)>,
    ) {
        let written = match level {
            Level::Trace => tracing::enabled!(target: "berth::plugin", tracing::Level::TRACE),
            Level::Debug => tracing::enabled!(target: "berth::plugin", tracing::Level::DEBUG),
            Level::Info => tracing::enabled!(target: "berth::plugin", tracing::Level::INFO),
            Level::Warn => tracing::enabled!(target: "berth::plugin", tracing::Level::WARN),
            Level::Error => tracing::enabled!(target: "berth::plugin", tracing::Level::ERROR),
        };
        if !written {
            return;
        }
        let message = escape(&truncate(message, LOG_MESSAGE_LIMIT)).into_owned();
        let fields: Vec<String> = fields
            .into_iter()
            .take(LOG_FIELDS_LIMIT)
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    escape(&truncate(k, 128)),
                    escape(&truncate(v, 1024))
                )
            })
            .collect();
        let fields = fields.join(" ");
        if !self.log_budget.take((message.len() + fields.len()) as u64) {
            return;
        }
        let plugin = &*self.plugin;
        match level {
            Level::Trace => tracing::trace!(target: "berth::plugin", plugin, fields, "{message}"),
            Level::Debug => tracing::debug!(target: "berth::plugin", plugin, fields, "{message}"),
            Level::Info => tracing::info!(target: "berth::plugin", plugin, fields, "{message}"),
            Level::Warn => tracing::warn!(target: "berth::plugin", plugin, fields, "{message}"),
            Level::Error => tracing::error!(target: "berth::plugin", plugin, fields, "{message}"),
        }
    }

    /// Nanoseconds since the runtime started: `host.monotonic-now`.
    pub(crate) fn monotonic_nanos(&self) -> u64 {
        u64::try_from(self.services.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// One value of the plugin's configuration.
    pub(crate) fn config_value(&self, key: &str) -> Option<String> {
        self.settings.config.get(key).cloned()
    }

    /// Every configuration key.
    pub(crate) fn config_key_list(&self) -> Vec<String> {
        self.settings.config.keys().cloned().collect()
    }
}

/// Wall-clock time as (seconds, nanoseconds) since the Unix epoch: `host.now`.
pub(crate) fn wall_clock() -> (u64, u32) {
    let since_epoch = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    (since_epoch.as_secs(), since_epoch.subsec_nanos())
}

/// Cuts `text` to at most `limit` bytes on a character boundary.
fn truncate(mut text: String, limit: usize) -> String {
    if text.len() > limit {
        let mut cut = limit;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}
