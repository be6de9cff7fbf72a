//! Plugin secrets (cloud credentials), sealed at rest by the data directory's
//! [`Sealer`]. The secret's name is the sealing context, so a sealed value moved to
//! another name does not open.

use std::sync::Arc;

use super::store;
use crate::storage::meta::Metadata;
use crate::storage::sealing::Sealer;

/// Seals and opens secret values, and serves them to the plugin runtime.
pub struct SecretBox {
    sealer: Arc<Sealer>,
    meta: Arc<Metadata>,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox")
    }
}

impl SecretBox {
    /// Secrets in `meta`, sealed by `sealer`.
    pub fn new(sealer: Arc<Sealer>, meta: Arc<Metadata>) -> SecretBox {
        SecretBox { sealer, meta }
    }

    /// Nonce (24 bytes) followed by the ciphertext.
    pub fn seal(&self, name: &str, value: &str) -> Vec<u8> {
        self.sealer.seal(name, value.as_bytes())
    }

    fn unseal(&self, name: &str, sealed: &[u8]) -> Option<String> {
        String::from_utf8(self.sealer.unseal(name, sealed)?).ok()
    }
}

impl berth_plugin_runtime::SecretSource for SecretBox {
    fn secret(&self, name: &str) -> Option<String> {
        let sealed = match self.meta.read().and_then(|tx| store::secret(&tx, name)) {
            Ok(sealed) => sealed?,
            Err(e) => {
                tracing::error!(secret = name, error = %e, "cannot read a plugin secret");
                return None;
            }
        };
        let value = self.unseal(name, &sealed);
        if value.is_none() {
            tracing::error!(
                secret = name,
                "a stored plugin secret does not open with this data directory's key"
            );
        }
        value
    }
}
