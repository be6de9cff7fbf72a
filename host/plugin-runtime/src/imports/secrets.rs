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
        // The call's own secrets (a cluster's credentials, for a call about that
        // cluster) come first; they exist only while the call runs.
        if let Some(value) = self.scope.as_ref().and_then(|s| s.secrets.get(&name)) {
            return Ok(value.clone());
        }
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
