//! Secrets at rest (plugin secrets, replication endpoints' passwords), sealed with
//! XChaCha20-Poly1305 under one key per data directory (`keys/secrets.key`, 0600).
//!
//! Each value is sealed with a context string as associated data (its table and name), so
//! a sealed value copied to another record does not open there.

use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore as _;

/// Seals and opens values with the data directory's key.
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer")
    }
}

const NONCE_LEN: usize = 24;

impl Sealer {
    /// The key `storage::keys` finds for this node: shared by configuration, or the data
    /// directory's `data_dir_file`, created on first use.
    pub fn load(
        config: &crate::config::KeysConfig,
        data_dir_file: &Path,
    ) -> anyhow::Result<Sealer> {
        use super::keys::{KeyKind, load};
        let (key, source) = load(KeyKind::Secrets, config, data_dir_file, create_key)?;
        if key.len() != 32 {
            anyhow::bail!(
                "the secrets key ({source:?}) is {} bytes, not 32; restore it from a backup (secrets sealed with it cannot be opened otherwise)",
                key.len()
            );
        }
        Ok(Sealer {
            cipher: XChaCha20Poly1305::new_from_slice(&key).expect("32-byte key"),
        })
    }

    /// A random nonce followed by the ciphertext of `value`, bound to `context`.
    pub fn seal(&self, context: &str, value: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: value,
                    aad: context.as_bytes(),
                },
            )
            .expect("encryption cannot fail");
        [nonce.as_slice(), &sealed].concat()
    }

    /// The value sealed under `context`, or `None` if it was sealed under another
    /// context, another key, or has been tampered with.
    pub fn unseal(&self, context: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .ok()
    }
}

fn create_key(path: &Path) -> std::io::Result<Vec<u8>> {
    let key = super::keys::KeyKind::Secrets.generate();
    super::blob::fs::create_file_once_durably(path, &key, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_opens_only_under_its_own_context_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = Sealer::load(&Default::default(), &dir.path().join("k")).unwrap();
        let sealed = sealer.seal("endpoint/a", b"hunter2");
        assert_eq!(sealer.unseal("endpoint/a", &sealed).unwrap(), b"hunter2");
        assert!(sealer.unseal("endpoint/b", &sealed).is_none());
        let reopened = Sealer::load(&Default::default(), &dir.path().join("k")).unwrap();
        assert_eq!(reopened.unseal("endpoint/a", &sealed).unwrap(), b"hunter2");
        let other = Sealer::load(&Default::default(), &dir.path().join("other")).unwrap();
        assert!(other.unseal("endpoint/a", &sealed).is_none());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(sealer.unseal("endpoint/a", &tampered).is_none());
    }

    #[test]
    fn nodes_that_share_the_key_by_configuration_open_each_others_secrets() {
        use base64::Engine as _;
        let key = base64::engine::general_purpose::STANDARD
            .encode(super::super::keys::KeyKind::Secrets.generate());
        let config = crate::config::KeysConfig {
            secrets_key: Some(crate::config::Secret(key)),
            ..Default::default()
        };
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = Sealer::load(&config, &one.path().join("secrets.key")).unwrap();
        let b = Sealer::load(&config, &two.path().join("secrets.key")).unwrap();
        let sealed = a.seal("plugin/aws", b"AKIA...");
        assert_eq!(b.unseal("plugin/aws", &sealed).unwrap(), b"AKIA...");
        assert!(!one.path().join("secrets.key").exists());
        // Without the shared key, each data directory has its own.
        let defaults = crate::config::KeysConfig::default();
        let own = Sealer::load(&defaults, &two.path().join("secrets.key")).unwrap();
        assert!(own.unseal("plugin/aws", &sealed).is_none());
    }
}
