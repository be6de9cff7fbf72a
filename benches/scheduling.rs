//! Scheduling figures, measured from outside a release `berth` on this machine:
//! - **creates**: 200 machines on AWS EC2 (moto in server mode, signatures checked) and
//!   200 on a physical pool, each at concurrency 16 through the API, until all are online:
//!   wall time, the API's answer time, and berth's own CPU time per create (read from
//!   `/proc`: what berth spends, not what it waits for from the provider);
//! - **reconciliation**: 10,000 machines created through berth in one cluster (the row
//!   says what each create cost berth with 10,000 records kept), then that cluster's
//!   reconcile round run three times (`POST /api/v1/clusters/{name}/reconcile`: the
//!   listing through its provider plugin, JSON read in the sandbox, compared with berth's
//!   10,000 records): berth's CPU time, the wall time and berth's peak memory. moto lists
//!   10,000 instances too slowly for this (over 30 s per page of 500 on this machine), so
//!   this cluster's provider is the tests' inventory plugin over an inventory API served
//!   by the benchmark itself.
//!
//! moto's server answers every request with `Connection: close`, so each request of the
//! `aws-ec2` plugin opens a TCP connection, which EC2's endpoints (and berth's pooled HTTP
//! client) do not do. The EC2 creates therefore run twice: against moto itself, and
//! against moto behind a keep-alive front in this process (which forwards each request,
//! its `Host` header and so its signature unchanged): berth's figure without the
//! emulator's connection churn.
//!
//! Targets (issue 14): berth's own time ≤ 5 ms per create; reconciling 10,000 machines
//! ≤ 1 s of CPU. Health probes and background reconciliation are set an hour apart so
//! they do not count in the figures.
//!
//! Four providers (issue 15): the same 200 creates on OpenStack and Alibaba Cloud ECS (their
//! emulators in `tests/emulators`: Python, so their own latency is high, but berth's CPU
//! per create is berth's), then 100 machines dealt over all four kinds of cluster at once
//! (pool, OpenStack, EC2 behind the keep-alive front, ECS) at concurrency 16. Target:
//! berth's own time ≤ 5 ms per create per provider.
//!
//! Signing in the sandbox: a second berth, logging the plugins' debug lines, creates
//! machines on EC2 and ECS; each request the `aws-ec2` (SigV4) and `aliyun-ecs` (ACS3)
//! plugins sign logs what signing took, read from the host's monotonic clock inside the
//! call. OpenStack signs nothing (a Keystone token rides along).
//!
//! Run: `cargo bench --bench scheduling` (needs moto: `pip install 'moto[server]'`; the
//! OpenStack and ECS emulators need only Python).

#[path = "../tests/all/support/emulator.rs"]
#[allow(
    dead_code,
    reason = "the benchmark starts the emulators, and injects no faults"
)]
mod emulator;
#[path = "../tests/all/support/moto.rs"]
#[allow(dead_code, reason = "the benchmark uses moto, not the fault proxy")]
mod moto;
mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use support::{Server, start_berth_with};

const CREATES: usize = 200;
const CONCURRENCY: usize = 16;
const RECONCILED: usize = 10_000;
/// Machines dealt over the four kinds of cluster.
const MIXED: usize = 100;
/// Machines per signing provider in the signing measurement.
const SIGNED_CREATES: usize = 50;

/// The OpenStack emulator's Debian image and the ECS emulator's.
const OPENSTACK_IMAGE: &str = "9b2b0ef6-0f4e-4c43-9d33-7e1f8a6b0001";
const ECS_IMAGE: &str = "debian_12_6_x64_20G_alibase_20240823.vhd";

/// What `moto.rs` asks of its crate: a TLS provider for reqwest.
fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// berth's CPU time so far (user + system), from `/proc`.
fn cpu_time(server: &Server) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", server.child.id())).unwrap();
    // The command may hold spaces; fields count from after its closing parenthesis.
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // `/proc` counts in USER_HZ, which Linux fixes at 100 per second for user space.
    Duration::from_millis(ticks * 10)
}

/// berth's peak resident memory so far (VmHWM), MiB.
fn peak_rss_mib(server: &Server) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    kib / 1024.0
}

struct Api {
    http: reqwest::Client,
    base: String,
    auth: String,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header("authorization", &self.auth);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let r = request.send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Creates `count` machines in `cluster` at `CONCURRENCY`, waits until all are online
/// (polling every `poll`), and prints the row.
async fn creates(
    api: &Api,
    server: &Server,
    cluster: &str,
    spec: Value,
    count: usize,
    poll: Duration,
) {
    let jobs = vec![(cluster.to_string(), spec); count];
    created(api, server, cluster, "bench", &jobs, poll).await;
}

/// Creates a machine of project `project` for each (cluster, spec) of `jobs`, at
/// `CONCURRENCY`; waits until all of the project's machines are online (polling every
/// `poll`), and prints the row `label`.
async fn created(
    api: &Api,
    server: &Server,
    label: &str,
    project: &str,
    jobs: &[(String, Value)],
    poll: Duration,
) {
    let count = jobs.len();
    let clusters: std::collections::BTreeSet<&str> = jobs.iter().map(|(c, _)| c.as_str()).collect();
    let only = if clusters.len() == 1 {
        format!("&cluster={}", jobs[0].0)
    } else {
        String::new()
    };
    let cpu_before = cpu_time(server);
    let started = Instant::now();
    let mut answers: Vec<Duration> = futures::stream::iter(jobs)
        .map(|(cluster, spec)| async move {
            let t = Instant::now();
            api.call(
                reqwest::Method::POST,
                "/api/v1/machines",
                Some(json!({"project": project, "cluster": cluster, "spec": spec})),
            )
            .await;
            t.elapsed()
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    // Polled as a deploy script would: the polls are berth's work too, so they are kept
    // few.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let online = api
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/machines?project={project}{only}&state=online"),
                None,
            )
            .await;
        if online.as_array().unwrap().len() == count {
            break;
        }
        let failed = api
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/machines?project={project}{only}&state=failed"),
                None,
            )
            .await;
        let failed = failed.as_array().unwrap();
        assert!(
            failed.is_empty(),
            "{} of {label}'s creates failed, the first: {:#}",
            failed.len(),
            failed[0]
        );
        assert!(Instant::now() < deadline, "not all online within 600 s");
        tokio::time::sleep(poll).await;
    }
    let wall = started.elapsed();
    let cpu = cpu_time(server) - cpu_before;
    answers.sort();
    println!(
        "| {label} | {count} | {:.1} s | {:.1} /s | {:.1} / {:.1} ms | {:.2} ms |",
        wall.as_secs_f64(),
        count as f64 / wall.as_secs_f64(),
        percentile(&answers, 0.5).as_secs_f64() * 1000.0,
        percentile(&answers, 0.99).as_secs_f64() * 1000.0,
        cpu.as_secs_f64() * 1000.0 / count as f64,
    );
}

/// The clouds every berth of this benchmark uses: moto (and its keep-alive front), and the
/// OpenStack and ECS emulators.
struct Clouds {
    moto: moto::Moto,
    front: String,
    openstack: emulator::OpenStackCloud,
    ecs: emulator::EcsCloud,
    /// The port every pool host answers on.
    ssh_port: u16,
}

impl Clouds {
    async fn start() -> Clouds {
        let moto = moto::Moto::start();
        let front = keep_alive_front(&moto.url).await;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ssh_port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || for _ in listener.incoming() {});
        let openstack = emulator::OpenStackCloud::start();
        let ecs = emulator::EcsCloud::start();
        // The emulators' accounts hold 100 instances by default; this makes more.
        openstack.faults(json!({"quota_instances": 100_000})).await;
        ecs.faults(json!({"quota_instances": 100_000})).await;
        Clouds {
            moto,
            front,
            openstack,
            ecs,
            ssh_port,
        }
    }

    /// Projects `projects`, and on `api`'s berth the clusters `aws` (moto itself),
    /// `aws-kept-alive`, `os`, `ecs`, and the pool `rack` with `hosts` hosts, all granted
    /// to them.
    async fn clusters(&self, api: &Api, projects: &[&str], hosts: usize) {
        use reqwest::Method;
        for project in projects {
            api.call(
                Method::POST,
                "/api/v1/projects",
                Some(json!({"name": project})),
            )
            .await;
        }
        let ec2_credentials = json!({"access-key-id": self.moto.access_key_id,
                                     "secret-access-key": self.moto.secret_access_key});
        let clusters = [
            json!({"name": "aws", "provider": "aws-ec2", "regions": ["us-east-1"],
                   "endpoint": self.moto.url, "credentials": ec2_credentials,
                   "settings": {"machine-types": "t3.micro"}}),
            json!({"name": "aws-kept-alive", "provider": "aws-ec2", "regions": ["us-east-1"],
                   "endpoint": self.front, "credentials": ec2_credentials,
                   "settings": {"machine-types": "t3.micro"}}),
            json!({"name": "os", "provider": "openstack", "regions": ["RegionOne"],
                   "endpoint": format!("{}/identity/v3", self.openstack.url),
                   "credentials": {"password": "berth-secret"},
                   "settings": {"username": "berth", "project": "team",
                                "service-endpoints": format!("{}/", self.openstack.url)}}),
            json!({"name": "ecs", "provider": "aliyun-ecs", "regions": ["cn-hangzhou"],
                   "endpoint": self.ecs.url,
                   "credentials": {"access-key-id": "LTAI5tBerthTeam",
                                   "access-key-secret": "berth-ecs-secret"},
                   "settings": {"vswitch": "vsw-hz-h", "security-group": "sg-hz-web"}}),
            json!({"name": "rack", "provider": "static-pool"}),
        ];
        for mut cluster in clusters {
            cluster["projects"] = json!(projects);
            if cluster["provider"] != "static-pool" {
                cluster["probe"] = json!({"kind": "none"});
            }
            api.call(Method::POST, "/api/v1/clusters", Some(cluster))
                .await;
        }
        self.add_hosts(api, 0, hosts).await;
    }

    /// Pool hosts `h<first>`… (`count` of them) in `rack`.
    async fn add_hosts(&self, api: &Api, first: usize, count: usize) {
        let hosts: Vec<Value> = (first..first + count)
            .map(|i| {
                json!({"name": format!("h{i}"), "address": "127.0.0.1", "ssh_port": self.ssh_port,
                       "cpus": 4, "memory_mib": 8192})
            })
            .collect();
        api.call(
            reqwest::Method::POST,
            "/api/v1/clusters/rack/hosts",
            Some(Value::Array(hosts)),
        )
        .await;
    }

    /// What a machine of each cluster asks for.
    fn spec(&self, cluster: &str) -> Value {
        match cluster {
            "rack" => json!({"cpus": 2, "memory_mib": 2048}),
            "os" => json!({"machine_type": "m1.small", "image": OPENSTACK_IMAGE}),
            "ecs" => json!({"machine_type": "ecs.g7.large", "image": ECS_IMAGE}),
            _ => json!({"machine_type": "t3.micro", "image": self.moto.image}),
        }
    }
}

fn api_of(server: &Server) -> Api {
    Api {
        http: reqwest::Client::new(),
        base: server.base.clone(),
        auth: server.auth.clone().unwrap(),
    }
}

#[tokio::main]
async fn main() {
    install_crypto();
    let clouds = Clouds::start().await;
    let server = start_berth_with(&[
        ("BERTH_SCHEDULING__HEALTH_INTERVAL_SECS", "3600"),
        ("BERTH_SCHEDULING__RECONCILE_INTERVAL_SECS", "3600"),
    ]);
    let api = api_of(&server);
    use reqwest::Method;
    clouds.clusters(&api, &["bench", "mixed"], CREATES).await;

    println!("\n## Creates, {CREATES} machines at concurrency {CONCURRENCY}\n");
    println!(
        "| cluster | machines | wall, to all online | creates/s | API answer p50 / p99 | berth CPU per create |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    creates(
        &api,
        &server,
        "rack",
        json!({"cpus": 2, "memory_mib": 2048}),
        CREATES,
        Duration::from_millis(500),
    )
    .await;
    // moto itself, then behind the keep-alive front; OpenStack and ECS.
    for cluster in ["aws", "aws-kept-alive", "os", "ecs"] {
        creates(
            &api,
            &server,
            cluster,
            clouds.spec(cluster),
            CREATES,
            Duration::from_millis(500),
        )
        .await;
    }
    // The four kinds at once, dealt in turn.
    clouds.add_hosts(&api, CREATES, MIXED / 4).await;
    let jobs: Vec<(String, Value)> = ["rack", "os", "aws-kept-alive", "ecs"]
        .iter()
        .cycle()
        .take(MIXED)
        .map(|c| (c.to_string(), clouds.spec(c)))
        .collect();
    created(
        &api,
        &server,
        "all four at once",
        "mixed",
        &jobs,
        Duration::from_millis(500),
    )
    .await;

    // Ten thousand machines in cluster `big`, made through berth.
    let inventory = inventory_api().await;
    let plugin = std::fs::read(
        std::path::Path::new(env!("BERTH_TEST_PLUGINS_DIR")).join("berth_test_inventory.wasm"),
    )
    .unwrap();
    let loaded = api
        .http
        .post(format!("{}/api/v1/plugins", api.base))
        .header("authorization", &api.auth)
        .header("content-type", "application/wasm")
        .body(plugin)
        .send()
        .await
        .unwrap();
    assert_eq!(loaded.status(), 201);
    api.call(
        Method::POST,
        "/api/v1/clusters",
        Some(json!({
            "name": "big", "provider": "inventory", "regions": ["local"],
            "endpoint": format!("{inventory}/inv"), "credentials": {"token": "bench"},
            "projects": ["bench"], "probe": {"kind": "none"},
        })),
    )
    .await;
    creates(
        &api,
        &server,
        "big",
        json!({"machine_type": "small", "image": "debian-12"}),
        RECONCILED,
        Duration::from_secs(5),
    )
    .await;

    println!("\n## Reconciliation: one cluster of {RECONCILED} machines, all on record\n");
    println!("| machines | round | wall | berth CPU | berth peak RSS before → after |");
    println!("|---:|---:|---:|---:|---:|");
    for round in 1..=3 {
        let (cpu_before, rss_before) = (cpu_time(&server), peak_rss_mib(&server));
        let started = Instant::now();
        let report = api
            .call(Method::POST, "/api/v1/clusters/big/reconcile", None)
            .await;
        let wall = started.elapsed();
        let cpu = cpu_time(&server) - cpu_before;
        assert_eq!(report["listed"], RECONCILED, "{report:#}");
        assert_eq!(report["records"], RECONCILED, "{report:#}");
        assert_eq!(report["orphans"], 0, "{report:#}");
        assert_eq!(report["retired"], json!([]), "{report:#}");
        println!(
            "| {RECONCILED} | {round} | {:.2} s | {:.2} s | {:.0} → {:.0} MiB |",
            wall.as_secs_f64(),
            cpu.as_secs_f64(),
            rss_before,
            peak_rss_mib(&server)
        );
    }
    signing(&clouds).await;
}

/// What signing one request costs inside the sandbox, per scheme: a berth that logs the
/// plugins' debug lines creates machines on EC2 (SigV4) and ECS (ACS3), and every request
/// the plugins signed says how long the signing took.
async fn signing(clouds: &Clouds) {
    let server = start_berth_with(&[
        ("BERTH_SCHEDULING__HEALTH_INTERVAL_SECS", "3600"),
        ("BERTH_SCHEDULING__RECONCILE_INTERVAL_SECS", "3600"),
        ("RUST_LOG", "warn,berth::plugin=debug"),
    ]);
    let api = api_of(&server);
    clouds.clusters(&api, &["bench"], 0).await;
    for cluster in ["aws-kept-alive", "ecs"] {
        let jobs = vec![(cluster.to_string(), clouds.spec(cluster)); SIGNED_CREATES];
        created(
            &api,
            &server,
            cluster,
            "bench",
            &jobs,
            Duration::from_millis(500),
        )
        .await;
    }
    let mut by_scheme: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for line in server.log.lock().unwrap().iter() {
        if !line.contains("signed a request") {
            continue;
        }
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .map(|v| v.trim_matches('"').to_string())
        };
        if let (Some(scheme), Some(ns)) = (field("scheme"), field("signing_ns")) {
            by_scheme
                .entry(scheme)
                .or_default()
                .push(ns.parse().unwrap());
        }
    }
    println!("\n## Signing one request inside the sandbox\n");
    println!("| scheme (plugin) | requests | p50 | p99 | mean |");
    println!("|---|---:|---:|---:|---:|");
    for (scheme, mut times) in by_scheme {
        times.sort_unstable();
        let at = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0;
        let mean = times.iter().sum::<u64>() as f64 / times.len() as f64 / 1000.0;
        println!(
            "| {scheme} | {} | {:.1} µs | {:.1} µs | {mean:.1} µs |",
            times.len(),
            at(0.5),
            at(0.99)
        );
    }
}

/// The tests' inventory API (`plugins/testing/inventory`), in memory: machines made run
/// at once.
async fn inventory_api() -> String {
    use axum::extract::{Path, State};
    use axum::routing::get;
    type Machines = std::sync::Arc<std::sync::Mutex<Vec<Value>>>;
    let machines: Machines = Default::default();
    async fn list(State(m): State<Machines>) -> axum::Json<Value> {
        axum::Json(Value::Array(m.lock().unwrap().clone()))
    }
    async fn create(
        State(m): State<Machines>,
        axum::Json(mut body): axum::Json<Value>,
    ) -> axum::Json<Value> {
        let mut all = m.lock().unwrap();
        let i = all.len();
        body["id"] = json!(format!("i-{i:08}"));
        body["state"] = json!("running");
        body["ip"] = json!(format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255));
        all.push(body.clone());
        axum::Json(body)
    }
    async fn one(
        State(m): State<Machines>,
        Path(id): Path<String>,
    ) -> Result<axum::Json<Value>, axum::http::StatusCode> {
        let all = m.lock().unwrap();
        let i: usize = id
            .strip_prefix("i-")
            .and_then(|n| n.parse().ok())
            .ok_or(axum::http::StatusCode::NOT_FOUND)?;
        all.get(i)
            .cloned()
            .map(axum::Json)
            .ok_or(axum::http::StatusCode::NOT_FOUND)
    }
    let app = axum::Router::new()
        .route("/inv/machines", get(list).post(create))
        .route("/inv/machines/{id}", get(one))
        .with_state(machines);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// An HTTP/1.1 front for `upstream` that keeps its clients' connections open: each
/// request is forwarded as it came (method, path, query, headers — `Host` included, so a
/// SigV4 signature still matches), the answer returned without moto's
/// `Connection: close`.
async fn keep_alive_front(upstream: &str) -> String {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    #[derive(Clone)]
    struct Upstream {
        base: String,
        http: reqwest::Client,
    }
    async fn forward(
        axum::extract::State(up): axum::extract::State<Upstream>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> (StatusCode, HeaderMap, Bytes) {
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut request = up.http.request(method, format!("{}{path}", up.base));
        for (name, value) in &headers {
            if name != "connection" && name != "content-length" {
                request = request.header(name, value);
            }
        }
        let answer = request.body(body).send().await.expect("moto answers");
        let status = answer.status();
        let mut kept = HeaderMap::new();
        for (name, value) in answer.headers() {
            if name != "connection" && name != "content-length" && name != "transfer-encoding" {
                kept.insert(name.clone(), value.clone());
            }
        }
        let body = answer.bytes().await.expect("moto's body");
        (status, kept, body)
    }
    let app = axum::Router::new().fallback(forward).with_state(Upstream {
        base: upstream.trim_end_matches('/').to_owned(),
        http: reqwest::Client::new(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}
