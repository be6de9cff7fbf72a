//! `berth serve`: run the server on the effective configuration.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::ConfigArgs;
use crate::config::Secret;

/// Flags of `berth serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration sources.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Password of the `admin` user created on the first start (at least 12 characters).
    /// Without it a password is generated and printed once.
    #[arg(long, env = "BERTH_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
}

/// Starts logging and serves until SIGTERM / Ctrl-C.
pub fn run(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = args.config.load()?;
    config.admin_password = args.admin_password.clone().map(Secret);
    crate::init_logging(&config.log.level);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.server.listen))?;
        crate::server::run(config, listener, crate::server::shutdown_signal()).await
    })?;
    Ok(ExitCode::SUCCESS)
}
