//! Plugin secrets (cloud credentials), sealed at rest by the data directory's
//! [`Sealer`]. The secret's name is the sealing context, so a sealed value moved to
//! another name does not open.

use std::sync::Arc;

use crate::storage::sealing::Sealer;
use crate::storage::store::Store;

/// Seals and opens secret values, and serves them to the plugin runtime.
pub struct SecretBox {
    sealer: Arc<Sealer>,
    store: Store,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox")
    }
}

impl SecretBox {
    /// Secrets in `store`, sealed by `sealer`.
    pub fn new(sealer: Arc<Sealer>, store: Store) -> SecretBox {
        SecretBox { sealer, store }
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
        // Called by a plugin's host import on the runtime's own threads, which may block.
        let sealed = match self.store.read_blocking(|tx| tx.plugins().secret(name)) {
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
