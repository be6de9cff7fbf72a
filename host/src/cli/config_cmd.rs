//! `berth config print`: the effective configuration, as TOML.

use std::process::ExitCode;

use clap::Subcommand;

use super::ConfigArgs;

/// `berth config …`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (defaults ← file ← environment ← flags) as TOML.
    Print(ConfigArgs),
}

/// Runs a `config` subcommand.
pub fn run(cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCommand::Print(args) => {
            print!("{}", args.load()?.to_toml());
            Ok(ExitCode::SUCCESS)
        }
    }
}
