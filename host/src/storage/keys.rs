//! Where the two keys every node of one berth must share come from: the token signing key
//! (a token issued by one node is accepted by another) and the secrets key (a secret
//! sealed by one node opens on another).
//!
//! In order: an environment value (base64 of the key's bytes, for a secret manager), a
//! file named in the configuration (which must exist: nodes that each made their own key
//! would refuse each other's tokens), or the data directory's own key, created on first
//! use (one node, the embedded default). `berth key generate` makes a key for the first two.

use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::config::{KeysConfig, Secret};

/// Which key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// Ed25519, signing registry and refresh tokens (64 bytes: secret and public half).
    TokenSigning,
    /// XChaCha20-Poly1305, sealing secrets at rest (32 bytes).
    Secrets,
}

impl KeyKind {
    /// How it is named in messages and in `berth key generate`.
    pub fn label(self) -> &'static str {
        match self {
            KeyKind::TokenSigning => "token signing key",
            KeyKind::Secrets => "secrets key",
        }
    }

    /// The environment variable that can carry it.
    pub fn env_var(self) -> &'static str {
        match self {
            KeyKind::TokenSigning => "BERTH_TOKEN_SIGNING_KEY",
            KeyKind::Secrets => "BERTH_SECRETS_KEY",
        }
    }

    /// A new random key's bytes.
    pub fn generate(self) -> Vec<u8> {
        match self {
            KeyKind::TokenSigning => jwt_simple::prelude::Ed25519KeyPair::generate().to_bytes(),
            KeyKind::Secrets => {
                use rand::RngCore as _;
                let mut key = vec![0u8; 32];
                rand::thread_rng().fill_bytes(&mut key);
                key
            }
        }
    }
}

/// Where a key was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// In the environment variable.
    Environment,
    /// In the configured file.
    File(PathBuf),
    /// In the data directory (`keys/`), created there if it was not.
    DataDirectory(PathBuf),
}

/// The bytes of `kind`'s key and where they came from. `data_dir_file` is the data
/// directory's own key file; `create` makes it when absent.
pub fn load(
    kind: KeyKind,
    config: &KeysConfig,
    data_dir_file: &Path,
    create: impl FnOnce(&Path) -> std::io::Result<Vec<u8>>,
) -> anyhow::Result<(Vec<u8>, KeySource)> {
    let (value, file) = match kind {
        KeyKind::TokenSigning => (&config.token_signing_key, &config.token_signing_key_file),
        KeyKind::Secrets => (&config.secrets_key, &config.secrets_key_file),
    };
    if let Some(Secret(value)) = value {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .map_err(|e| {
                anyhow::anyhow!(
                    "{} is not base64 ({e}); make one with `berth key generate {}`",
                    kind.env_var(),
                    generate_word(kind)
                )
            })?;
        return Ok((bytes, KeySource::Environment));
    }
    if let Some(file) = file {
        let bytes = std::fs::read(file).map_err(|e| {
            anyhow::anyhow!(
                "cannot read the {} {} named in the configuration: {e}; every node must read the same key (make one with `berth key generate {} --out FILE`, then copy it to each node)",
                kind.label(),
                file.display(),
                generate_word(kind)
            )
        })?;
        return Ok((bytes, KeySource::File(file.clone())));
    }
    let bytes = match std::fs::read(data_dir_file) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(data_dir_file)?,
        Err(e) => {
            return Err(anyhow::anyhow!(
                "cannot read the {} {}: {e}",
                kind.label(),
                data_dir_file.display()
            ));
        }
    };
    Ok((bytes, KeySource::DataDirectory(data_dir_file.to_path_buf())))
}

/// The word `berth key generate` takes for `kind`.
pub fn generate_word(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::TokenSigning => "token",
        KeyKind::Secrets => "secrets",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create_fails(_: &Path) -> std::io::Result<Vec<u8>> {
        Err(std::io::Error::other("created"))
    }

    #[test]
    fn the_environment_wins_over_the_file_and_the_file_over_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("shared.key");
        std::fs::write(&file, b"from the file").unwrap();
        let mut config = KeysConfig {
            secrets_key_file: Some(file.clone()),
            secrets_key: Some(Secret(
                base64::engine::general_purpose::STANDARD.encode(b"from the env"),
            )),
            ..KeysConfig::default()
        };
        let own = dir.path().join("own.key");
        assert_eq!(
            load(KeyKind::Secrets, &config, &own, create_fails).unwrap(),
            (b"from the env".to_vec(), KeySource::Environment)
        );
        config.secrets_key = None;
        assert_eq!(
            load(KeyKind::Secrets, &config, &own, create_fails).unwrap(),
            (b"from the file".to_vec(), KeySource::File(file))
        );
        config.secrets_key_file = None;
        let made = load(KeyKind::Secrets, &config, &own, |_| Ok(b"made".to_vec())).unwrap();
        assert_eq!(made, (b"made".to_vec(), KeySource::DataDirectory(own)));
    }

    #[test]
    fn a_configured_file_that_is_missing_is_an_error_never_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let config = KeysConfig {
            token_signing_key_file: Some(dir.path().join("missing.key")),
            ..KeysConfig::default()
        };
        let err = load(
            KeyKind::TokenSigning,
            &config,
            &dir.path().join("own"),
            create_fails,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("missing.key"), "{err}");
        assert!(err.contains("berth key generate token --out FILE"), "{err}");
    }

    #[test]
    fn an_environment_value_that_is_not_base64_says_so() {
        let config = KeysConfig {
            token_signing_key: Some(Secret("not base64!".into())),
            ..KeysConfig::default()
        };
        let err = load(
            KeyKind::TokenSigning,
            &config,
            Path::new("/nonexistent"),
            create_fails,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("BERTH_TOKEN_SIGNING_KEY is not base64"),
            "{err}"
        );
    }
}
