//! `berth:plugin/host`: log, clocks and the plugin's own configuration.

use std::time::SystemTime;

use crate::log::escape;
use crate::state::CallState;
use crate::v0_1_0::host::Host;
use crate::v0_1_0::types::{self, Datetime, LogLevel};

use super::{LOG_FIELDS_LIMIT, LOG_MESSAGE_LIMIT};

impl types::Host for CallState {}

impl Host for CallState {
    async fn log(
        &mut self,
        level: LogLevel,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        // Everything the plugin wrote is escaped (one event stays one line, and cannot
        // pass for berth's own), then weighed against the call's budget as written.
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
            return Ok(());
        }
        let plugin = &*self.plugin;
        match level {
            LogLevel::Trace => {
                tracing::trace!(target: "berth::plugin", plugin, fields, "{message}")
            }
            LogLevel::Debug => {
                tracing::debug!(target: "berth::plugin", plugin, fields, "{message}")
            }
            LogLevel::Info => tracing::info!(target: "berth::plugin", plugin, fields, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "berth::plugin", plugin, fields, "{message}"),
            LogLevel::Error => {
                tracing::error!(target: "berth::plugin", plugin, fields, "{message}")
            }
        }
        Ok(())
    }

    async fn now(&mut self) -> wasmtime::Result<Datetime> {
        let since_epoch = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        Ok(Datetime {
            seconds: since_epoch.as_secs(),
            nanoseconds: since_epoch.subsec_nanos(),
        })
    }

    async fn monotonic_now(&mut self) -> wasmtime::Result<u64> {
        Ok(u64::try_from(self.services.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    async fn config(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.settings.config.get(&key).cloned())
    }

    async fn config_keys(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(self.settings.config.keys().cloned().collect())
    }
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
