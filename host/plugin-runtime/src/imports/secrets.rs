//! `berth:plugin/secrets`: hands out a secret only when it is granted to the plugin.

use crate::state::CallState;
use crate::v0_1_0::secrets::{Host, SecretError};

impl Host for CallState {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, SecretError>> {
        if !self.settings.grants.secrets.contains(&name) {
            tracing::warn!(
                plugin = &*self.plugin,
                secret = name,
                "refused a secret not granted to the plugin"
            );
            return Ok(Err(SecretError::NotGranted(name)));
        }
        Ok(match self.services.secrets.secret(&name) {
            Some(value) => Ok(value),
            None => Err(SecretError::NotSet(name)),
        })
    }
}
