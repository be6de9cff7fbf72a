//! The `berth` command line: one module per subcommand.

pub mod config_cmd;
pub mod fsck;
pub mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, Overrides};

/// berth: a private OCI registry and container operations platform.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the registry server.
    Serve(serve::ServeArgs),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// Verify a data directory (blobs against digests, manifests' references, sessions).
    Fsck(fsck::FsckArgs),
}

/// Where configuration comes from; shared by every command that loads it.
#[derive(Debug, Args, Clone)]
pub struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long, env = "BERTH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on (server.listen), e.g. 127.0.0.1:5000 or 0.0.0.0:443.
    #[arg(long, env = "BERTH_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Data directory (storage.data_dir).
    #[arg(long, env = "BERTH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// PEM certificate chain; with --tls-key, serve HTTPS.
    #[arg(long, env = "BERTH_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "BERTH_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Log filter (log.level), e.g. info, debug, berth=trace.
    #[arg(long, env = "BERTH_LOG")]
    pub log_level: Option<String>,
}

impl ConfigArgs {
    /// The effective configuration.
    pub fn load(&self) -> anyhow::Result<Config> {
        let overrides = Overrides {
            listen: self.listen,
            data_dir: self.data_dir.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            log_level: self.log_level.clone(),
        };
        Config::load(self.config.as_deref(), &overrides)
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::run(&args),
        Command::Config(cmd) => config_cmd::run(cmd),
        Command::Fsck(args) => fsck::run(&args),
    }
}
