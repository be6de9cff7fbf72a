//! Test support: real `berth` processes on 127.0.0.1 (here), HTTP clients and content
//! builders (`http.rs`), the peers and proxies tests put beside berth (`peers.rs`), and
//! moto with an EC2 fault proxy (`moto.rs`), and the OpenStack and ECS emulators (`emulator.rs`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod emulator;
pub mod hosts;
mod http;
mod moto;
mod peers;

pub use emulator::*;
pub use http::*;
pub use moto::*;
pub use peers::*;

/// The `admin` password every test server starts with.
pub const ADMIN_PASSWORD: &str = "test admin password";

/// Projects every test server has (private), so tests can push at once.
pub const TEST_PROJECTS: [&str; 2] = ["team", "alpha"];

/// A `berth serve` child process with its own data directory.
pub struct Berth {
    child: Option<Child>,
    /// `http://127.0.0.1:<port>`
    pub url: String,
    /// `127.0.0.1:<port>`
    pub addr: String,
    /// The data directory (kept across restarts).
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    extra_args: Vec<String>,
    extra_env: Vec<(String, String)>,
    /// Where berth's log (stderr) goes when a test reads it; inherited otherwise.
    log_file: Option<PathBuf>,
}

/// The `berth` binary cargo built for these tests.
pub fn berth_bin() -> &'static str {
    env!("CARGO_BIN_EXE_berth")
}

impl Berth {
    /// Starts berth on a fresh data directory and a free port.
    pub fn start() -> Berth {
        Berth::start_with(&[])
    }

    /// Starts berth with extra `serve` arguments.
    pub fn start_with(extra: &[&str]) -> Berth {
        Berth::start_configured(extra, &[])
    }

    /// Starts berth with extra `serve` arguments and environment variables (such as
    /// `BERTH_REPLICATION__RETRY_BASE_MS`).
    pub fn start_configured(extra: &[&str], env: &[(&str, &str)]) -> Berth {
        Berth::start_full(extra, env, false)
    }

    /// Starts berth with its log (stderr) written to [`Berth::log_path`], for tests that
    /// read what berth logged.
    pub fn start_logged(extra: &[&str], env: &[(&str, &str)]) -> Berth {
        Berth::start_full(extra, env, true)
    }

    /// The file berth's log goes to (see [`Berth::start_logged`]).
    pub fn log_path(&self) -> &Path {
        self.log_file.as_deref().expect("started with start_logged")
    }

    /// Starts one node of several that share `data_dir` (the blobs; the metadata is in the
    /// database `env` names); only the first (`first`) creates the test projects.
    pub fn start_node(data_dir: &Path, env: &[(&str, &str)], first: bool) -> Berth {
        Berth::start_in(Some(data_dir), &[], env, true, first)
    }

    fn start_full(extra: &[&str], env: &[(&str, &str)], logged: bool) -> Berth {
        Berth::start_in(None, extra, env, logged, true)
    }

    fn start_in(
        shared: Option<&Path>,
        extra: &[&str],
        env: &[(&str, &str)],
        logged: bool,
        create_projects: bool,
    ) -> Berth {
        let tmp = tempfile::tempdir().expect("tempdir");
        let log_file = logged.then(|| tmp.path().join("berth.log"));
        let data_dir = shared.map_or_else(|| tmp.path().join("data"), Path::to_path_buf);
        let mut b = Berth {
            child: None,
            url: String::new(),
            addr: String::new(),
            data_dir,
            _tmp: Some(tmp),
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            extra_env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            log_file,
        };
        b.spawn("127.0.0.1:0");
        if create_projects && b.url.starts_with("http://") {
            for project in TEST_PROJECTS {
                b.create_project(project, false);
            }
        }
        b
    }

    /// Creates a project through the admin API, as `admin`. Usable from sync and async
    /// tests alike (it runs on a thread of its own).
    pub fn create_project(&self, name: &str, public: bool) {
        let url = format!("{}/api/v1/projects", self.url);
        let body = serde_json::json!({"name": name, "public": public});
        let status = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    client()
                        .post(url)
                        .json(&body)
                        .send()
                        .await
                        .expect("create project")
                        .status()
                })
        })
        .join()
        .unwrap();
        assert_eq!(status, 201, "creating project {name}");
    }

    fn spawn(&mut self, listen: &str) {
        let mut child = Command::new(berth_bin())
            .arg("serve")
            .arg("--listen")
            .arg(listen)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--admin-password")
            .arg(ADMIN_PASSWORD)
            .args(&self.extra_args)
            .env("RUST_LOG", "warn")
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(match &self.log_file {
                Some(path) => Stdio::from(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .expect("open the log file"),
                ),
                None => Stdio::inherit(),
            })
            .spawn()
            .expect("spawn berth");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = loop {
            let line = lines
                .next()
                .expect("berth exited before listening")
                .expect("read stdout");
            if line.contains("listening on") {
                break line;
            }
        };
        let addr = line
            .rsplit("://")
            .next()
            .expect("listening line")
            .trim()
            .to_owned();
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let scheme = if line.contains("https://") {
            "https"
        } else {
            "http"
        };
        self.url = format!("{scheme}://{addr}");
        self.addr = addr;
        self.child = Some(child);
    }

    /// The server's process id.
    pub fn child_pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `kill -9`: no chance to flush or clean up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }

    /// Waits until the server exits by itself (a fault hook made it die), at most
    /// `limit`.
    pub fn wait_for_exit(&mut self, limit: Duration) {
        let mut child = self.child.take().expect("berth is running");
        let deadline = Instant::now() + limit;
        loop {
            if child.try_wait().expect("wait").is_some() {
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("berth did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sets (or, with `None`, removes) an environment variable for the next start.
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.extra_env.retain(|(k, _)| k != key);
        if let Some(value) = value {
            self.extra_env.push((key.to_string(), value.to_string()));
        }
    }

    /// SIGTERM, then waits for a clean exit; returns the exit status's success.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops with SIGTERM (a graceful shutdown, which must succeed), then starts the same
    /// data directory again on the same port.
    pub fn restart_gracefully(&mut self) {
        assert!(self.terminate(), "berth did not shut down cleanly");
        self.start_again();
    }

    /// Kills the server (-9) and starts the same data directory again on the same port.
    pub fn restart(&mut self) {
        self.kill9();
        self.start_again();
    }

    /// Starts a stopped server again: the same data directory, environment and port.
    pub fn start_again(&mut self) {
        let addr = self.addr.clone();
        // The port was ours a moment ago; retry briefly in case the kernel holds it.
        for _ in 0..50 {
            if std::net::TcpListener::bind(&addr).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.spawn(&addr);
    }

    /// Runs `berth fsck` on the (stopped) data directory; returns (success, stdout).
    pub fn fsck(&self, repair: bool) -> (bool, String) {
        assert!(self.child.is_none(), "stop berth before fsck");
        fsck(&self.data_dir, repair)
    }

    /// `/v2/<repo>/…`
    pub fn v2(&self, path: &str) -> String {
        format!("{}/v2/{}", self.url, path)
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs `berth fsck` on a data directory.
pub fn fsck(data_dir: &Path, repair: bool) -> (bool, String) {
    let mut cmd = Command::new(berth_bin());
    cmd.arg("fsck").arg("--data-dir").arg(data_dir);
    if repair {
        cmd.arg("--repair");
    }
    let out = cmd.output().expect("run fsck");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Asserts a tool is installed, with the command that installs it.
pub fn require_tool(name: &str, package: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{name} is not installed; install it with `apt-get install -y {package}` (.ci/run does)"
    );
}

/// A process's peak resident set size (VmHWM), in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The size of the largest file under `dir` (0 when there is none).
pub fn largest_file_under(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                largest_file_under(&path)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            }
        })
        .max()
        .unwrap_or(0)
}
