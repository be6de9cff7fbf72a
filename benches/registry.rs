//! berth vs CNCF distribution (Debian's `docker-registry`), same machine, same storage
//! kind (local filesystem), same client.
//!
//! Run: `cargo bench --bench registry` (needs `docker-registry` installed; `.ci/run`
//! installs it). Prints one table; figures are throughput, higher is better, except RSS.
//!
//! What each row does:
//! - blob upload: one 1 GiB blob as docker sends it: POST, one streamed PATCH, PUT ?digest.
//! - blob download: GET of that blob, read to the end.
//! - manifest GET: 64 concurrent clients GET one manifest by tag, for a fixed time.
//! - 4 KiB uploads: 16 concurrent clients each POST a session then PUT a distinct 4 KiB
//!   blob with ?digest (the two-request monolithic upload), for a fixed time.
//! - peak RSS: the server's VmHWM after all of the above, and (berth) a burst of 16
//!   concurrent first logins by 16 accounts (each an argon2id check), as when a fleet of
//!   CI jobs starts at once; the berth-only table shows the RSS before and after it.
//!
//! berth runs with access control on: pushes log in as `admin` with Basic credentials,
//! the manifest GETs above read a public project anonymously. Then, for berth alone:
//! - token issuance: 16 concurrent clients GET `/service/token` with Basic credentials.
//! - manifest GET with a bearer token at concurrency 64, against the anonymous figure:
//!   the cost of checking a token on every request.
//!
//! Then the metadata on PostgreSQL (a server of the benchmark's own that flushes its
//! writes, from Debian's `postgresql`): the same workload against one berth node, side by
//! side with the embedded redb figures; and three nodes sharing one database and one blob
//! directory behind a round-robin TCP proxy in this process, against one node behind the
//! same proxy: manifest GETs (64 concurrent) and 4 KiB uploads (16 concurrent).
//!
//! `BERTH_BENCH_AGAINST=/path/to/berth cargo bench --bench registry` instead compares this
//! build with another (an earlier commit's `target/release/berth`) on the embedded
//! default: `BERTH_BENCH_ROUNDS` rounds (6) that alternate which build goes first, each
//! build measured on a fresh data directory (256 MiB upload and download, manifest GETs,
//! 4 KiB uploads, token issuance, bearer-token GETs, peak RSS); prints every round, the medians and the median of the
//! per-round ratios, which cancels the disk's drift between rounds.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;

const GIB: usize = 1024 * 1024 * 1024;
const TIMED_SECONDS: u64 = 5;

mod against;
mod support;
use support::{Server, data, free_port, sha256, start_berth, start_berth_node, start_berth_with};

fn start_distribution() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  cache:\n    blobdescriptor: inmemory\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry is not installed: apt-get install -y docker-registry");
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "docker-registry did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Server {
        name: "docker-registry",
        auth: None,
        child,
        base,
        log: Default::default(),
        _dir: dir,
    }
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

struct Figures {
    upload_mbs: f64,
    download_mbs: f64,
    manifest_rps: f64,
    small_uploads_per_s: f64,
    peak_rss_mib: f64,
    /// berth: (RSS before the login burst, peak before it, peak after it), MiB.
    logins: Option<(f64, f64, f64)>,
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// 16 accounts, then each logs in for the first time at the same moment (Basic on
/// `/v2/`, so every one is an argon2id check the credential cache cannot answer).
async fn login_burst(base: &str, admin: &reqwest::Client) {
    const ACCOUNTS: usize = 16;
    for i in 0..ACCOUNTS {
        let r = admin
            .post(format!("{base}/api/v1/users"))
            .json(&serde_json::json!({"username": format!("ci{i}"), "password": format!("ci password number {i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let start = Arc::new(tokio::sync::Barrier::new(ACCOUNTS));
    let logins: Vec<_> = (0..ACCOUNTS)
        .map(|i| {
            let (base, start) = (base.to_owned(), start.clone());
            tokio::spawn(async move {
                use base64::Engine;
                let basic = format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("ci{i}:ci password number {i}"))
                );
                let http = client_with(Some(&basic));
                start.wait().await;
                let r = http.get(format!("{base}/v2/")).send().await.unwrap();
                assert_eq!(r.status(), 200);
            })
        })
        .collect();
    for login in logins {
        login.await.unwrap();
    }
}

async fn upload_streamed(
    http: &reqwest::Client,
    base: &str,
    repo: &str,
    blob: &Bytes,
    digest: &str,
) {
    let r = http
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let location = if location.starts_with("http") {
        location
    } else {
        format!("{base}{location}")
    };
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..blob.len())
        .step_by(1 << 20)
        .map(|i| Ok(blob.slice(i..(i + (1 << 20)).min(blob.len()))))
        .collect();
    let r = http
        .patch(&location)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "patch");
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let location = if location.starts_with("http") {
        location
    } else {
        format!("{base}{location}")
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = http
        .put(format!("{location}{sep}digest={digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "put");
}

async fn upload_two_step(http: &reqwest::Client, base: &str, repo: &str, blob: Bytes) {
    let digest = sha256(&blob);
    let r = http
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let location = if location.starts_with("http") {
        location
    } else {
        format!("{base}{location}")
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = http
        .put(format!("{location}{sep}digest={digest}"))
        .header("content-type", "application/octet-stream")
        .body(blob)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

fn client_with(auth: Option<&str>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(a) = auth {
        headers.insert(reqwest::header::AUTHORIZATION, a.parse().unwrap());
    }
    reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .default_headers(headers)
        .build()
        .unwrap()
}

/// Manifest GETs per second at concurrency 64 with `http`.
async fn manifest_gets(http: reqwest::Client, base: String) -> f64 {
    timed(64, move |_, _| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let r = http
                .get(format!("{base}/v2/bench/small/manifests/latest"))
                .header("accept", "application/vnd.oci.image.manifest.v1+json")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap();
        }
    })
    .await
}

/// berth: the public project `bench`, so that the manifest GETs are anonymous, as on
/// docker-registry.
async fn public_bench_project(http: &reqwest::Client, base: &str) {
    let r = http
        .post(format!("{base}/api/v1/projects"))
        .json(&serde_json::json!({"name": "bench", "public": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

/// Uploads `blob` to `bench/big` as docker does, then downloads it whole: MB/s each way.
async fn blob_round_trip(
    http: &reqwest::Client,
    base: &str,
    blob: &Bytes,
    digest: &str,
) -> (f64, f64) {
    let started = Instant::now();
    upload_streamed(http, base, "bench/big", blob, digest).await;
    let upload = blob.len() as f64 / 1e6 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let r = http
        .get(format!("{base}/v2/bench/big/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    let mut received = 0usize;
    while let Some(chunk) = stream.next().await {
        received += chunk.unwrap().len();
    }
    assert_eq!(received, blob.len());
    let download = received as f64 / 1e6 / started.elapsed().as_secs_f64();
    (upload, download)
}

async fn measure(server: &Server, big: &Bytes, big_digest: &str) -> Figures {
    let http = client_with(server.auth.as_deref());
    let base = server.base.clone();
    if server.auth.is_some() {
        public_bench_project(&http, &base).await;
    }

    let (upload_mbs, download_mbs) = blob_round_trip(&http, &base, big, big_digest).await;

    push_small_image(&http, &base).await;

    let manifest_rps = manifest_gets(client_with(None), base.clone()).await;

    let small_uploads_per_s = small_uploads(http.clone(), base.clone()).await;

    let pid = server.child.id();
    let logins = if server.auth.is_some() {
        let before = rss_kib(pid, "VmRSS:") as f64 / 1024.0;
        let peak_before = peak_rss_kib(pid) as f64 / 1024.0;
        login_burst(&base, &http).await;
        Some((before, peak_before, peak_rss_kib(pid) as f64 / 1024.0))
    } else {
        None
    };
    Figures {
        upload_mbs,
        download_mbs,
        manifest_rps,
        small_uploads_per_s,
        peak_rss_mib: peak_rss_kib(pid) as f64 / 1024.0,
        logins,
    }
}

/// 16 concurrent clients each uploading distinct 4 KiB blobs (POST, PUT ?digest).
async fn small_uploads(http: reqwest::Client, base: String) -> f64 {
    timed(16, move |worker, n| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let blob = data(4096, (worker << 32) | n);
            upload_two_step(&http, &base, "bench/small", blob).await;
        }
    })
    .await
}

/// Pushes the small image the manifest GETs read (`bench/small:latest`).
async fn push_small_image(http: &reqwest::Client, base: &str) {
    let config = Bytes::from_static(b"{\"architecture\":\"amd64\",\"os\":\"linux\"}");
    let layer = data(4096, 7);
    upload_two_step(http, base, "bench/small", config.clone()).await;
    upload_two_step(http, base, "bench/small", layer.clone()).await;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256(&layer), "size": layer.len()}],
    }))
    .unwrap();
    let r = http
        .put(format!("{base}/v2/bench/small/manifests/latest"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

/// Runs `op` on `concurrency` workers for TIMED_SECONDS; returns operations per second.
async fn timed<F, Fut>(concurrency: u64, op: F) -> f64
where
    F: Fn(u64, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(TIMED_SECONDS);
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let (op, done) = (op.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            let mut n = 0;
            while Instant::now() < deadline {
                op(w, n).await;
                n += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// What the disk under the temp dir sustains for a 1 GiB write made durable: the ceiling
/// for any registry that fsyncs before acknowledging.
fn disk_fdatasync_mbs() -> f64 {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut file = std::fs::File::create(dir.path().join("probe")).unwrap();
    let chunk = vec![0x5au8; 1 << 20];
    let started = Instant::now();
    for _ in 0..1024 {
        file.write_all(&chunk).unwrap();
    }
    file.sync_data().unwrap();
    GIB as f64 / 1e6 / started.elapsed().as_secs_f64()
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful. Either way
    // this runs once.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if let Ok(other) = std::env::var("BERTH_BENCH_AGAINST") {
        return against::against(std::path::Path::new(&other));
    }
    let big = data(GIB, 42);
    let started = Instant::now();
    let big_digest = sha256(&big);
    let sha_mbs = big.len() as f64 / 1e6 / started.elapsed().as_secs_f64();

    let disk_mbs = disk_fdatasync_mbs();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut results = Vec::new();
    let mut auth_figures = None;
    for start in [start_berth as fn() -> Server, start_distribution] {
        let server = start();
        let figures = runtime.block_on(measure(&server, &big, &big_digest));
        if let Some(basic) = &server.auth {
            auth_figures = Some(runtime.block_on(measure_auth(&server.base, basic)));
        }
        results.push((server.name, figures));
    }
    let (b, p) = (&results[0].1, &results[1].1);
    println!();
    println!(
        "single-core sha256 on this machine: {sha_mbs:.0} MB/s; sequential write + fdatasync of 1 GiB: {disk_mbs:.0} MB/s"
    );
    println!("| metric | berth | docker-registry | berth/peer |");
    println!("|---|---:|---:|---:|");
    let row = |name: &str, a: f64, b: f64, unit: &str| {
        println!("| {name} | {a:.1} {unit} | {b:.1} {unit} | {:.2}x |", a / b)
    };
    row("1 GiB blob upload", b.upload_mbs, p.upload_mbs, "MB/s");
    row(
        "1 GiB blob download",
        b.download_mbs,
        p.download_mbs,
        "MB/s",
    );
    row(
        "manifest GET, 64 concurrent",
        b.manifest_rps,
        p.manifest_rps,
        "req/s",
    );
    row(
        "4 KiB blob uploads, 16 concurrent",
        b.small_uploads_per_s,
        p.small_uploads_per_s,
        "uploads/s",
    );
    row(
        "peak RSS (lower is better)",
        b.peak_rss_mib,
        p.peak_rss_mib,
        "MiB",
    );
    let (tokens, bearer, anonymous) = auth_figures.expect("berth ran");
    println!();
    println!("| access control (berth) | figure |");
    println!("|---|---:|");
    if let Some((rss, peak_before, peak_after)) = b.logins {
        println!(
            "| RSS before the login burst; peak before it; peak after 16 concurrent first logins | {rss:.1} MiB; {peak_before:.1} MiB; {peak_after:.1} MiB |"
        );
    }
    println!("| token issuance, Basic credentials, 16 concurrent | {tokens:.0} tokens/s |");
    println!("| manifest GET, anonymous, 64 concurrent | {anonymous:.0} req/s |");
    println!("| manifest GET, bearer token, 64 concurrent | {bearer:.0} req/s |");
    println!(
        "| bearer-token overhead | {:.1}% |",
        (1.0 - bearer / anonymous) * 100.0
    );

    // The metadata on PostgreSQL: one node, the same workload.
    let database = std::thread::spawn(berth_test_postgres::durable_database)
        .join()
        .unwrap();
    let on_postgres = start_berth_with(&postgres_env(&database, "bench-1"));
    let pg = runtime.block_on(measure(&on_postgres, &big, &big_digest));
    drop(on_postgres);
    println!();
    println!("| metric | berth on redb | berth on PostgreSQL | PostgreSQL/redb |");
    println!("|---|---:|---:|---:|");
    for (name, redb, postgres, unit) in [
        ("1 GiB blob upload", b.upload_mbs, pg.upload_mbs, "MB/s"),
        (
            "1 GiB blob download",
            b.download_mbs,
            pg.download_mbs,
            "MB/s",
        ),
        (
            "manifest GET, 64 concurrent",
            b.manifest_rps,
            pg.manifest_rps,
            "req/s",
        ),
        (
            "4 KiB blob uploads, 16 concurrent",
            b.small_uploads_per_s,
            pg.small_uploads_per_s,
            "uploads/s",
        ),
        (
            "peak RSS (lower is better)",
            b.peak_rss_mib,
            pg.peak_rss_mib,
            "MiB",
        ),
    ] {
        println!(
            "| {name} | {redb:.1} {unit} | {postgres:.1} {unit} | {:.2}x |",
            postgres / redb
        );
    }

    // Three nodes on one database and one blob directory, behind a round-robin proxy.
    let database = std::thread::spawn(berth_test_postgres::durable_database)
        .join()
        .unwrap();
    let shared = tempfile::tempdir().unwrap();
    let data_dir = shared.path().join("data");
    let nodes: Vec<Server> = (0..3)
        .map(|i| start_berth_node(&data_dir, &postgres_env(&database, &format!("bench-{i}"))))
        .collect();
    let ((one_gets, one_uploads), (three_gets, three_uploads)) =
        runtime.block_on(scale_out(&nodes));
    println!();
    println!("| through a round-robin proxy, PostgreSQL | one node | three nodes | three/one |");
    println!("|---|---:|---:|---:|");
    for (name, one, three, unit) in [
        ("manifest GET, 64 concurrent", one_gets, three_gets, "req/s"),
        (
            "4 KiB blob uploads, 16 concurrent",
            one_uploads,
            three_uploads,
            "uploads/s",
        ),
    ] {
        println!(
            "| {name} | {one:.1} {unit} | {three:.1} {unit} | {:.2}x |",
            three / one
        );
    }
}

fn postgres_env<'a>(database: &'a str, node: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("BERTH_METADATA__BACKEND", "postgres"),
        ("BERTH_METADATA__URL", database),
        ("BERTH_SERVER__NODE_ID", node),
    ]
}

/// ((manifest GETs/s, 4 KiB uploads/s) through a proxy to the first node alone, the same
/// through a proxy that deals connections to all nodes in turn), measured alternately.
async fn scale_out(nodes: &[Server]) -> ((f64, f64), (f64, f64)) {
    let admin = client_with(nodes[0].auth.as_deref());
    let r = admin
        .post(format!("{}/api/v1/projects", nodes[0].base))
        .json(&serde_json::json!({"name": "bench", "public": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    push_small_image(&admin, &nodes[0].base).await;
    let one = round_robin(&nodes[..1]).await;
    let three = round_robin(nodes).await;
    let gets_one = manifest_gets(client_with(None), one.clone()).await;
    let gets_three = manifest_gets(client_with(None), three.clone()).await;
    let uploads_one = small_uploads(admin.clone(), one).await;
    let uploads_three = small_uploads(admin, three).await;
    ((gets_one, uploads_one), (gets_three, uploads_three))
}

/// A TCP proxy on a free port that hands each new connection to the next of `nodes`;
/// returns its base URL. It runs as long as the runtime does.
async fn round_robin(nodes: &[Server]) -> String {
    let targets: Vec<String> = nodes
        .iter()
        .map(|n| n.base.trim_start_matches("http://").to_string())
        .collect();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut next = 0usize;
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                continue;
            };
            let target = targets[next % targets.len()].clone();
            next += 1;
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    format!("http://{addr}")
}

/// (token issuance/s, manifest GET/s with a bearer token, manifest GET/s anonymous), the
/// last two measured back to back so they see the same machine.
async fn measure_auth(base: &str, basic: &str) -> (f64, f64, f64) {
    let http = client_with(Some(basic));
    let url = format!("{base}/service/token?service=berth&scope=repository:bench/small:pull");
    let tokens = timed(16, {
        let (http, url) = (http.clone(), url.clone());
        move |_, _| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let r = http.get(url).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
            }
        }
    })
    .await;
    let body: serde_json::Value = http.get(&url).send().await.unwrap().json().await.unwrap();
    let bearer_client = client_with(Some(&format!("Bearer {}", body["token"].as_str().unwrap())));
    // Let the audit writer drain the token phase's login entries, then interleave the two
    // measurements so drift on the machine affects both alike.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let anonymous_before = manifest_gets(client_with(None), base.to_owned()).await;
    let bearer = manifest_gets(bearer_client, base.to_owned()).await;
    let anonymous_after = manifest_gets(client_with(None), base.to_owned()).await;
    (tokens, bearer, (anonymous_before + anonymous_after) / 2.0)
}
