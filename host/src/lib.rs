//! berth: a container operations platform in one binary.
//!
//! # Layout
//!
//! - [`registry`]: the OCI Distribution API v1.1 (`/v2/…`): routes, one handler module per
//!   endpoint family, manifest validation, the one table of error codes.
//! - [`storage`]: the data directory: [`storage::paths`] (the on-disk layout),
//!   [`storage::blob`] (content-addressed blobs and the upload pipeline),
//!   [`storage::meta`] (redb metadata, one module per table), [`storage::fsck`].
//! - [`server`]: binds the registry to a listener (plain or TLS), graceful shutdown;
//!   [`server::run`] takes the listener so tests can bind port 0.
//! - [`config`]: every knob with its default; [`cli`]: the `berth` command line.
//! - [`digest`]: content digests, shared by all of the above.
//!
//! **Architecture invariant:** `storage` knows nothing of HTTP or of `registry`; the
//! registry reaches storage only through `BlobStore`, `LinkedBlobs` and the metadata
//! table modules.

pub mod allocator;
pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod cost;
pub mod digest;
pub mod events;
pub mod hostinit;
pub mod jobs;
pub mod names;
pub mod plugins;
pub mod registry;
pub mod replication;
pub mod scheduling;
pub mod server;
pub mod storage;
pub mod supervisor;

/// Installs the `tracing` subscriber: `RUST_LOG` if set, else `level`. Colours only on
/// a terminal, and never with `NO_COLOR` set: a log file or a journal gets plain text.
pub fn init_logging(level: &str) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .try_init();
}
