//! [`AccessControl`]: turns credentials into a [`Principal`], decides what it may do to a
//! repository, and grants token scopes. The registry and the admin API call it; neither
//! looks at a password or a token itself.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use base64::Engine;
use sha2::Digest as _;

use super::audit::AuditLog;
use super::password_checks::PasswordChecks;
use super::principal::Principal;
use super::ratelimit::FailureLimiter;
use super::scope::Scope;
use super::token::{TokenError, TokenService};
use super::{passwords, robots};
use crate::config::AuthConfig;
use crate::storage::store::{Store, StoreError, now_millis};

mod access_cache;
mod authorize;

pub use authorize::{ProjectAccess, RepositoryAccess};

/// Why a caller could not be authenticated.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Unknown user, wrong password, disabled or expired account.
    #[error("invalid username or password")]
    BadCredentials,
    /// Too many failed logins for this account or address.
    #[error("too many failed logins; try again in {} seconds", .0.as_secs().max(1))]
    RateLimited(Duration),
    /// A bearer token that is not (or no longer) valid.
    #[error("{0}")]
    InvalidToken(String),
    /// The Authorization header is malformed.
    #[error("malformed Authorization header: {0}")]
    Malformed(&'static str),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an Authorization header carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Credentials {
    /// No header.
    None,
    /// `Basic base64(user:password)`.
    Basic {
        /// Username or robot name.
        username: String,
        /// Password or robot secret.
        password: String,
    },
    /// `Bearer <token>`.
    Bearer(String),
}

/// An identified caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who.
    pub principal: Principal,
    /// For bearer tokens, exactly what the token grants; the registry checks these rather
    /// than the principal's current rights, as the token spec intends.
    pub token_scopes: Option<Arc<Vec<Scope>>>,
    /// Where from.
    pub source: IpAddr,
}

/// The auth service.
pub struct AccessControl {
    store: Store,
    /// Token signing and checking.
    pub tokens: TokenService,
    /// The audit log.
    pub audit: AuditLog,
    per_account: FailureLimiter,
    per_source: FailureLimiter,
    /// Successful Basic logins by digest of `user:password`: Basic credentials arrive with
    /// every request of some clients, and argon2 on each would cap throughput at a few
    /// dozen requests a second.
    basic_cache: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
    /// The memory budget of password checks running at once, and the credentials being
    /// checked (a burst of requests with the same credentials costs one hash).
    checks: PasswordChecks,
    /// Principals of token subjects, valid while `generation` is unchanged.
    subjects: Mutex<HashMap<String, CachedSubject>>,
    /// Bumped by every change to users, robots, projects or memberships that could revoke
    /// access.
    generation: std::sync::atomic::AtomicU64,
    /// The store's revocation counter when this node last looked (see
    /// [`AccessControl::watch_revocations`]).
    revision_seen: std::sync::atomic::AtomicU64,
    /// Projects and roles as authorisation last read them, valid while `generation` is
    /// unchanged.
    access_cache: access_cache::AccessCache,
    config: AuthConfig,
}

#[derive(Debug, Clone)]
struct CachedSubject {
    principal: Principal,
    generation: u64,
    /// Tokens issued before this (seconds) are void (a password change).
    valid_since_secs: u64,
    /// When the account expires (ms), for robots.
    expires_at: Option<u64>,
}

impl std::fmt::Debug for AccessControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessControl")
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

/// Most cached Basic logins.
const MAX_BASIC_CACHE: usize = 10_000;

impl AccessControl {
    /// Builds the service: loads the token key (`storage::keys`: shared by configuration,
    /// or the data directory's, created on first start), and
    /// starts the audit writer. Must run inside a Tokio runtime.
    pub fn new(
        store: Store,
        config: AuthConfig,
        keys: &crate::config::KeysConfig,
        data_dir: &Path,
    ) -> anyhow::Result<AccessControl> {
        let key = super::token::load_key(
            keys,
            &crate::storage::paths::DataPaths::new(data_dir).token_key(),
        )?;
        let tokens = TokenService::new(
            key,
            &config.issuer,
            &config.service,
            config.token_ttl_secs,
            config.refresh_ttl_secs,
        );
        let audit = AuditLog::start(
            store.audit_log(&crate::storage::paths::DataPaths::new(data_dir).audit_db())?,
            Duration::from_secs(config.audit_retention_days * 86_400),
        );
        let window = Duration::from_secs(config.login_window_secs);
        let revision = store.read_blocking(|tx| tx.auth().revision())?;
        Ok(AccessControl {
            store: store.clone(),
            tokens,
            audit,
            per_account: FailureLimiter::new(
                store.clone(),
                config.login_failures_per_account,
                window,
            ),
            per_source: FailureLimiter::new(
                store.clone(),
                config.login_failures_per_source,
                window,
            ),
            basic_cache: Mutex::new(HashMap::new()),
            checks: PasswordChecks::new(config.password_check_memory_mib.saturating_mul(1024)),
            subjects: Mutex::new(HashMap::new()),
            generation: std::sync::atomic::AtomicU64::new(0),
            revision_seen: std::sync::atomic::AtomicU64::new(revision),
            access_cache: Default::default(),
            config,
        })
    }

    /// The metadata store, for auth's services.
    pub(super) fn store(&self) -> &Store {
        &self.store
    }

    /// The configuration.
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// Reads the Authorization header.
    pub fn credentials(headers: &HeaderMap) -> Result<Credentials, AuthError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(Credentials::None);
        };
        let value = value
            .to_str()
            .map_err(|_| AuthError::Malformed("not ASCII"))?;
        let (scheme, rest) = value
            .split_once(' ')
            .ok_or(AuthError::Malformed("expected '<scheme> <credentials>'"))?;
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(rest.trim())
                    .map_err(|_| AuthError::Malformed("Basic credentials are not base64"))?;
                let decoded = String::from_utf8(decoded)
                    .map_err(|_| AuthError::Malformed("Basic credentials are not UTF-8"))?;
                let (username, password) = decoded
                    .split_once(':')
                    .ok_or(AuthError::Malformed("Basic credentials need user:password"))?;
                Ok(Credentials::Basic {
                    username: username.to_owned(),
                    password: password.to_owned(),
                })
            }
            "bearer" => Ok(Credentials::Bearer(rest.trim().to_owned())),
            _ => Err(AuthError::Malformed(
                "unsupported scheme; use Basic or Bearer",
            )),
        }
    }

    /// Checks a username and password (or robot name and secret). Rate-limited per
    /// account and per source; blocks on argon2, so call it from `spawn_blocking`.
    pub fn login(
        &self,
        username: &str,
        password: &str,
        source: IpAddr,
    ) -> Result<Principal, AuthError> {
        let account_key = format!("account:{}", username.to_ascii_lowercase());
        let source_key = format!("source:{source}");
        let blocked = match self.per_account.blocked(&account_key)? {
            Some(wait) => Some(wait),
            None => self.per_source.blocked(&source_key)?,
        };
        if let Some(wait) = blocked {
            return Err(AuthError::RateLimited(wait));
        }
        match self.check_password(username, password)? {
            Some(principal) => {
                self.per_account.succeed(&account_key)?;
                Ok(principal)
            }
            None => {
                self.per_account.fail(&account_key)?;
                self.per_source.fail(&source_key)?;
                Err(AuthError::BadCredentials)
            }
        }
    }

    /// [`AccessControl::login`] with a short-lived cache of successes.
    pub fn login_cached(
        &self,
        username: &str,
        password: &str,
        source: IpAddr,
    ) -> Result<Principal, AuthError> {
        let mut h = sha2::Sha256::new();
        h.update(username.as_bytes());
        h.update([0]);
        h.update(password.as_bytes());
        let key: [u8; 32] = h.finalize().into();
        if let Some(p) = self.cached_login(&key) {
            return Ok(p);
        }
        // Wait for a check of the same credentials already running: its answer lands in
        // the cache.
        let _claim = self.checks.claim(key);
        if let Some(p) = self.cached_login(&key) {
            return Ok(p);
        }
        let principal = self.login(username, password, source)?;
        let mut cache = self.basic_cache.lock().expect("cache lock");
        if cache.len() >= MAX_BASIC_CACHE {
            cache.clear();
        }
        cache.insert(key, (principal.clone(), Instant::now()));
        Ok(principal)
    }

    fn cached_login(&self, key: &[u8; 32]) -> Option<Principal> {
        let ttl = Duration::from_secs(self.config.credential_cache_secs);
        let cache = self.basic_cache.lock().expect("cache lock");
        cache
            .get(key)
            .filter(|(_, at)| at.elapsed() < ttl)
            .map(|(p, _)| p.clone())
    }

    /// Forgets the logins this node cached whenever the store's revocation counter moved
    /// (a password change, a disable or deletion, on any node): looks every `every`, for as
    /// long as it runs. What another node revoked is refused here within `every` and a
    /// read.
    pub async fn watch_revocations(self: Arc<Self>, every: Duration) {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match self.store.read(|tx| tx.auth().revision()).await {
                Ok(revision) => {
                    let seen = self
                        .revision_seen
                        .swap(revision, std::sync::atomic::Ordering::AcqRel);
                    if seen != revision {
                        self.invalidate_cached_logins();
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the revocation counter; cached logins are kept until it answers")
                }
            }
        }
    }

    /// Forgets cached logins, token subjects, projects and roles (after a password change,
    /// a disable, a revocation, a membership or project change).
    pub fn invalidate_cached_logins(&self) {
        self.basic_cache.lock().expect("cache lock").clear();
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.subjects.lock().expect("subjects lock").clear();
    }

    fn check_password(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<Principal>, AuthError> {
        if username.starts_with(robots::PREFIX) {
            let robot = self
                .store
                .read_blocking(|tx| Ok::<_, AuthError>(tx.auth().robot(username)?))?;
            let Some(robot) = robot else {
                return Ok(None);
            };
            let expired = robot.expires_at.is_some_and(|e| e <= now_millis());
            let matches = passwords::constant_time_eq(
                &passwords::secret_digest(password),
                &robot.secret_digest,
            );
            return Ok(
                (matches && !robot.disabled && !expired).then(|| Principal::Robot {
                    name: username.to_owned(),
                    grants: robot.grants,
                }),
            );
        }
        let user = self
            .store
            .read_blocking(|tx| Ok::<_, AuthError>(tx.auth().user(username)?))?;
        let Some(user) = user else {
            // Spend the same time as a real check, so response timing does not tell
            // which usernames exist.
            let dummy = DUMMY_HASH.get_or_init(|| passwords::hash("not a real password"));
            let _memory = self.checks.memory(passwords::memory_kib(dummy));
            let _ = passwords::verify(password, dummy);
            return Ok(None);
        };
        let ok = {
            let _memory = self
                .checks
                .memory(passwords::memory_kib(&user.password_hash));
            passwords::verify(password, &user.password_hash)
        } && !user.disabled;
        Ok(ok.then(|| Principal::User {
            name: username.to_owned(),
            admin: user.admin,
        }))
    }

    /// The principal a token was issued to, if it may still act: users and robots can be
    /// disabled, deleted or expire while their tokens are outstanding.
    pub fn principal_for_subject(
        &self,
        subject: &str,
        issued_at_secs: u64,
    ) -> Result<Principal, AuthError> {
        if subject == "anonymous" {
            return Ok(Principal::Anonymous);
        }
        let gone = || {
            AuthError::InvalidToken(format!(
                "the account {subject} no longer exists or is disabled"
            ))
        };
        let generation = self.generation.load(std::sync::atomic::Ordering::Acquire);
        let cached = self
            .subjects
            .lock()
            .expect("subjects lock")
            .get(subject)
            .filter(|c| c.generation == generation)
            .cloned();
        let entry = match cached {
            Some(c) => c,
            None => {
                let entry = if subject.starts_with(robots::PREFIX) {
                    let robot = self
                        .store
                        .read_blocking(|tx| Ok::<_, AuthError>(tx.auth().robot(subject)?))?
                        .filter(|r| !r.disabled)
                        .ok_or_else(gone)?;
                    CachedSubject {
                        principal: Principal::Robot {
                            name: subject.to_owned(),
                            grants: robot.grants,
                        },
                        generation,
                        valid_since_secs: 0,
                        expires_at: robot.expires_at,
                    }
                } else {
                    let user = self
                        .store
                        .read_blocking(|tx| Ok::<_, AuthError>(tx.auth().user(subject)?))?
                        .filter(|u| !u.disabled)
                        .ok_or_else(gone)?;
                    CachedSubject {
                        principal: Principal::User {
                            name: subject.to_owned(),
                            admin: user.admin,
                        },
                        generation,
                        valid_since_secs: user.password_changed_at / 1000,
                        expires_at: None,
                    }
                };
                let mut subjects = self.subjects.lock().expect("subjects lock");
                if subjects.len() >= MAX_BASIC_CACHE {
                    subjects.clear();
                }
                subjects.insert(subject.to_owned(), entry.clone());
                entry
            }
        };
        if entry.valid_since_secs > issued_at_secs
            || entry.expires_at.is_some_and(|e| e <= now_millis())
        {
            return Err(gone());
        }
        Ok(entry.principal)
    }

    /// Identifies the caller of a request. Blocking work (argon2 on a cache miss) is moved
    /// off the async worker.
    pub async fn identify(
        self: &Arc<Self>,
        headers: &HeaderMap,
        source: IpAddr,
    ) -> Result<Caller, AuthError> {
        match AccessControl::credentials(headers)? {
            Credentials::None => Ok(Caller {
                principal: Principal::Anonymous,
                token_scopes: None,
                source,
            }),
            Credentials::Basic { username, password } => {
                let this = self.clone();
                let principal = tokio::task::spawn_blocking(move || {
                    this.login_cached(&username, &password, source)
                })
                .await
                .map_err(|e| {
                    AuthError::Store(StoreError::Backend(format!("login task failed: {e}")))
                })??;
                Ok(Caller {
                    principal,
                    token_scopes: None,
                    source,
                })
            }
            Credentials::Bearer(token) => {
                let verified = self
                    .tokens
                    .verify_access(&token)
                    .map_err(|TokenError::Invalid(why)| AuthError::InvalidToken(why))?;
                let principal =
                    self.principal_for_subject(&verified.subject, verified.issued_at)?;
                Ok(Caller {
                    principal,
                    token_scopes: Some(verified.access),
                    source,
                })
            }
        }
    }

    /// A `WWW-Authenticate` challenge pointing at the token service.
    pub fn challenge(&self, realm: &str, scope: Option<&str>, error: Option<&str>) -> String {
        let mut c = format!(
            "Bearer realm=\"{realm}\",service=\"{}\"",
            self.tokens.service()
        );
        if let Some(scope) = scope {
            c.push_str(&format!(",scope=\"{scope}\""));
        }
        if let Some(error) = error {
            c.push_str(&format!(",error=\"{error}\""));
        }
        c
    }

    /// The token endpoint's URL as clients should reach it: configured, or derived from the
    /// request's Host header.
    pub fn realm(&self, headers: &HeaderMap, tls: bool) -> String {
        if let Some(realm) = &self.config.realm {
            return realm.clone();
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        format!(
            "{}://{host}/service/token",
            if tls { "https" } else { "http" }
        )
    }
}

static DUMMY_HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
