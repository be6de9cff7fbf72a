//! The HTTP server: binds the stores to the routes, accepts connections (plain or TLS),
//! and shuts down gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::auth::AccessControl;
use crate::auth::bootstrap::Bootstrap;
use crate::config::{Config, MetadataBackend};
use crate::events::Feed;
use crate::plugins::{PluginHost, PluginHostOptions};
use crate::registry::{self, Registry};
use crate::replication::Replication;
use crate::scheduling::Scheduling;
use crate::storage::blob::fs::FsBlobStore;
use crate::storage::paths::DataPaths;
use crate::storage::sealing::Sealer;
use crate::storage::store::Store;
use crate::supervisor::Supervisor;

/// Opens the data directory and builds the registry and access control over it. Must run
/// inside a Tokio runtime (the audit writer is a task).
pub fn open_registry(config: &Config) -> anyhow::Result<Arc<Registry>> {
    let data_dir = &config.storage.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let paths = DataPaths::new(data_dir);
    let metadata = open_metadata(config, &paths)?;
    let store = FsBlobStore::open(paths)
        .with_context(|| format!("cannot prepare blob storage in {}", data_dir.display()))?;
    let swept = crate::registry::fsck::remove_unacknowledged_staging(
        &metadata,
        &store,
        crate::registry::fsck::ABANDONED_STAGING_AFTER,
    )?;
    if swept > 0 {
        tracing::info!(
            files = swept,
            "removed staging files of uploads interrupted before any acknowledgement"
        );
    }
    let auth = Arc::new(AccessControl::new(
        metadata.clone(),
        config.auth.clone(),
        &config.keys,
        data_dir,
    )?);
    let given = config.admin_password.as_ref().map(|s| s.0.as_str());
    match crate::auth::bootstrap::ensure_admin(&auth, given)? {
        Bootstrap::AlreadyDone => {}
        Bootstrap::CreatedWithGivenPassword => {
            println!("berth: created user 'admin' with the password given by --admin-password")
        }
        Bootstrap::CreatedWithGeneratedPassword(p) => println!(
            "berth: created user 'admin' with password {p} (shown only this once; change it with `berth user passwd admin`)"
        ),
    }
    let tls = config.server.tls_cert.is_some();
    let feed = Feed::new(metadata.clone());
    Ok(Arc::new(Registry::new(
        metadata,
        feed,
        Arc::new(store),
        config.registry.clone(),
        auth,
        tls,
        &config.replication.instance_name,
    )))
}

/// The metadata store the configuration names: the data directory's redb database, or
/// PostgreSQL (migrated to this build's schema under a lock nodes share).
pub fn open_metadata(config: &Config, paths: &DataPaths) -> anyhow::Result<Store> {
    match config.metadata.backend {
        MetadataBackend::Redb => Store::redb_at(&paths.metadata_db()).with_context(|| {
            format!(
                "cannot open metadata {}; is another berth using this data directory?",
                paths.metadata_db().display()
            )
        }),
        MetadataBackend::Postgres => {
            let url = config
                .metadata
                .url
                .as_deref()
                .context("metadata.url is not set")?;
            let ca =
                match &config.metadata.ca_file {
                    Some(path) => Some(std::fs::read(path).with_context(|| {
                        format!("cannot read metadata.ca_file {}", path.display())
                    })?),
                    None => None,
                };
            // Connecting and migrating block: off the async workers.
            crate::storage::store::off_the_workers(|| {
                Store::postgres_with_ca(url, config.metadata.connections, ca.as_deref())
            })
            .with_context(|| {
                format!(
                    "cannot use the PostgreSQL metadata database {}",
                    crate::config::redact_password(url)
                )
            })
        }
    }
}

/// This node's name: configured (`server.node_id`), or generated on first start and kept
/// in the data directory, so that a restarted node knows the leases it held as its own.
pub fn node_id(config: &Config) -> anyhow::Result<String> {
    let valid = |id: &str| {
        !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    if config.metadata.backend == MetadataBackend::Postgres && config.server.node_id.is_none() {
        // Nodes on one database share a data directory (the blobs are in it), so a name
        // generated into it would be every node's, and leases would not tell them apart.
        anyhow::bail!(
            "metadata.backend = \"postgres\" needs server.node_id (or BERTH_SERVER__NODE_ID): nodes sharing a data directory must each be named"
        );
    }
    if let Some(id) = &config.server.node_id {
        anyhow::ensure!(
            valid(id),
            "server.node_id {id:?} must be 1-64 letters, digits, '.', '_' or '-'"
        );
        return Ok(id.clone());
    }
    let path = DataPaths::new(&config.storage.data_dir).node_id();
    match std::fs::read_to_string(&path) {
        Ok(text) if valid(text.trim()) => return Ok(text.trim().to_string()),
        Ok(_) => anyhow::bail!(
            "{} does not hold a node name; remove it to have one generated, or set server.node_id",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let id = format!("node-{:016x}", rand::random::<u64>());
    // Written whole or not at all: a crash leaves no half name behind.
    let written = (|| -> std::io::Result<()> {
        let staging = path.with_extension("new");
        {
            use std::io::Write as _;
            let mut file = std::fs::File::create(&staging)?;
            file.write_all(id.as_bytes())?;
            file.sync_all()?;
        }
        std::fs::rename(&staging, &path)?;
        crate::storage::blob::fs::sync_dir(&config.storage.data_dir)
    })();
    written.with_context(|| format!("cannot write {}", path.display()))?;
    Ok(id)
}

/// The key that seals secrets at rest in the data directory (plugin secrets, replication
/// endpoints' passwords), created on first use.
pub fn open_sealer(config: &Config) -> anyhow::Result<Arc<Sealer>> {
    let path = DataPaths::new(&config.storage.data_dir).secrets_key();
    Ok(Arc::new(
        Sealer::load(&config.keys, &path).with_context(|| "cannot open the secrets key")?,
    ))
}

/// The plugin host over the same data directory and metadata as `registry`.
pub fn open_plugins(
    config: &Config,
    registry: &Registry,
    sealer: Arc<Sealer>,
) -> anyhow::Result<Arc<PluginHost>> {
    // Plugins' HTTP goes through reqwest with rustls; ring is the provider berth ships.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let host = PluginHost::new(
        registry.metadata.clone(),
        DataPaths::new(&config.storage.data_dir),
        sealer,
        PluginHostOptions {
            worker_threads: config.plugins.worker_threads,
            max_concurrent_calls: config.plugins.max_concurrent_calls,
        },
    )?;
    Ok(Arc::new(host))
}

/// The whole HTTP application.
pub fn app(
    registry: Arc<Registry>,
    plugins: Arc<PluginHost>,
    replication: Arc<Replication>,
    scheduling: Arc<Scheduling>,
) -> Router {
    let api = crate::api::router(crate::api::ApiState {
        auth: registry.auth.clone(),
        registry: registry.clone(),
        plugins,
        replication,
        scheduling,
    });
    crate::auth::endpoint::router(registry.auth.clone())
        .merge(api)
        .merge(registry::routes::router(registry))
        .layer(axum::middleware::from_fn(
            registry::routes::api_version_header,
        ))
        .layer(axum::middleware::from_fn(require_one_host))
        .layer(axum::middleware::from_fn(trace_request))
}

/// RFC 9112 §3.2: an HTTP/1.1 request without a Host header, or with more than one, is
/// answered 400. berth derives the token realm from Host, and two of them could make a
/// proxy in front and berth disagree about where a request was meant to go.
async fn require_one_host(request: Request, next: Next) -> Response {
    use axum::response::IntoResponse as _;
    let hosts = request
        .headers()
        .get_all(axum::http::header::HOST)
        .iter()
        .count();
    if request.version() != axum::http::Version::HTTP_11 || hosts == 1 {
        return next.run(request).await;
    }
    let message = if hosts == 0 {
        "an HTTP/1.1 request needs a Host header (RFC 9112 section 3.2)"
    } else {
        "an HTTP/1.1 request must carry exactly one Host header (RFC 9112 section 3.2)"
    };
    let mut response = if request.uri().path().starts_with("/v2") {
        registry::errcode::RegistryError::new(registry::errcode::ErrorCode::Unsupported)
            .status(axum::http::StatusCode::BAD_REQUEST)
            .message(message)
            .into_response()
    } else {
        crate::api::problem::ApiError::bad_request(message).into_response()
    };
    if request.method() == axum::http::Method::HEAD {
        *response.body_mut() = axum::body::Body::empty();
    }
    response
}

/// One span per request; server errors are logged at warn, everything else at debug so
/// that a busy registry's log stays readable.
async fn trace_request(request: Request, next: Next) -> Response {
    let span =
        tracing::debug_span!("request", method = %request.method(), path = %request.uri().path());
    let started = Instant::now();
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let response = next.run(request).instrument(span).await;
    let status = response.status();
    if status.is_server_error() {
        tracing::warn!(%method, %path, status = status.as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request failed");
    } else {
        tracing::debug!(%method, %path, status = status.as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request");
    }
    response
}

fn tls_acceptor(config: &Config) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
    let (Some(cert), Some(key)) = (&config.server.tls_cert, &config.server.tls_key) else {
        return Ok(None);
    };
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(cert)
            .with_context(|| format!("cannot read TLS certificate {}", cert.display()))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .with_context(|| format!("{} is not a PEM certificate chain", cert.display()))?;
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(key)
            .with_context(|| format!("cannot read TLS key {}", key.display()))?,
    ))?
    .with_context(|| format!("{} holds no PEM private key", key.display()))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("the TLS certificate and key do not form a usable pair")?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls))))
}

/// Serves `config` on `listener` until `shutdown` resolves, then drains connections for
/// up to `server.shutdown_grace_secs`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let registry = open_registry(&config)?;
    let tls = tls_acceptor(&config)?;
    let supervisor = Supervisor::new();
    {
        let registry = registry.clone();
        let ttl = Duration::from_secs(config.registry.upload_ttl_secs);
        let every = Duration::from_secs(config.registry.upload_purge_interval_secs.max(1));
        supervisor.spawn("upload-purge", move || {
            registry::purge::run(registry.clone(), ttl, every)
        });
    }
    {
        let auth = registry.auth.clone();
        supervisor.spawn("revocation-watch", move || {
            auth.clone().watch_revocations(crate::auth::REVOCATION_POLL)
        });
    }
    let sealer = open_sealer(&config)?;
    let plugins = open_plugins(&config, &registry, sealer.clone())?;
    let replication = Replication::new(
        registry.clone(),
        plugins.clone(),
        sealer.clone(),
        config.replication.clone(),
        node_id(&config)?,
    )?;
    supervisor.spawn("replication-engine", replication.start());
    let scheduling = Arc::new(Scheduling::new(
        registry.metadata.clone(),
        registry.auth.clone(),
        sealer,
        plugins.clone(),
        config.scheduling.clone(),
        node_id(&config)?,
    ));
    supervisor.spawn("scheduling-engine", scheduling.start());
    let audit = registry.auth.audit.clone();
    let app = app(registry, plugins, replication.clone(), scheduling);
    let local: SocketAddr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // A plain line on stdout, for people and for scripts that started us on port 0.
    println!("berth: listening on {scheme}://{local}");
    tracing::info!(%local, scheme, data_dir = %config.storage.data_dir.display(), "berth is serving");

    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        // The client's address, for the audit log and failed-login limits.
        let service = TowerToHyperService::new(tower::ServiceExt::map_request(
            app.clone(),
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                request
            },
        ));
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let result = match tls {
                None => {
                    watcher
                        .watch(
                            builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                .into_owned(),
                        )
                        .await
                }
                Some(tls) => match tls.accept(stream).await {
                    Ok(stream) => {
                        watcher
                            .watch(
                                builder
                                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                    .into_owned(),
                            )
                            .await
                    }
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                },
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: no new connections; waiting for requests in flight");
    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => {
            tracing::warn!(grace_secs = config.server.shutdown_grace_secs, "grace period over; closing remaining connections (their uploads stay resumable)");
        }
    }
    // Background loops stop first, so that none starts a job the runners then abandon.
    supervisor.shutdown().await;
    replication.shutdown(grace).await;
    // The audit writer holds what arrived in its last linger: committed before exit.
    audit.flush().await;
    tracing::info!("background work stopped");
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
