//! The token service's cryptography: signing and verifying registry tokens (Docker token
//! spec, JWT with EdDSA and a `kid`) and refresh tokens, with a persisted key.
//!
//! Verified access tokens are cached by their text, so a client that reuses one token for
//! thousands of requests pays for one signature check, not thousands.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use jwt_simple::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use super::scope::Scope;

/// Verified access tokens kept; past it the cache is cleared (tokens live minutes).
const MAX_CACHED_TOKENS: usize = 50_000;

/// Clock skew tolerated between issuing and checking a token. None: the same process (the
/// same clock) does both. jwt-simple's default would accept tokens 15 minutes past expiry.
const TIME_TOLERANCE_SECS: u64 = 0;

/// What a token carries besides the registered claims.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TokenClaims {
    /// Granted access (access tokens).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access: Vec<Scope>,
    /// `refresh` for refresh tokens; absent for access tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// A token that passed verification.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// Who it was issued to.
    pub subject: String,
    /// What it grants (shared: every request with this token holds it).
    pub access: Arc<Vec<Scope>>,
    /// When it was issued (seconds since the epoch).
    pub issued_at: u64,
    /// When it expires (seconds since the epoch).
    pub expires_at: u64,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenError {
    /// Bad signature, wrong issuer or audience, malformed, expired, or the wrong kind.
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Signs and checks tokens for one service.
pub struct TokenService {
    key: Ed25519KeyPair,
    public: Ed25519PublicKey,
    kid: String,
    issuer: String,
    service: String,
    access_ttl_secs: u64,
    refresh_ttl_secs: u64,
    cache: Mutex<HashMap<String, Verified>>,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService")
            .field("kid", &self.kid)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

/// The signing key: from the environment, a configured file, or the data directory's
/// `token_key` file, created (mode 0600, written atomically) on first start.
pub fn load_key(
    config: &crate::config::KeysConfig,
    data_dir_file: &Path,
) -> anyhow::Result<Ed25519KeyPair> {
    use crate::storage::keys::{KeyKind, KeySource, load};
    let (bytes, source) = load(KeyKind::TokenSigning, config, data_dir_file, |path| {
        let key = KeyKind::TokenSigning.generate();
        // Nodes sharing a data directory and starting together all end up with one key.
        crate::storage::blob::fs::create_file_once_durably(path, &key, true)
    })?;
    let key = Ed25519KeyPair::from_bytes(&bytes).map_err(|e| {
        let from = match source {
            KeySource::Environment => "BERTH_TOKEN_SIGNING_KEY".to_string(),
            KeySource::File(p) | KeySource::DataDirectory(p) => p.display().to_string(),
        };
        anyhow::anyhow!("the token signing key in {from} is unreadable: {e}")
    })?;
    Ok(key)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TokenService {
    /// A service named `service` (the `aud` of its tokens) signing with `key`.
    pub fn new(
        key: Ed25519KeyPair,
        issuer: &str,
        service: &str,
        access_ttl_secs: u64,
        refresh_ttl_secs: u64,
    ) -> TokenService {
        let public = key.public_key();
        let kid = hex::encode(&sha2::Sha256::digest(public.to_bytes())[..8]);
        let key = key.with_key_id(&kid);
        let public = public.with_key_id(&kid);
        TokenService {
            key,
            public,
            kid,
            issuer: issuer.to_owned(),
            service: service.to_owned(),
            access_ttl_secs,
            refresh_ttl_secs,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The service name tokens are bound to.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Lifetime of access tokens, in seconds.
    pub fn access_ttl_secs(&self) -> u64 {
        self.access_ttl_secs
    }

    fn sign(&self, subject: &str, claims: TokenClaims, ttl_secs: u64) -> String {
        let claims = Claims::with_custom_claims(claims, Duration::from_secs(ttl_secs))
            .with_issuer(&self.issuer)
            .with_audience(&self.service)
            .with_subject(subject)
            .with_jwt_id(uuid::Uuid::new_v4().to_string());
        self.key
            .sign(claims)
            .expect("signing a token with a valid key")
    }

    /// An access token for `subject` granting `access`.
    pub fn issue_access(&self, subject: &str, access: Vec<Scope>) -> String {
        self.sign(
            subject,
            TokenClaims { access, kind: None },
            self.access_ttl_secs,
        )
    }

    /// A refresh token for `subject` (the `offline_token` / `access_type=offline` flows).
    pub fn issue_refresh(&self, subject: &str) -> String {
        self.sign(
            subject,
            TokenClaims {
                access: Vec::new(),
                kind: Some("refresh".into()),
            },
            self.refresh_ttl_secs,
        )
    }

    fn verify(&self, token: &str) -> Result<(JWTClaims<TokenClaims>, u64, u64), TokenError> {
        let options = VerificationOptions {
            allowed_issuers: Some(HashSet::from([self.issuer.clone()])),
            allowed_audiences: Some(HashSet::from([self.service.clone()])),
            required_key_id: Some(self.kid.clone()),
            time_tolerance: Some(Duration::from_secs(TIME_TOLERANCE_SECS)),
            ..VerificationOptions::default()
        };
        let claims = self
            .public
            .verify_token::<TokenClaims>(token, Some(options))
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        let issued_at = claims.issued_at.map(|t| t.as_secs()).unwrap_or(0);
        let expires_at = claims.expires_at.map(|t| t.as_secs()).unwrap_or(0);
        Ok((claims, issued_at, expires_at))
    }

    /// Checks an access token: signature, issuer, audience (this service), key id, expiry.
    pub fn verify_access(&self, token: &str) -> Result<Verified, TokenError> {
        let now = now_secs();
        if let Some(hit) = self.cache.lock().expect("token cache lock").get(token)
            && hit.expires_at > now
        {
            return Ok(hit.clone());
        }
        let (claims, issued_at, expires_at) = self.verify(token)?;
        if claims.custom.kind.is_some() {
            return Err(TokenError::Invalid(
                "a refresh token cannot be used as an access token".into(),
            ));
        }
        let verified = Verified {
            subject: claims.subject.unwrap_or_default(),
            access: Arc::new(claims.custom.access),
            issued_at,
            expires_at,
        };
        let mut cache = self.cache.lock().expect("token cache lock");
        if cache.len() >= MAX_CACHED_TOKENS {
            cache.retain(|_, v| v.expires_at > now);
            if cache.len() >= MAX_CACHED_TOKENS {
                cache.clear();
            }
        }
        cache.insert(token.to_owned(), verified.clone());
        Ok(verified)
    }

    /// Checks a refresh token; returns its subject and issue time.
    pub fn verify_refresh(&self, token: &str) -> Result<(String, u64), TokenError> {
        let (claims, issued_at, _) = self.verify(token)?;
        if claims.custom.kind.as_deref() != Some("refresh") {
            return Err(TokenError::Invalid("not a refresh token".into()));
        }
        Ok((claims.subject.unwrap_or_default(), issued_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> TokenService {
        TokenService::new(
            Ed25519KeyPair::generate(),
            "berth",
            "berth-registry",
            300,
            3600,
        )
    }

    #[test]
    fn issued_tokens_verify_and_carry_their_access() {
        let s = service();
        let t = s.issue_access("alice", vec![Scope::repository("team/app", &["pull"])]);
        let v = s.verify_access(&t).unwrap();
        assert_eq!(v.subject, "alice");
        assert_eq!(*v.access, vec![Scope::repository("team/app", &["pull"])]);
        assert!(v.expires_at > v.issued_at);
    }

    #[test]
    fn tokens_from_another_key_or_service_are_refused() {
        let a = service();
        let b = service();
        let t = b.issue_access("alice", vec![]);
        assert!(a.verify_access(&t).is_err(), "another key");
        let other = TokenService::new(
            Ed25519KeyPair::generate(),
            "berth",
            "other-service",
            300,
            3600,
        );
        assert!(a.verify_access(&other.issue_access("x", vec![])).is_err());
    }

    #[test]
    fn a_tampered_payload_fails_the_signature() {
        let s = service();
        let t = s.issue_access("alice", vec![Scope::repository("team/app", &["pull"])]);
        let parts: Vec<&str> = t.split('.').collect();
        use base64::Engine;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = String::from_utf8(engine.decode(parts[1]).unwrap())
            .unwrap()
            .replace("\"pull\"", "\"push\"");
        let forged = format!("{}.{}.{}", parts[0], engine.encode(payload), parts[2]);
        assert!(s.verify_access(&forged).is_err());
    }

    #[test]
    fn refresh_and_access_tokens_are_not_interchangeable() {
        let s = service();
        let r = s.issue_refresh("alice");
        assert!(s.verify_access(&r).is_err());
        assert_eq!(s.verify_refresh(&r).unwrap().0, "alice");
        assert!(s.verify_refresh(&s.issue_access("alice", vec![])).is_err());
    }

    #[test]
    fn an_expired_token_is_refused() {
        let s = TokenService::new(Ed25519KeyPair::generate(), "berth", "svc", 1, 1);
        let t = s.issue_access("alice", vec![]);
        assert!(s.verify(&t).is_ok());
        std::thread::sleep(std::time::Duration::from_millis(2100));
        assert!(s.verify(&t).is_err(), "expired");
    }
}
