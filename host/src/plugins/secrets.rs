//! Plugin secrets (cloud credentials), sealed at rest with XChaCha20-Poly1305 under a key
//! kept beside the token key (`keys/secrets.key`, 0600). The secret's name is the
//! associated data, so a sealed value moved to another name does not open.

use std::path::Path;
use std::sync::Arc;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore as _;

use super::store;
use crate::storage::meta::Metadata;

/// Seals and opens secret values, and serves them to the plugin runtime.
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
    meta: Arc<Metadata>,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox")
    }
}

impl SecretBox {
    /// Opens the key at `key_path`, creating it on first use.
    pub fn open(key_path: &Path, meta: Arc<Metadata>) -> std::io::Result<SecretBox> {
        let key = match std::fs::read(key_path) {
            Ok(bytes) if bytes.len() == 32 => bytes,
            Ok(_) => {
                return Err(std::io::Error::other(format!(
                    "{} is not a 32-byte key; restore it from a backup (secrets sealed with it cannot be opened otherwise)",
                    key_path.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_key(key_path)?,
            Err(e) => return Err(e),
        };
        let cipher = XChaCha20Poly1305::new_from_slice(&key).expect("32-byte key");
        Ok(SecretBox { cipher, meta })
    }

    /// Nonce (24 bytes) followed by the ciphertext.
    pub fn seal(&self, name: &str, value: &str) -> Vec<u8> {
        let mut nonce = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad: name.as_bytes(),
                },
            )
            .expect("encryption cannot fail");
        [nonce.as_slice(), &sealed].concat()
    }

    fn unseal(&self, name: &str, sealed: &[u8]) -> Option<String> {
        if sealed.len() < 24 {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(24);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: name.as_bytes(),
                },
            )
            .ok()?;
        String::from_utf8(plain).ok()
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

fn create_key(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut key = vec![0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    crate::storage::blob::fs::write_file_durably(path, &key, true)?;
    Ok(key)
}
