//! `berth login <url>` and `berth logout [<url>]`.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::client::{
    Client, CredentialStore, Output, StoredLogin, normalize_server, read_stdin_secret,
};

/// Flags of `berth login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The server, e.g. https://registry.example.com or http://127.0.0.1:5000.
    pub server: String,
    /// Username or robot name (default: $BERTH_USERNAME).
    #[arg(short, long, env = "BERTH_USERNAME")]
    pub username: String,
    /// Read the password from standard input (default: $BERTH_PASSWORD).
    #[arg(long)]
    pub password_stdin: bool,
}

/// Checks the credentials against the server and stores them (mode 0600).
pub fn login(args: &LoginArgs) -> anyhow::Result<ExitCode> {
    let server = normalize_server(&args.server);
    let password = if args.password_stdin {
        read_stdin_secret()?
    } else {
        std::env::var("BERTH_PASSWORD").context(
            "give the password on standard input with --password-stdin, or in BERTH_PASSWORD",
        )?
    };
    let login = StoredLogin {
        username: args.username.clone(),
        password,
    };
    let client = Client::new(server.clone(), login.clone(), Output::Table)?;
    // Any authenticated call proves the credentials; projects work for robots too.
    client
        .call(reqwest::Method::GET, "/api/v1/projects?page_size=1", None)
        .context("login failed")?;
    let mut store = CredentialStore::load()?;
    store.servers.insert(server.clone(), login);
    store.current = Some(server.clone());
    store.save()?;
    println!("logged in to {server} as {}", args.username);
    Ok(ExitCode::SUCCESS)
}

/// Forgets the stored login for `server` (default: the current one).
pub fn logout(server: Option<&str>) -> anyhow::Result<ExitCode> {
    let mut store = CredentialStore::load()?;
    let server = server
        .map(normalize_server)
        .or_else(|| store.current.clone())
        .context("not logged in anywhere")?;
    store.servers.remove(&server);
    if store.current.as_deref() == Some(server.as_str()) {
        store.current = store.servers.keys().next().cloned();
    }
    store.save()?;
    println!("logged out of {server}");
    Ok(ExitCode::SUCCESS)
}
