//! Throw-away PostgreSQL databases for berth's tests: a fresh database in the server
//! `BERTH_TEST_POSTGRES` names (`.ci/run` starts one), or else in one this process starts
//! from Debian's `postgresql` package and that stops when the process exits. No
//! PostgreSQL at all is a failure that says what to install, never a skipped test.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The connection string of a new, empty database.
pub fn fresh_database() -> String {
    create_database(server())
}

/// A new, empty database in `server`.
fn create_database(server: &Server) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "berth_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut admin = postgres::Client::connect(&server.url("postgres"), postgres::NoTls)
        .expect("connect to the test PostgreSQL server");
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("create a test database");
    server.url(&name)
}

struct Server {
    /// `host=… port=… user=…` without a database name.
    base: String,
}

impl Server {
    fn url(&self, database: &str) -> String {
        format!("{} dbname={database}", self.base)
    }
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| match std::env::var("BERTH_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => {
            let config: postgres::Config = url.parse().expect("BERTH_TEST_POSTGRES parses");
            let host = match &config.get_hosts()[0] {
                postgres::config::Host::Tcp(h) => h.clone(),
                postgres::config::Host::Unix(p) => p.display().to_string(),
            };
            Server {
                base: format!(
                    "host={host} port={} user={}",
                    config.get_ports().first().copied().unwrap_or(5432),
                    config.get_user().unwrap_or("postgres")
                ),
            }
        }
        _ => start_server(),
    })
}

/// The directory of `initdb` and `postgres`: on the PATH, or Debian's newest.
fn postgres_bin() -> PathBuf {
    if let Ok(path) = which("initdb") {
        return path.parent().unwrap().to_path_buf();
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().unwrap_or_else(|| {
        panic!(
            "the PostgreSQL tests need a server: set BERTH_TEST_POSTGRES to one where this user may create databases, or install Debian's `postgresql` package (apt-get install postgresql)"
        )
    })
}

fn which(program: &str) -> Result<PathBuf, ()> {
    let path = std::env::var_os("PATH").ok_or(())?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.exists())
        .ok_or(())
}

/// Starts a server in a temporary directory, on a free loopback port. It runs under a
/// shell that waits on a pipe from this process: when the process exits, however it
/// exits, the pipe closes and the shell stops the server and removes the directory.
fn start_server() -> Server {
    start_server_with(None)
}

/// A server of its own that accepts TLS with a self-signed certificate for `127.0.0.1`,
/// and that certificate's PEM (its own CA): `(connection string without a database,
/// CA PEM)`.
pub fn tls_server() -> (String, String) {
    static TLS: OnceLock<(String, String)> = OnceLock::new();
    TLS.get_or_init(|| {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let (cert_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
        let server = start_server_with(Some((&cert_pem, &key_pem)));
        (server.base, cert_pem)
    })
    .clone()
}

/// A new database in a server of its own that flushes its writes as a production server
/// does (the shared test server runs with `fsync=off`): for benchmarks.
pub fn durable_database() -> String {
    static DURABLE: OnceLock<Server> = OnceLock::new();
    let server = DURABLE.get_or_init(|| start_server_with_options(None, true));
    create_database(server)
}

fn start_server_with(tls: Option<(&str, &str)>) -> Server {
    start_server_with_options(tls, false)
}

fn start_server_with_options(tls: Option<(&str, &str)>, durable: bool) -> Server {
    let bin = postgres_bin();
    let dir = tempfile::Builder::new()
        .prefix("berth-pg-")
        .tempdir()
        .unwrap()
        .keep();
    // PostgreSQL refuses to run as root; Debian's package creates the `postgres` user.
    let as_root = running_as_root();
    if as_root {
        let status = Command::new("chown")
            .args(["postgres:postgres", dir.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success(), "chown the test server's directory");
    }
    let port = free_port();
    let data = dir.join("data");
    let initdb = run_as(
        as_root,
        &bin.join("initdb"),
        &[
            "-D",
            data.to_str().unwrap(),
            "-A",
            "trust",
            "-U",
            "berth",
            "--no-sync",
        ],
    )
    .output()
    .expect("run initdb");
    assert!(
        initdb.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&initdb.stderr)
    );
    let mut ssl = String::new();
    if let Some((cert_pem, key_pem)) = tls {
        // PostgreSQL reads its certificate and key from the data directory, and refuses a
        // key that others may read.
        for (name, pem) in [("server.crt", cert_pem), ("server.key", key_pem)] {
            let path = data.join(name);
            std::fs::write(&path, pem).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
            if as_root {
                let status = Command::new("chown")
                    .args(["postgres:postgres", path.to_str().unwrap()])
                    .status()
                    .unwrap();
                assert!(status.success());
            }
        }
        ssl = " -c ssl=on".to_string();
    }
    let script = format!(
        "'{postgres}' -D '{data}' -k '{dir}' -c listen_addresses=127.0.0.1 -p {port} -c max_connections=400{fsync}{ssl} >'{dir}/log' 2>&1 & pid=$!; read _; kill -INT $pid; wait $pid; rm -rf '{dir}'",
        postgres = bin.join("postgres").display(),
        data = data.display(),
        dir = dir.display(),
        fsync = if durable { "" } else { " -c fsync=off" },
    );
    let mut guard = run_as(as_root, Path::new("sh"), &["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start postgres");
    // Kept open for the life of the process; its end of the pipe closing stops the server.
    static KEEPALIVE: Mutex<Vec<std::process::ChildStdin>> = Mutex::new(Vec::new());
    let mut stdin = guard.stdin.take().unwrap();
    let _ = stdin.flush();
    KEEPALIVE.lock().unwrap().push(stdin);
    std::mem::forget(guard);

    let server = Server {
        base: format!("host=127.0.0.1 port={port} user=berth"),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match postgres::Client::connect(&server.url("postgres"), postgres::NoTls) {
            Ok(_) => return server,
            Err(e) if Instant::now() > deadline => panic!(
                "the test PostgreSQL server did not start: {e}; its log: {}",
                std::fs::read_to_string(dir.join("log")).unwrap_or_default()
            ),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn run_as(as_root: bool, program: &Path, args: &[&str]) -> Command {
    if as_root {
        let mut command = Command::new("runuser");
        command
            .args(["-u", "postgres", "--"])
            .arg(program)
            .args(args);
        command
    } else {
        let mut command = Command::new(program);
        command.args(args);
        command
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
