//! Test support: real `berth` processes on 127.0.0.1, an HTTP client, content builders.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

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

    /// Starts the same data directory again on the same port.
    pub fn restart(&mut self) {
        self.kill9();
        self.start_again();
    }

    fn start_again(&mut self) {
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

/// An HTTP client logged in as `admin` with Basic credentials, following no redirects (the
/// registry's Location headers are for the test to read).
pub fn client() -> reqwest::Client {
    client_as("admin", ADMIN_PASSWORD)
}

/// An HTTP client with the given Basic credentials.
pub fn client_as(user: &str, password: &str) -> reqwest::Client {
    install_crypto();
    use base64::Engine;
    let mut headers = reqwest::header::HeaderMap::new();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Basic {basic}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()
        .expect("client")
}

/// An HTTP client without credentials.
pub fn anonymous_client() -> reqwest::Client {
    install_crypto();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// `--creds` for skopeo.
pub fn skopeo_creds() -> String {
    format!("admin:{ADMIN_PASSWORD}")
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Deterministic pseudo-random bytes (xorshift), different per seed.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Pushes a blob monolithically (`POST ?digest=`); returns its digest.
pub async fn push_blob(http: &reqwest::Client, base: &str, repo: &str, data: &[u8]) -> String {
    let digest = sha256(data);
    let mut r = http
        .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}"))
        .header("content-type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .await
        .expect("push blob");
    if r.status() == 202 {
        // A registry without monolithic POSTs (CNCF distribution) opens a session
        // instead: finish it with one PUT, as docker does.
        let location = r.headers()["location"].to_str().unwrap().to_string();
        let location = if location.starts_with('/') {
            format!("{base}{location}")
        } else {
            location
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        r = http
            .put(format!("{location}{separator}digest={digest}"))
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .expect("push blob");
    }
    assert_eq!(
        r.status(),
        201,
        "push blob {digest}: {}",
        r.text().await.unwrap_or_default()
    );
    digest
}

/// An OCI image manifest over the given config and layers.
pub fn image_manifest(config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    let layers: Vec<_> = layers
        .iter()
        .map(|l| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256(l), "size": l.len()}))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config), "size": config.len()},
        "layers": layers,
    }))
    .unwrap()
}

/// Pushes config, layers and an image manifest under `reference`; returns the manifest
/// digest and bytes.
pub async fn push_image(
    http: &reqwest::Client,
    base: &str,
    repo: &str,
    reference: &str,
    seed: u64,
) -> (String, Vec<u8>) {
    let config =
        format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":{seed}}}").into_bytes();
    let layer = bytes(seed, 4096 + seed as usize % 1000);
    push_blob(http, base, repo, &config).await;
    push_blob(http, base, repo, &layer).await;
    let manifest = image_manifest(&config, &[&layer]);
    put_manifest(
        http,
        base,
        repo,
        reference,
        "application/vnd.oci.image.manifest.v1+json",
        &manifest,
    )
    .await;
    (sha256(&manifest), manifest)
}

/// PUTs a manifest and asserts 201.
pub async fn put_manifest(
    http: &reqwest::Client,
    base: &str,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) {
    let r = http
        .put(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("content-type", media_type)
        .body(body.to_vec())
        .send()
        .await
        .expect("put manifest");
    let status = r.status();
    assert_eq!(
        status,
        201,
        "put manifest {repo}:{reference}: {}",
        r.text().await.unwrap_or_default()
    );
}

/// The `errors[0].code` of an error response body.
pub async fn error_code(r: reqwest::Response) -> String {
    let body: serde_json::Value = r.json().await.expect("json error body");
    body["errors"][0]["code"]
        .as_str()
        .expect("error code")
        .to_owned()
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

/// reqwest and oci-client are built without a bundled TLS provider; tests use the same
/// ring provider as the server.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
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

/// Debian's `docker-registry` (CNCF distribution) on a free port, open (no auth), deletes
/// enabled, storing in its own temporary directory.
pub struct DockerRegistry {
    child: Child,
    /// `http://127.0.0.1:<port>`
    pub url: String,
    _dir: tempfile::TempDir,
}

impl DockerRegistry {
    /// Starts one and waits until it accepts connections.
    pub fn start() -> DockerRegistry {
        require_tool("docker-registry", "docker-registry");
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .expect("write config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        DockerRegistry {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }
}

impl Drop for DockerRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a [`FaultyProxy`] treats the connections it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything.
    None,
    /// Answer every request with `500 Internal Server Error`.
    ServerError,
    /// Close every connection as soon as it is accepted.
    Drop,
    /// Forward, but only after this many milliseconds.
    Slow(u64),
}

/// A TCP proxy in front of a real server that can be told to fail: for testing that a
/// replication destination which errors, drops connections or crawls is retried and
/// reported without holding up the others.
pub struct FaultyProxy {
    /// `127.0.0.1:<port>` to connect to instead of the server.
    pub addr: String,
    fault: std::sync::Arc<std::sync::Mutex<Fault>>,
    _task: tokio::task::JoinHandle<()>,
}

impl FaultyProxy {
    /// A proxy to `target` (`host:port`), starting in `fault` mode. Needs a Tokio runtime.
    pub async fn start(target: &str, fault: Fault) -> FaultyProxy {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let fault = std::sync::Arc::new(std::sync::Mutex::new(fault));
        let (mode, target) = (fault.clone(), target.to_string());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let now = *mode.lock().unwrap();
                let target = target.clone();
                tokio::spawn(async move {
                    match now {
                        Fault::Drop => drop(client),
                        Fault::ServerError => {
                            let mut buf = vec![0u8; 64 * 1024];
                            let _ = client.read(&mut buf).await;
                            let body =
                                r#"{"errors":[{"code":"UNKNOWN","message":"injected failure"}]}"#;
                            let answer = format!(
                                "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                                body.len()
                            );
                            let _ = client.write_all(answer.as_bytes()).await;
                            let _ = client.shutdown().await;
                        }
                        Fault::Slow(_) | Fault::None => {
                            if let Fault::Slow(ms) = now {
                                tokio::time::sleep(Duration::from_millis(ms)).await;
                            }
                            if let Ok(mut server) = tokio::net::TcpStream::connect(&target).await {
                                let _ =
                                    tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            }
                        }
                    }
                });
            }
        });
        FaultyProxy {
            addr,
            fault,
            _task: task,
        }
    }

    /// Changes how new connections are treated.
    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }
}

/// What a [`GatedProxy`] does with a connection that reached its threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Hold it: forward nothing more towards the server until told otherwise.
    Held,
    /// Forward everything, on held connections and new ones.
    Open,
    /// Close held connections; forward new ones freely.
    Cut,
}

/// A TCP proxy that forwards each connection's first `threshold` bytes towards the server
/// and then holds it, for catching a transfer half-way: what the receiver (and whoever
/// forwards from it) does with half a blob.
pub struct GatedProxy {
    /// `127.0.0.1:<port>` to connect to instead of the server.
    pub addr: String,
    gate: tokio::sync::watch::Sender<Gate>,
    _task: tokio::task::JoinHandle<()>,
}

impl GatedProxy {
    /// A held gate in front of `target` (`host:port`). Needs a Tokio runtime.
    pub async fn start(target: &str, threshold: u64) -> GatedProxy {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let gate = tokio::sync::watch::Sender::new(Gate::Held);
        let (watch, target) = (gate.clone(), target.to_string());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                    continue;
                };
                let mut gate = watch.subscribe();
                tokio::spawn(async move {
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let answers = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                    });
                    let mut forwarded = 0u64;
                    let mut let_through = false;
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match client_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        forwarded += n as u64;
                        if forwarded > threshold && !let_through {
                            // Only a connection that arrives while the gate holds is held
                            // (and cut); later ones pass.
                            if *gate.borrow() == Gate::Held {
                                let state = *gate
                                    .wait_for(|g| *g != Gate::Held)
                                    .await
                                    .expect("gate kept by the proxy");
                                if state == Gate::Cut {
                                    break;
                                }
                            }
                            let_through = true;
                        }
                        if server_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    answers.abort();
                });
            }
        });
        GatedProxy {
            addr,
            gate,
            _task: task,
        }
    }

    /// Releases held connections (to finish, or to be closed).
    pub fn set(&self, state: Gate) {
        self.gate.send_replace(state);
    }
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
