//! `berth key generate`: a new token signing key or secrets key, for several nodes that
//! must share them (see `storage::keys`): written to a file (mode 0600, never over an
//! existing one) or printed as base64 for the environment (`BERTH_TOKEN_SIGNING_KEY`,
//! `BERTH_SECRETS_KEY`).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;

use anyhow::Context as _;
use base64::Engine as _;
use clap::{Subcommand, ValueEnum};

use crate::storage::keys::KeyKind;

/// Key subcommands.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Make a new key.
    Generate {
        /// Which key.
        kind: KeyArg,
        /// Write it to this file (mode 0600; an existing file is never replaced) instead of
        /// printing it as base64.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Which key, as the command line names it.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KeyArg {
    /// The token signing key (`keys.token_signing_key_file`, `BERTH_TOKEN_SIGNING_KEY`).
    Token,
    /// The secrets key (`keys.secrets_key_file`, `BERTH_SECRETS_KEY`).
    Secrets,
}

pub fn run(command: &KeyCommand) -> anyhow::Result<std::process::ExitCode> {
    let KeyCommand::Generate { kind, out } = command;
    let kind = match kind {
        KeyArg::Token => KeyKind::TokenSigning,
        KeyArg::Secrets => KeyKind::Secrets,
    };
    let key = kind.generate();
    match out {
        Some(path) => {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            file.write_all(&key)?;
            file.sync_all()?;
            eprintln!(
                "berth: wrote a new {} to {}; give every node the same file",
                kind.label(),
                path.display()
            );
        }
        None => println!("{}", base64::engine::general_purpose::STANDARD.encode(&key)),
    }
    Ok(std::process::ExitCode::SUCCESS)
}
