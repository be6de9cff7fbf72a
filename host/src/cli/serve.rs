//! `berth serve`: run the server on the effective configuration.

use std::process::ExitCode;

use anyhow::Context;

use super::ConfigArgs;

/// Starts logging and serves until SIGTERM / Ctrl-C.
pub fn run(args: &ConfigArgs) -> anyhow::Result<ExitCode> {
    let config = args.load()?;
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
