//! The HTTP client behind the `berth` client commands: which server, which credentials,
//! and how answers are printed.
//!
//! Server and credentials come from `--server` / `BERTH_SERVER` and `BERTH_USERNAME` /
//! `BERTH_PASSWORD` when set (for scripts), else from what `berth login` stored in
//! `$XDG_CONFIG_HOME/berth/credentials.json` (mode 0600).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Options every client command takes.
#[derive(Debug, Args, Clone)]
pub struct ClientArgs {
    /// The berth server, e.g. https://registry.example.com (default: the one last logged in to).
    #[arg(long, env = "BERTH_SERVER", global = true)]
    pub server: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
}

/// How answers are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns.
    Table,
    /// The API's JSON.
    Json,
    /// Comma-separated values with a header line (RFC 4180), the table's columns.
    Csv,
}

/// Stored logins.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CredentialStore {
    /// The server used when none is named.
    pub current: Option<String>,
    /// Credentials by server URL.
    pub servers: BTreeMap<String, StoredLogin>,
}

/// One stored login.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredLogin {
    /// Username or robot name.
    pub username: String,
    /// Password or robot secret.
    pub password: String,
}

/// Where `berth login` keeps credentials.
pub fn credentials_path() -> anyhow::Result<PathBuf> {
    let base = std::env::var_os("BERTH_CONFIG_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CONFIG_HOME").map(|d| PathBuf::from(d).join("berth")))
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config").join("berth"))
        })
        .context(
            "cannot find a configuration directory: set HOME, XDG_CONFIG_HOME or BERTH_CONFIG_DIR",
        )?;
    Ok(base.join("credentials.json"))
}

impl CredentialStore {
    /// Reads the store (empty if there is none).
    pub fn load() -> anyhow::Result<CredentialStore> {
        let path = credentials_path()?;
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a berth credentials file", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CredentialStore::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Writes the store, readable by its owner only.
    pub fn save(&self) -> anyhow::Result<()> {
        let path = credentials_path()?;
        let dir = path.parent().expect("has a directory");
        std::fs::create_dir_all(dir)?;
        let tmp = path.with_extension("tmp");
        {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options
                .open(&tmp)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            file.write_all(&serde_json::to_vec_pretty(self)?)?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }
}

/// Normalises a server argument: a bare host gets `https://`.
pub fn normalize_server(server: &str) -> String {
    let s = server.trim_end_matches('/');
    if s.starts_with("http://") || s.starts_with("https://") {
        s.to_owned()
    } else {
        format!("https://{s}")
    }
}

/// A connection to one server with one login.
pub struct Client {
    base: String,
    login: StoredLogin,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    /// How to print.
    pub output: Output,
}

impl Client {
    /// The server and login to use for `args`.
    pub fn connect(args: &ClientArgs) -> anyhow::Result<Client> {
        let store = CredentialStore::load()?;
        let base = args
            .server
            .as_deref()
            .map(normalize_server)
            .or_else(|| store.current.clone())
            .context(
                "no server: pass --server URL, set BERTH_SERVER, or run `berth login <url>` first",
            )?;
        let login = match (std::env::var("BERTH_USERNAME"), std::env::var("BERTH_PASSWORD")) {
            (Ok(username), Ok(password)) => StoredLogin { username, password },
            _ => store.servers.get(&base).cloned().with_context(|| {
                format!("not logged in to {base}: run `berth login {base}`, or set BERTH_USERNAME and BERTH_PASSWORD")
            })?,
        };
        Client::new(base, login, args.output)
    }

    /// A client for `base` with `login`.
    pub fn new(base: String, login: StoredLogin, output: Output) -> anyhow::Result<Client> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder().build()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Client {
            base,
            login,
            http,
            runtime,
            output,
        })
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request to `path` (under the server) and returns the JSON answer, turning
    /// problem documents into errors that say what the server said.
    pub fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .http
            .request(method.clone(), &url)
            .basic_auth(&self.login.username, Some(&self.login.password));
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.runtime.block_on(async {
            let response = request
                .send()
                .await
                .with_context(|| format!("cannot reach {}", self.base))?;
            answer(&method, path, response).await
        })
    }

    /// Sends `bytes` with `content_type` to `path` and returns the JSON answer.
    pub fn call_bytes(
        &self,
        method: reqwest::Method,
        path: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let request = self
            .http
            .request(method.clone(), &url)
            .basic_auth(&self.login.username, Some(&self.login.password))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(bytes);
        self.runtime.block_on(async {
            let response = request
                .send()
                .await
                .with_context(|| format!("cannot reach {}", self.base))?;
            answer(&method, path, response).await
        })
    }

    /// The username and password this client logs in with.
    pub fn credentials(&self) -> (&str, &str) {
        (&self.login.username, &self.login.password)
    }

    /// Runs a future on this client's runtime (for other protocols, such as OCI pushes).
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Prints `value` as JSON, or as a table of `columns` (JSON field names).
    pub fn print(&self, value: &Value, columns: &[&str]) {
        if self.output == Output::Json {
            println!(
                "{}",
                serde_json::to_string_pretty(value).expect("serializes")
            );
            return;
        }
        let rows: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            Value::Null => return,
            other => vec![other],
        };
        if self.output == Output::Csv {
            print!(
                "{}",
                csv(
                    columns,
                    rows.iter()
                        .map(|row| columns.iter().map(|c| cell(&row[*c])).collect())
                )
            );
            return;
        }
        let mut table = comfy_table::Table::new();
        table.load_preset(comfy_table::presets::NOTHING);
        table.set_header(columns.iter().map(|c| c.to_uppercase()));
        for row in rows {
            table.add_row(columns.iter().map(|c| cell(&row[*c])));
        }
        println!("{table}");
    }
}

/// The JSON answer of a success; the server's explanation of a failure as the error.
async fn answer(
    method: &reqwest::Method,
    path: &str,
    response: reqwest::Response,
) -> anyhow::Result<Value> {
    let status = response.status();
    let text = response.text().await?;
    let value: Value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    if status.is_success() {
        return Ok(value);
    }
    let detail = value
        .get("detail")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| value.to_string());
    bail!(
        "{method} {path}: {} {}: {detail}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
}

/// `rows` of `columns` as CSV (RFC 4180): a header line, fields quoted where they hold a
/// comma, a quote or a line break.
pub fn csv(columns: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    fn field(s: &str) -> String {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    }
    let mut out = columns.join(",") + "\n";
    for row in rows {
        out.push_str(&row.iter().map(|f| field(f)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        Value::Object(o) if o.contains_key("project") => {
            format!("{}:{}", cell(&o["project"]), cell(&o["actions"]))
        }
        other => other.to_string(),
    }
}

/// Percent-encodes one path segment (repository names carry slashes).
pub fn segment(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// Reads a secret from standard input (one line), for `--password-stdin`.
pub fn read_stdin_secret() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let secret = line.trim_end_matches(['\n', '\r']).to_owned();
    if secret.is_empty() {
        bail!("no password on standard input");
    }
    Ok(secret)
}
