//! `berth:plugin/secrets`: hands out a secret only when it is granted to the plugin.

use crate::log::escape;
use crate::state::CallState;

/// Why a secret was not handed out, whatever the package version.
pub(crate) enum Refusal {
    NotGranted(String),
    NotSet(String),
}

impl CallState {
    /// The value of secret `name`, if it is granted and set.
    pub(crate) fn granted_secret(&mut self, name: String) -> Result<String, Refusal> {
        if !self.settings.grants.secrets.contains(&name) {
            tracing::warn!(
                plugin = &*self.plugin,
                secret = %escape(&name),
                "refused a secret not granted to the plugin"
            );
            return Err(Refusal::NotGranted(name));
        }
        match self.services.secrets.secret(&name) {
            Some(value) => Ok(value),
            None => Err(Refusal::NotSet(name)),
        }
    }
}
