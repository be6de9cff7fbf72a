//! What the benchmarks share: starting a release `berth` on a free port, test data.

#![allow(dead_code)] // each benchmark uses part of it

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use bytes::Bytes;
use sha2::{Digest as _, Sha256};

pub const ADMIN_PASSWORD: &str = "benchmark admin password";

/// A server process with its own data directory, stopped when dropped.
pub struct Server {
    pub name: &'static str,
    /// `Authorization` for pushes (berth needs a login; docker-registry runs open).
    pub auth: Option<String>,
    pub child: Child,
    pub base: String,
    /// What it has logged (to stderr) so far: its first 100,000 lines.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    pub _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A release berth on a free port, with `admin` / [`ADMIN_PASSWORD`].
pub fn start_berth() -> Server {
    start_berth_with(&[])
}

/// The same, with extra environment (configuration such as `BERTH_REPLICATION__…`).
pub fn start_berth_with(env: &[(&str, &str)]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    start_berth_in(dir, &data, env)
}

/// One berth node of several sharing the data directory `data` (metadata on the
/// PostgreSQL database `env` names).
#[allow(dead_code, reason = "not every benchmark runs several nodes")]
pub fn start_berth_node(data: &std::path::Path, env: &[(&str, &str)]) -> Server {
    start_berth_in(tempfile::tempdir().unwrap(), data, env)
}

fn start_berth_in(dir: tempfile::TempDir, data: &std::path::Path, env: &[(&str, &str)]) -> Server {
    start_binary_in(env!("CARGO_BIN_EXE_berth").as_ref(), dir, data, env)
}

/// Another build of berth (an earlier commit's, to compare against), on a free port.
#[allow(dead_code, reason = "only the registry benchmark compares builds")]
pub fn start_berth_binary(binary: &std::path::Path) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    start_binary_in(binary, dir, &data, &[])
}

fn start_binary_in(
    binary: &std::path::Path,
    dir: tempfile::TempDir,
    data: &std::path::Path,
    env: &[(&str, &str)],
) -> Server {
    let mut child = Command::new(binary)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-password",
            ADMIN_PASSWORD,
            "--data-dir",
        ])
        .arg(data)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start berth");
    // Its log: kept, and its warnings and errors passed on to the benchmark's own stderr.
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let errors = BufReader::new(child.stderr.take().unwrap()).lines();
    let kept = log.clone();
    std::thread::spawn(move || {
        for line in errors.map_while(Result::ok) {
            if line.contains(" WARN ") || line.contains(" ERROR ") {
                eprintln!("{line}");
            }
            let mut kept = kept.lock().unwrap();
            if kept.len() < 100_000 {
                kept.push(line);
            }
        }
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines
        .by_ref()
        .map(|l| l.unwrap())
        .find(|l| l.contains("listening on"))
        .unwrap();
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let addr = line.rsplit("://").next().unwrap().trim().to_owned();
    use base64::Engine;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN_PASSWORD}"))
    );
    Server {
        name: "berth",
        auth: Some(basic),
        child,
        base: format!("http://{addr}"),
        log,
        _dir: dir,
    }
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// `len` pseudo-random bytes (xorshift), different per seed.
pub fn data(len: usize, seed: u64) -> Bytes {
    // Spread the seed over the state, so that neighbouring seeds give different data.
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}
