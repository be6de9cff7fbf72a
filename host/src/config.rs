//! Every configuration knob, its default, and where it can be set.
//!
//! Precedence, lowest to highest: built-in defaults, the TOML file (`--config` /
//! `BERTH_CONFIG`), `BERTH_<SECTION>__<KEY>` environment variables (e.g.
//! `BERTH_REGISTRY__DELETE_ENABLED=false`), then command-line flags and their short
//! environment forms (`--listen`/`BERTH_LISTEN`, `--data-dir`/`BERTH_DATA_DIR`, …).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The HTTP listener.
    pub server: ServerConfig,
    /// Where data lives.
    pub storage: StorageConfig,
    /// Where metadata lives: the data directory's redb database, or PostgreSQL.
    pub metadata: MetadataConfig,
    /// Registry limits and switches.
    pub registry: RegistryConfig,
    /// Login, tokens, audit.
    pub auth: AuthConfig,
    /// Logging.
    pub log: LogConfig,
    /// The plugin runtime.
    pub plugins: PluginsConfig,
    /// The replication engine.
    pub replication: ReplicationConfig,
    /// Resource scheduling.
    pub scheduling: SchedulingConfig,
    /// The keys every node of one berth shares (see `storage::keys`).
    pub keys: KeysConfig,
    /// The password for the `admin` user created on first start (`--admin-password`,
    /// `BERTH_ADMIN_PASSWORD`). Never read from or printed into the file.
    #[serde(skip)]
    pub admin_password: Option<Secret>,
}

/// A secret string whose `Debug` form is redacted, so it never reaches a log line.
#[derive(Clone, PartialEq, Default)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The HTTP listener.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:5000`: loopback only until an operator
    /// chooses to expose it. Port 0 picks a free port (printed at start).
    pub listen: SocketAddr,
    /// PEM certificate chain for TLS. With `tls_key`, berth serves HTTPS (HTTP/1.1 and
    /// HTTP/2); without, plain HTTP, which docker accepts only for `insecure-registries`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key matching `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Seconds a shutdown (SIGTERM, Ctrl-C) waits for requests in flight before closing
    /// their connections. Default 30. Interrupted uploads stay resumable either way.
    pub shutdown_grace_secs: u64,
    /// This node's name among several serving one registry: leases on jobs carry it.
    /// Unset, a name generated on first start and kept in the data directory (`node-id`);
    /// nodes that share a data directory must each set their own.
    pub node_id: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            tls_cert: None,
            tls_key: None,
            shutdown_grace_secs: 30,
            node_id: None,
        }
    }
}

/// The token signing key and the secrets key. Unset, each comes from the data directory
/// (`keys/`, created on first start): right for one node. Several nodes serving one
/// registry must read the same two keys, from files or from the environment.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KeysConfig {
    /// A file holding the token signing key (as `berth key generate token --out FILE`
    /// writes it, or a copy of a data directory's `keys/token-ed25519.key`). It must exist.
    pub token_signing_key_file: Option<PathBuf>,
    /// A file holding the secrets key (`berth key generate secrets --out FILE`, or a copy of
    /// a data directory's `keys/secrets.key`). It must exist.
    pub secrets_key_file: Option<PathBuf>,
    /// The token signing key as base64, from `BERTH_TOKEN_SIGNING_KEY`; wins over the file.
    /// Never read from or printed into the file.
    #[serde(skip)]
    pub token_signing_key: Option<Secret>,
    /// The secrets key as base64, from `BERTH_SECRETS_KEY`; wins over the file. Never read
    /// from or printed into the file.
    #[serde(skip)]
    pub secrets_key: Option<Secret>,
}

/// Where data lives.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// The data directory: metadata (`berth.redb`), blobs, upload sessions. Default
    /// `./berth-data`. Its layout is described in `storage/paths.rs`.
    pub data_dir: PathBuf,
}

impl Default for StorageConfig {
    fn default() -> StorageConfig {
        StorageConfig {
            data_dir: PathBuf::from("berth-data"),
        }
    }
}

/// Which metadata store berth uses.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MetadataBackend {
    /// The data directory's redb database (`berth.redb`): one node.
    #[default]
    Redb,
    /// A PostgreSQL database, which several nodes sharing one blob directory use at once.
    Postgres,
}

/// Where metadata lives.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetadataConfig {
    /// `redb` (default) or `postgres`.
    pub backend: MetadataBackend,
    /// The PostgreSQL connection string (`postgres://user:password@host:5432/berth?sslmode=verify-full`
    /// or `host=… user=… dbname=…`), for `backend = "postgres"`. Its password is never
    /// printed; prefer `BERTH_METADATA__URL` to a file for it.
    pub url: Option<String>,
    /// Connections each node keeps open at most. Default 16.
    pub connections: u32,
    /// A PEM file of CA certificates trusted for the server's TLS certificate, beside
    /// the system's roots (whether TLS is used is the connection string's `sslmode`).
    pub ca_file: Option<PathBuf>,
}

impl Default for MetadataConfig {
    fn default() -> MetadataConfig {
        MetadataConfig {
            backend: MetadataBackend::Redb,
            url: None,
            connections: 16,
            ca_file: None,
        }
    }
}

/// Registry limits and switches.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// Whether manifests, tags and blob links may be deleted through the API. Default true.
    pub delete_enabled: bool,
    /// Largest manifest accepted, in bytes. Default 4 MiB (the OCI spec's floor); a
    /// larger one gets 413 MANIFEST_INVALID.
    pub max_manifest_bytes: usize,
    /// Largest blob accepted, in bytes. Default: no limit. An upload that grows past it
    /// gets 413 SIZE_INVALID and keeps what was acknowledged before.
    pub max_blob_bytes: Option<u64>,
    /// Seconds an upload session may sit without a chunk before it is removed with its
    /// data. Default 604800 (7 days, as CNCF distribution). A client resuming later gets
    /// BLOB_UPLOAD_UNKNOWN and starts over.
    pub upload_ttl_secs: u64,
    /// Seconds between sweeps for expired upload sessions. Default 3600.
    pub upload_purge_interval_secs: u64,
}

impl Default for RegistryConfig {
    fn default() -> RegistryConfig {
        RegistryConfig {
            delete_enabled: true,
            max_manifest_bytes: 4 * 1024 * 1024,
            max_blob_bytes: None,
            upload_ttl_secs: 7 * 24 * 3600,
            upload_purge_interval_secs: 3600,
        }
    }
}

/// Login, tokens, audit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The service name tokens are bound to (`aud`), and that clients send as `service=`.
    /// Default `berth`. Two berth instances sharing a name accept each other's tokens only
    /// if they also share the signing key.
    pub service: String,
    /// The `iss` of issued tokens. Default `berth`.
    pub issuer: String,
    /// The token endpoint URL announced in `WWW-Authenticate`. Default: derived from each
    /// request's Host header (`http(s)://<host>/service/token`); set it behind a proxy
    /// that rewrites Host.
    pub realm: Option<String>,
    /// Lifetime of registry tokens, in seconds. Default 300, as Harbor. Permission changes
    /// reach holders of existing tokens only when these expire.
    pub token_ttl_secs: u64,
    /// Lifetime of refresh tokens (`offline_token=true`), in seconds. Default 30 days.
    /// Changing a password voids the refresh tokens issued before.
    pub refresh_ttl_secs: u64,
    /// Failed logins allowed per account within `login_window_secs` before further tries
    /// get 429. Default 5.
    pub login_failures_per_account: u32,
    /// Failed logins allowed per source address within the window. Default 20.
    pub login_failures_per_source: u32,
    /// The failed-login window, in seconds. Default 300.
    pub login_window_secs: u64,
    /// Seconds a successful Basic login is remembered (by a digest of the credentials), so
    /// clients that send Basic on every request are not slowed by argon2. Default 60;
    /// password changes and revocations clear it at once.
    pub credential_cache_secs: u64,
    /// Days audit entries are kept. Default 90.
    pub audit_retention_days: u64,
    /// Memory all password checks running at once may take, in MiB. Each argon2id check
    /// holds its hash's memory (7 MiB) while it runs; checks beyond the budget wait.
    /// Default 16: two at once. A login burst never takes more.
    pub password_check_memory_mib: u64,
}

impl Default for AuthConfig {
    fn default() -> AuthConfig {
        AuthConfig {
            service: "berth".to_owned(),
            issuer: "berth".to_owned(),
            realm: None,
            token_ttl_secs: 300,
            refresh_ttl_secs: 30 * 86_400,
            login_failures_per_account: 5,
            login_failures_per_source: 20,
            login_window_secs: 300,
            credential_cache_secs: 60,
            audit_retention_days: 90,
            password_check_memory_mib: 16,
        }
    }
}

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter such as `info` or `berth=debug`. Default `info`. `RUST_LOG`, when
    /// set, wins.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            level: "info".to_owned(),
        }
    }
}

/// The plugin runtime.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// Threads that run plugin code, apart from the request handlers, so a busy plugin
    /// slows other plugins and not the registry. Default 2.
    pub worker_threads: usize,
    /// Plugin calls that may run at once over all plugins; more wait. Default 64.
    pub max_concurrent_calls: u32,
}

impl Default for PluginsConfig {
    fn default() -> PluginsConfig {
        PluginsConfig {
            worker_threads: 2,
            max_concurrent_calls: 64,
        }
    }
}

/// The instance name a berth replicates under until one is configured.
pub const DEFAULT_INSTANCE_NAME: &str = "local";

/// Resource scheduling.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulingConfig {
    /// How long a machine taken offline without `--force` drains before it is drained.
    /// Default 300.
    pub drain_secs: u64,
    /// How long a new machine may take to answer on its SSH port before its create
    /// fails. Default 600.
    pub initialize_timeout_secs: u64,
    /// How long a node holds a machine operation unless it renews the claim; another node
    /// takes it over after. Default 30.
    pub job_lease_secs: u64,
    /// How often online machines are probed on their SSH port. Default 10.
    pub health_interval_secs: u64,
    /// How long a machine may fail its probes before it goes offline. Default 60.
    pub unhealthy_after_secs: u64,
    /// How often every provider cluster is listed and compared with berth's records
    /// (machines deleted out of band, creates stuck, orphans). Default 60.
    pub reconcile_interval_secs: u64,
    /// Machines asked for per page when a cluster is listed. Default 500.
    pub reconcile_page_size: u32,
    /// When more than this share of a cluster's online machines fail at once, nothing is
    /// taken offline (a network blip must not drain a cluster). Default 40.
    pub max_unhealthy_percent: u32,
    /// Where every machine state change is POSTed (a load balancer's or service
    /// registry's hook). None: no webhook.
    pub webhook_url: Option<String>,
    /// The key the webhook's HMAC-SHA256 signature is made with
    /// (`X-Berth-Signature`); set it in the environment
    /// (`BERTH_SCHEDULING__WEBHOOK_SECRET`), `berth config print` never shows it.
    pub webhook_secret: Option<String>,
}

impl Default for SchedulingConfig {
    fn default() -> SchedulingConfig {
        SchedulingConfig {
            drain_secs: 300,
            initialize_timeout_secs: 600,
            job_lease_secs: 30,
            health_interval_secs: 10,
            unhealthy_after_secs: 60,
            reconcile_interval_secs: 60,
            reconcile_page_size: 500,
            max_unhealthy_percent: 40,
            webhook_url: None,
            webhook_secret: None,
        }
    }
}

/// The replication engine.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicationConfig {
    /// This instance's name in replication topologies and in the origin of what it sends.
    /// Default `local`.
    pub instance_name: String,
    /// Jobs that run at once; more wait in the queue. Default 4.
    pub max_concurrent_jobs: usize,
    /// Attempts of one task before it is marked failed. Default 5.
    pub max_attempts: u32,
    /// The delay before a task's first retry, in milliseconds; it doubles with each
    /// attempt up to `retry_max_ms`, and each delay is drawn at random below that bound
    /// (full jitter) so that retries against a recovering peer spread out. Default 1000.
    pub retry_base_ms: u64,
    /// The longest delay between two attempts, in milliseconds. Default 60000.
    pub retry_max_ms: u64,
    /// Blobs of one manifest copied at once. Default 4.
    pub parallel_blobs: usize,
    /// Finished jobs (and their tasks) are removed after this many days. Default 14.
    pub job_retention_days: u64,
    /// At most this many finished jobs are kept, whatever their age. Default 1000.
    pub max_finished_jobs: usize,
    /// Seconds to wait for a peer to accept a connection or answer a request before the
    /// attempt fails. Default 30.
    pub request_timeout_secs: u64,
    /// Seconds a node's claim on a job lasts unless renewed (it renews three times a
    /// term): how soon another node takes over the jobs of a node that died. Default 30.
    pub job_lease_secs: u64,
}

impl Default for ReplicationConfig {
    fn default() -> ReplicationConfig {
        ReplicationConfig {
            instance_name: DEFAULT_INSTANCE_NAME.to_string(),
            max_concurrent_jobs: 4,
            max_attempts: 5,
            retry_base_ms: 1000,
            retry_max_ms: 60_000,
            parallel_blobs: 4,
            job_retention_days: 14,
            max_finished_jobs: 1000,
            request_timeout_secs: 30,
            job_lease_secs: 30,
        }
    }
}

/// Values given on the command line (or their `BERTH_*` short forms); `None` = not given.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    /// `--listen`
    pub listen: Option<SocketAddr>,
    /// `--data-dir`
    pub data_dir: Option<PathBuf>,
    /// `--tls-cert`
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key`
    pub tls_key: Option<PathBuf>,
    /// `--log-level`
    pub log_level: Option<String>,
}

impl Config {
    /// Loads the effective configuration: defaults ← file ← environment ← flags.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Config> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                anyhow::bail!("config file {} does not exist", file.display());
            }
            figment = figment.merge(Toml::file(file));
        }
        // Only the nested form: the short forms (BERTH_LISTEN, …) are the flags' own.
        figment = figment.merge(
            Env::prefixed("BERTH_")
                .filter(|k| k.as_str().contains("__"))
                .split("__"),
        );
        let mut config: Config = figment
            .extract()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        if let Some(v) = overrides.listen {
            config.server.listen = v;
        }
        if let Some(v) = &overrides.data_dir {
            config.storage.data_dir = v.clone();
        }
        if let Some(v) = &overrides.tls_cert {
            config.server.tls_cert = Some(v.clone());
        }
        if let Some(v) = &overrides.tls_key {
            config.server.tls_key = Some(v.clone());
        }
        if let Some(v) = &overrides.log_level {
            config.log.level = v.clone();
        }
        let secret_env = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(Secret)
        };
        config.keys.token_signing_key = secret_env("BERTH_TOKEN_SIGNING_KEY");
        config.keys.secrets_key = secret_env("BERTH_SECRETS_KEY");
        if config.server.tls_cert.is_some() != config.server.tls_key.is_some() {
            anyhow::bail!(
                "TLS needs both server.tls_cert and server.tls_key (--tls-cert and --tls-key)"
            );
        }
        if config.metadata.backend == MetadataBackend::Postgres && config.metadata.url.is_none() {
            anyhow::bail!(
                "metadata.backend = \"postgres\" needs metadata.url (or BERTH_METADATA__URL), the database's connection string"
            );
        }
        if config.registry.max_manifest_bytes < 4 * 1024 * 1024 {
            anyhow::bail!(
                "registry.max_manifest_bytes must be at least 4194304 (4 MiB), the OCI spec's minimum"
            );
        }
        Ok(config)
    }

    /// The configuration as TOML, for `berth config print`, with the password of the
    /// metadata connection string and the webhook secret replaced by `***`.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        shown.metadata.url = shown.metadata.url.as_deref().map(redact_password);
        if shown.scheduling.webhook_secret.is_some() {
            shown.scheduling.webhook_secret = Some("***".into());
        }
        toml::to_string_pretty(&shown).expect("config serializes")
    }
}

/// A connection string with its password replaced by `***`, in either form.
pub fn redact_password(url: &str) -> String {
    if let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    {
        let scheme = &url[..url.len() - rest.len()];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        if let Some(at) = authority.rfind('@') {
            let userinfo = &authority[..at];
            if let Some(colon) = userinfo.find(':') {
                return format!(
                    "{scheme}{}:***{}{tail}",
                    &userinfo[..colon],
                    &authority[at..]
                );
            }
        }
        return url.to_string();
    }
    url.split_whitespace()
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment's own error
mod tests {
    use super::*;

    #[test]
    fn file_then_environment_then_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "berth.toml",
                "[server]\nlisten = \"127.0.0.1:6000\"\n[registry]\ndelete_enabled = false\n[storage]\ndata_dir = \"/from-file\"\n",
            )?;
            jail.set_env("BERTH_STORAGE__DATA_DIR", "/from-env");
            let overrides = Overrides {
                listen: Some("127.0.0.1:7000".parse().unwrap()),
                ..Overrides::default()
            };
            let config = Config::load(Some(Path::new("berth.toml")), &overrides).unwrap();
            assert_eq!(config.server.listen.port(), 7000);
            assert_eq!(config.storage.data_dir, PathBuf::from("/from-env"));
            assert!(!config.registry.delete_enabled);
            assert_eq!(config.registry.max_manifest_bytes, 4 * 1024 * 1024);
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_half_tls_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "[server]\nlisten_on = \"x\"\n")?;
            let err = Config::load(Some(Path::new("bad.toml")), &Overrides::default()).unwrap_err();
            assert!(err.to_string().contains("listen_on"), "{err}");
            let half = Overrides {
                tls_cert: Some("c.pem".into()),
                ..Overrides::default()
            };
            assert!(
                Config::load(None, &half)
                    .unwrap_err()
                    .to_string()
                    .contains("both")
            );
            Ok(())
        });
    }

    #[test]
    fn metadata_passwords_are_never_printed() {
        assert_eq!(
            redact_password("postgres://berth:s3cr@t@db.example:5432/berth?sslmode=require"),
            "postgres://berth:***@db.example:5432/berth?sslmode=require"
        );
        assert_eq!(
            redact_password("postgresql://berth@db/berth"),
            "postgresql://berth@db/berth"
        );
        assert_eq!(
            redact_password("host=db user=berth password=s3cret dbname=berth"),
            "host=db user=berth password=*** dbname=berth"
        );
        let mut config = Config::default();
        config.metadata.backend = MetadataBackend::Postgres;
        config.metadata.url = Some("postgres://u:hunter2@h/db".into());
        let printed = config.to_toml();
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("backend = \"postgres\""), "{printed}");
    }

    #[test]
    fn postgres_without_a_connection_string_is_refused() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("BERTH_METADATA__BACKEND", "postgres");
            let err = Config::load(None, &Overrides::default()).unwrap_err();
            assert!(err.to_string().contains("metadata.url"), "{err}");
            jail.set_env("BERTH_METADATA__URL", "host=db dbname=berth");
            Config::load(None, &Overrides::default()).unwrap();
            Ok(())
        });
    }

    #[test]
    fn printed_config_loads_back_identically() {
        let config = Config::default();
        let text = config.to_toml();
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back, config);
    }
}
