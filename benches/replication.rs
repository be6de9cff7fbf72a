//! Replication figures: a set of 50 images (about 500 MB of distinct blobs, most of each
//! image's bytes in base layers shared with others) replicated by real release `berth`
//! processes on this machine:
//! - one link (primary → one replica): the reference time of a single link;
//! - star, primary → three replicas;
//! - tree, root → two regional → four sub-datacenter instances (seven processes).
//!
//! For each: wall time (from the run to the job's end), bytes sent per link, and the bytes
//! sent against the minimum (each distinct blob once per link), from the job's own task
//! records. Twice: with every link as fast as this machine allows (so all links share its
//! two cores and its disk, and the processes, not the links, are the limit), then with
//! each link held to 200 Mbit/s by a proxy in front of its receiver, as between
//! datacenters, where the links are the limit. Run: `cargo bench --bench replication`
//! (`BENCH_LINK_MBPS` sets the link rate; `BENCH_TREE_CAP` the tree's transfers per link).

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use support::{ADMIN_PASSWORD, Server, data, sha256, start_berth};

const IMAGES: usize = 50;
const BASES: usize = 5;
const BASE_BYTES: usize = 40_000_000;
const OWN_BYTES: usize = 6_000_000;
/// The bandwidth of each link in the second half, unless `BENCH_LINK_MBPS` says another.
const LINK_MBPS: f64 = 200.0;

/// The image set: blobs by digest, and per image its config and layers.
struct Set {
    blobs: BTreeMap<String, Bytes>,
    images: Vec<(String, Vec<u8>)>,
}

fn image_set() -> Set {
    let bases: Vec<Bytes> = (0..BASES)
        .map(|i| data(BASE_BYTES, 1000 + i as u64))
        .collect();
    let mut blobs = BTreeMap::new();
    let mut images = Vec::new();
    for i in 0..IMAGES {
        let config = Bytes::from(format!(
            "{{\"architecture\":\"amd64\",\"os\":\"linux\",\"image\":{i}}}"
        ));
        let own = data(OWN_BYTES, 5000 + i as u64);
        let base = bases[i % BASES].clone();
        let layers: Vec<Value> = [&base, &own]
            .iter()
            .map(|l| json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256(l), "size": l.len()}))
            .collect();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
            "layers": layers,
        }))
        .unwrap();
        for blob in [config, base, own] {
            blobs.insert(sha256(&blob), blob);
        }
        images.push((format!("v{i}"), manifest));
    }
    Set { blobs, images }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn push_set(server: &Server, set: &Set) {
    let http = http();
    let auth = server.auth.clone().unwrap();
    futures::stream::iter(set.blobs.iter())
        .for_each_concurrent(4, |(digest, blob)| {
            let (http, auth, base) = (http.clone(), auth.clone(), server.base.clone());
            async move {
                let r = http
                    .post(format!(
                        "{base}/v2/bench/app/blobs/uploads/?digest={digest}"
                    ))
                    .header("authorization", auth)
                    .body(blob.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
            }
        })
        .await;
    for (tag, manifest) in &set.images {
        let r = http
            .put(format!("{}/v2/bench/app/manifests/{tag}", server.base))
            .header("authorization", &auth)
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
}

async fn api(server: &Server, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut request = http()
        .request(method.clone(), format!("{}{path}", server.base))
        .basic_auth("admin", Some(ADMIN_PASSWORD));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let r = request.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(status.is_success(), "{method} {path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

async fn create_project(server: &Server) {
    api(
        server,
        reqwest::Method::POST,
        "/api/v1/projects",
        Some(json!({"name": "bench"})),
    )
    .await;
}

/// A TCP proxy in front of `target` that carries at most `bytes_per_sec` towards it, over
/// all its connections together, like one WAN link. Answers come back unhindered.
async fn link(target: String, bytes_per_sec: f64) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let budget = std::sync::Arc::new(std::sync::Mutex::new((Instant::now(), 0u64)));
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let (target, budget) = (target.clone(), budget.clone());
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let upstream = async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match client_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let due = {
                            let mut b = budget.lock().unwrap();
                            // An idle link does not save up: the budget starts again now.
                            let now = Instant::now();
                            let earliest =
                                b.0 + Duration::from_secs_f64(b.1 as f64 / bytes_per_sec);
                            if earliest < now {
                                *b = (now, 0);
                            }
                            b.1 += n as u64;
                            b.0 + Duration::from_secs_f64(b.1 as f64 / bytes_per_sec)
                        };
                        tokio::time::sleep_until(due.into()).await;
                        if server_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = server_write.shutdown().await;
                };
                let downstream = async move {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                    let _ = client_write.shutdown().await;
                };
                tokio::join!(upstream, downstream);
            });
        }
    });
    format!("http://{addr}")
}

/// What one scenario measured.
struct Outcome {
    wall: Duration,
    per_link: BTreeMap<(String, String), u64>,
    /// Per link, seconds from the job's start to its first transfer's start and to its
    /// last transfer's end.
    windows: BTreeMap<(String, String), (f64, f64)>,
}

/// Replicates the set from `primary` over `topology` with `strategy`; the other servers
/// are named by `names`, and reached through a link of `link_mbps` when given.
async fn replicate(
    primary: &Server,
    others: &[(&str, &Server)],
    strategy: &str,
    topology: Option<Value>,
    link_mbps: Option<f64>,
) -> Outcome {
    for (name, server) in others {
        create_project(server).await;
        let url = match link_mbps {
            Some(mbps) => {
                link(
                    server.base.trim_start_matches("http://").to_string(),
                    mbps * 1e6 / 8.0,
                )
                .await
            }
            None => server.base.clone(),
        };
        api(
            primary,
            reqwest::Method::POST,
            "/api/v1/replication/endpoints",
            Some(json!({"name": name, "kind": "berth", "url": url,
                         "username": "admin", "password": ADMIN_PASSWORD})),
        )
        .await;
    }
    let endpoints: Vec<&str> = others.iter().map(|(n, _)| *n).collect();
    let mut policy = json!({"name": "bench", "endpoints": endpoints, "strategy": strategy,
                            "concurrency": 32});
    if let Some(t) = topology {
        policy["topology"] = t;
    }
    // `BENCH_TREE_CAP`: the tree strategy's transfers per link, instead of its default.
    if strategy == "tree"
        && let Ok(cap) = std::env::var("BENCH_TREE_CAP")
    {
        api(
            primary,
            reqwest::Method::PATCH,
            "/api/v1/plugins/tree",
            Some(json!({"config": {"max-parallel-per-link": cap}})),
        )
        .await;
    }
    api(
        primary,
        reqwest::Method::POST,
        "/api/v1/replication/policies",
        Some(policy),
    )
    .await;
    let started = Instant::now();
    let job = api(
        primary,
        reqwest::Method::POST,
        "/api/v1/replication/policies/bench/run",
        None,
    )
    .await;
    let id = job["id"].as_u64().unwrap();
    let done = loop {
        let j = api(
            primary,
            reqwest::Method::GET,
            &format!("/api/v1/replication/jobs/{id}"),
            None,
        )
        .await;
        if matches!(
            j["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            break j;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let wall = started.elapsed();
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let mut per_link = BTreeMap::new();
    let mut windows: BTreeMap<(String, String), (f64, f64)> = BTreeMap::new();
    let origin = done["started_at"].as_u64().unwrap();
    for task in done["task_list"].as_array().unwrap() {
        let link = (
            task["source"].as_str().unwrap().to_string(),
            task["target"].as_str().unwrap().to_string(),
        );
        *per_link.entry(link.clone()).or_default() += task["progress"]["bytes"].as_u64().unwrap();
        let secs =
            |key: &str| task[key].as_u64().unwrap_or(origin).saturating_sub(origin) as f64 / 1e3;
        let window = windows.entry(link).or_insert((f64::MAX, 0.0));
        window.0 = window.0.min(secs("started_at"));
        window.1 = window.1.max(secs("finished_at"));
    }
    Outcome {
        wall,
        per_link,
        windows,
    }
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let set = image_set();
    let minimum: u64 = set.blobs.values().map(|b| b.len() as u64).sum();
    let logical: u64 = set
        .images
        .iter()
        .map(|(_, m)| {
            let m: Value = serde_json::from_slice(m).unwrap();
            m["layers"]
                .as_array()
                .unwrap()
                .iter()
                .chain(std::iter::once(&m["config"]))
                .map(|d| d["size"].as_u64().unwrap())
                .sum::<u64>()
        })
        .sum();

    let scenario = |name: &str,
                    count: usize,
                    strategy: &str,
                    topology: Option<Value>,
                    names: &[&str],
                    link_mbps: Option<f64>| {
        let primary = start_berth();
        let others: Vec<Server> = (0..count).map(|_| start_berth()).collect();
        runtime.block_on(async {
            create_project(&primary).await;
            push_set(&primary, &set).await;
            let named: Vec<(&str, &Server)> = names.iter().copied().zip(others.iter()).collect();
            let outcome = replicate(&primary, &named, strategy, topology, link_mbps).await;
            eprintln!("{name}: {:.1} s", outcome.wall.as_secs_f64());
            outcome
        })
    };

    let tree_names = ["a", "b", "a1", "a2", "b1", "b2"];
    let mut datacenters = vec![json!({"id": "root"})];
    let mut instances = vec![json!({"id": "root", "datacenter": "root"})];
    for name in tree_names {
        let parent = if name.len() == 1 { "root" } else { &name[..1] };
        datacenters.push(json!({"id": name, "parent": parent}));
        instances.push(json!({"id": name, "datacenter": name, "endpoint": name}));
    }
    let tree_topology = json!({"datacenters": datacenters, "instances": instances});
    let mut runs = Vec::new();
    let link_mbps_set = std::env::var("BENCH_LINK_MBPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(LINK_MBPS);
    for link_mbps in [None, Some(link_mbps_set)] {
        let single = scenario("one link", 1, "star", None, &["r1"], link_mbps);
        let star = scenario(
            "star 1 → 3",
            3,
            "star",
            None,
            &["r1", "r2", "r3"],
            link_mbps,
        );
        let tree = scenario(
            "tree 1 → 2 → 4",
            6,
            "tree",
            Some(tree_topology.clone()),
            &tree_names,
            link_mbps,
        );
        runs.push((link_mbps, single, star, tree));
    }

    let mb = |b: u64| b as f64 / 1e6;
    println!();
    println!(
        "{IMAGES} images, {:.0} MB of distinct blobs ({:.0} MB if every image's layers were counted), on this {}-core machine",
        mb(minimum),
        mb(logical),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    for (link_mbps, single, star, tree) in &runs {
        println!();
        match link_mbps {
            None => println!("Links as fast as this machine allows (all processes share it):"),
            Some(m) => println!("Each link held to {m:.0} Mbit/s, as between datacenters:"),
        }
        println!();
        println!("| scenario | wall time | vs one link | links | bytes sent | bytes / minimum |");
        println!("|---|---:|---:|---:|---:|---:|");
        for (name, o) in [
            ("one link (primary → 1)", single),
            ("star (primary → 3)", star),
            ("tree (root → 2 → 4)", tree),
        ] {
            let sent: u64 = o.per_link.values().sum();
            let links = o.per_link.len() as u64;
            println!(
                "| {name} | {:.1} s | {:.2}x | {links} | {:.0} MB | {:.3} |",
                o.wall.as_secs_f64(),
                o.wall.as_secs_f64() / single.wall.as_secs_f64(),
                mb(sent),
                sent as f64 / (minimum * links) as f64
            );
        }
    }
    let (_, _, star, tree) = &runs[1];
    println!();
    println!("| link | star: MB sent | tree: MB sent | tree: busy from – to (s) |");
    println!("|---|---:|---:|---:|");
    let mut all: Vec<&(String, String)> =
        star.per_link.keys().chain(tree.per_link.keys()).collect();
    all.sort();
    all.dedup();
    for link in all {
        let cell = |o: &Outcome| {
            o.per_link
                .get(link)
                .map(|b| format!("{:.0}", mb(*b)))
                .unwrap_or_else(|| "-".into())
        };
        let window = tree
            .windows
            .get(link)
            .map(|(a, b)| format!("{a:.1} – {b:.1}"))
            .unwrap_or_else(|| "-".into());
        println!(
            "| {} → {} | {} | {} | {window} |",
            link.0,
            link.1,
            cell(star),
            cell(tree)
        );
    }
}
