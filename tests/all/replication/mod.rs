//! Replication end to end: real berth processes and Debian's docker-registry on loopback,
//! endpoints and policies made through the API and the CLI, content pushed with HTTP
//! clients and checked byte for byte on the other side.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

mod commands;
mod failures;
mod pairs;
mod star;
mod tree;

const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Fast retries, so failure tests do not wait a minute.
pub(crate) const QUICK_RETRIES: &[(&str, &str)] = &[
    ("BERTH_REPLICATION__RETRY_BASE_MS", "50"),
    ("BERTH_REPLICATION__RETRY_MAX_MS", "200"),
    ("BERTH_REPLICATION__MAX_ATTEMPTS", "3"),
];

pub(crate) async fn api(
    berth: &Berth,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let mut request = client().request(method.clone(), format!("{}{path}", berth.url));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("api request");
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{method} {path}: {status}: {text}");
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    }
}

/// `GET /metrics` of `berth`, as the admin.
pub(crate) async fn metrics(berth: &Berth) -> String {
    client()
        .get(format!("{}/metrics", berth.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Registers `target` (another berth, as admin) as endpoint `name` on `berth`.
pub(crate) async fn berth_endpoint(berth: &Berth, name: &str, target_url: &str) {
    api(
        berth,
        reqwest::Method::POST,
        "/api/v1/replication/endpoints",
        Some(json!({"name": name, "kind": "berth", "url": target_url,
                     "username": "admin", "password": ADMIN_PASSWORD})),
    )
    .await;
}

pub(crate) async fn create_policy(berth: &Berth, body: Value) -> Value {
    api(
        berth,
        reqwest::Method::POST,
        "/api/v1/replication/policies",
        Some(body),
    )
    .await
}

pub(crate) async fn run_policy(berth: &Berth, policy: &str) -> u64 {
    let job = api(
        berth,
        reqwest::Method::POST,
        &format!("/api/v1/replication/policies/{policy}/run"),
        None,
    )
    .await;
    job["id"].as_u64().unwrap()
}

pub(crate) async fn job(berth: &Berth, id: u64) -> Value {
    api(
        berth,
        reqwest::Method::GET,
        &format!("/api/v1/replication/jobs/{id}"),
        None,
    )
    .await
}

/// Runs `policy` once and waits for its job to end.
pub(crate) async fn run_policy_and_wait(berth: &Berth, policy: &str) -> Value {
    let id = run_policy(berth, policy).await;
    finished(berth, id).await
}

/// Waits for a job to end and returns it.
pub(crate) async fn finished(berth: &Berth, id: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let j = job(berth, id).await;
        if matches!(
            j["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            return j;
        }
        assert!(Instant::now() < deadline, "job {id} did not end: {j:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `check` holds.
pub(crate) async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(90);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `repo:reference` resolves to `digest` on the registry at `url` (with
/// `None`: until it resolves to nothing).
pub(crate) async fn resolves_to(url: &str, repo: &str, reference: &str, digest: Option<&str>) {
    let http = client();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let now = resolve(&http, url, repo, reference).await;
        if now.as_deref() == digest {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url}: {repo}:{reference} is {now:?}, not {digest:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every job of `berth` (the newest 500), newest first.
pub(crate) async fn all_jobs(berth: &Berth) -> Vec<Value> {
    let jobs = api(
        berth,
        reqwest::Method::GET,
        "/api/v1/replication/jobs?limit=500",
        None,
    )
    .await;
    jobs.as_array().unwrap().clone()
}

/// The digest `repo:reference` resolves to on a registry, if any.
pub(crate) async fn resolve(
    http: &reqwest::Client,
    base: &str,
    repo: &str,
    reference: &str,
) -> Option<String> {
    let r = http
        .head(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("accept", MANIFEST_TYPES)
        .send()
        .await
        .unwrap();
    (r.status() == 200).then(|| {
        r.headers()["docker-content-digest"]
            .to_str()
            .unwrap()
            .to_string()
    })
}

async fn manifest_bytes(
    http: &reqwest::Client,
    base: &str,
    repo: &str,
    reference: &str,
) -> Vec<u8> {
    let r = http
        .get(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("accept", MANIFEST_TYPES)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{base} {repo}:{reference}");
    r.bytes().await.unwrap().to_vec()
}

async fn blob_bytes(http: &reqwest::Client, base: &str, repo: &str, digest: &str) -> Vec<u8> {
    let r = http
        .get(format!("{base}/v2/{repo}/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{base} {repo}@{digest}");
    r.bytes().await.unwrap().to_vec()
}

/// An image whose layers are `shared` base layers plus one of its own: returns its
/// manifest digest and every blob digest (config first).
async fn push_layered(
    http: &reqwest::Client,
    base: &str,
    repo: &str,
    tag: &str,
    shared: &[Vec<u8>],
    seed: u64,
) -> (String, Vec<String>) {
    let config =
        format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":{seed}}}").into_bytes();
    let own = bytes(seed, 20_000 + seed as usize % 997);
    let mut digests = vec![push_blob(http, base, repo, &config).await];
    let mut layers: Vec<&[u8]> = shared.iter().map(Vec::as_slice).collect();
    layers.push(&own);
    for layer in &layers {
        digests.push(push_blob(http, base, repo, layer).await);
    }
    let manifest = image_manifest(&config, &layers);
    put_manifest(
        http,
        base,
        repo,
        tag,
        "application/vnd.oci.image.manifest.v1+json",
        &manifest,
    )
    .await;
    (sha256(&manifest), digests)
}

/// Two berths, each with an endpoint for the other and a `pair` policy (dual-primary
/// strategy, following changes, deletions carried) in `delivery` mode.
async fn pair(delivery: &str, env_a: &[(&str, &str)], env_b: &[(&str, &str)]) -> (Berth, Berth) {
    pair_with(delivery, false, env_a, env_b).await
}

pub(crate) async fn pair_with(
    delivery: &str,
    metadata: bool,
    env_a: &[(&str, &str)],
    env_b: &[(&str, &str)],
) -> (Berth, Berth) {
    let a = Berth::start_configured(&[], env_a);
    let b = Berth::start_configured(&[], env_b);
    for (here, there, name) in [(&a, &b, "peer-b"), (&b, &a, "peer-a")] {
        berth_endpoint(here, name, &there.url).await;
        create_policy(
            here,
            json!({"name": "pair", "endpoints": [name], "strategy": "dual-primary",
                   "on_change": true, "replicate_deletions": true, "metadata": metadata,
                   "delivery": delivery, "degrade_after_secs": 2}),
        )
        .await;
    }
    // Each side learns the other's instance name, which is what replicated content
    // carries as its origin.
    for (here, name) in [(&a, "peer-b"), (&b, "peer-a")] {
        let check = api(
            here,
            reqwest::Method::POST,
            &format!("/api/v1/replication/endpoints/{name}/check"),
            None,
        )
        .await;
        assert_eq!(check["healthy"], true, "{check}");
    }
    (a, b)
}

/// The tag → digest map of a repository, through the admin API.
async fn tag_map(berth: &Berth, repo: &str) -> std::collections::BTreeMap<String, String> {
    let encoded = repo.replace('/', "%2F");
    let r = client()
        .get(format!("{}/api/v1/repositories/{encoded}/tags", berth.url))
        .send()
        .await
        .unwrap();
    if r.status() == 404 {
        return Default::default();
    }
    let tags: Value = r.json().await.unwrap();
    tags.as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Whether `berth` has no replication work left.
pub(crate) async fn idle(berth: &Berth) -> bool {
    let status = api(
        berth,
        reqwest::Method::GET,
        "/api/v1/replication/status",
        None,
    )
    .await;
    status["unread_changes"] == 0
        && status["policies"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["unfinished_jobs"] == 0)
}

/// A push that may fail (the server may be killed under it): the manifest digest when the
/// registry acknowledged the manifest, `None` otherwise.
async fn try_push(
    http: &reqwest::Client,
    base: &str,
    repo: &str,
    tag: &str,
    seed: u64,
) -> Option<String> {
    let config =
        format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":{seed}}}").into_bytes();
    let layer = bytes(seed, 8192 + seed as usize % 1000);
    for blob in [&config, &layer] {
        let r = http
            .post(format!(
                "{base}/v2/{repo}/blobs/uploads/?digest={}",
                sha256(blob)
            ))
            .body(blob.clone())
            .send()
            .await
            .ok()?;
        if r.status() != 201 {
            return None;
        }
    }
    let manifest = image_manifest(&config, &[&layer]);
    let r = http
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await
        .ok()?;
    (r.status() == 201).then(|| sha256(&manifest))
}

/// Policy `tree` on `root`: root → a → a1 over endpoints `a` and `a1`.
async fn chain_tree_policy(root: &Berth) {
    create_policy(
        root,
        json!({"name": "tree", "strategy": "tree", "endpoints": ["a", "a1"],
               "topology": {
                   "datacenters": [{"id": "root"}, {"id": "a", "parent": "root"},
                                   {"id": "a1", "parent": "a"}],
                   "instances": [{"id": "root", "datacenter": "root"},
                                 {"id": "a", "datacenter": "a", "endpoint": "a"},
                                 {"id": "a1", "datacenter": "a1", "endpoint": "a1"}]}}),
    )
    .await;
}

/// root → a → a1 with root's link to a held after 2 MB of an 8 MB layer: returns the
/// three berths, the gate, the layer and the job, once a1 is seen receiving that layer
/// although a has not got all of it (a tree hop forwards bytes as they arrive).
async fn tree_with_a_half_arrived_layer() -> (Berth, Berth, Berth, GatedProxy, Vec<u8>, u64) {
    let root = Berth::start_configured(&[], QUICK_RETRIES);
    let a = Berth::start();
    let a1 = Berth::start();
    let gate = GatedProxy::start(&a.addr, 2 << 20).await;
    berth_endpoint(&root, "a", &format!("http://{}", gate.addr)).await;
    berth_endpoint(&root, "a1", &a1.url).await;
    chain_tree_policy(&root).await;
    let http = client();
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let layer = bytes(77, 8 << 20);
    push_blob(&http, &root.url, "team/app", config).await;
    push_blob(&http, &root.url, "team/app", &layer).await;
    put_manifest(
        &http,
        &root.url,
        "team/app",
        "v1",
        "application/vnd.oci.image.manifest.v1+json",
        &image_manifest(config, &[&layer]),
    )
    .await;
    let job = run_policy(&root, "tree").await;
    let staging = a1.data_dir.join("uploads");
    eventually("a1 receives the layer a is still receiving", || {
        let staged = largest_file_under(&staging);
        async move { staged >= 1 << 20 }
    })
    .await;
    let blob = format!("team/app/blobs/{}", sha256(&layer));
    for (who, berth) in [("a", &a), ("a1", &a1)] {
        let r = http.head(berth.v2(&blob)).send().await.unwrap();
        assert_eq!(
            r.status(),
            404,
            "{who} has the layer before all of it arrived"
        );
    }
    assert!(
        largest_file_under(&staging) < layer.len() as u64,
        "a1 got the whole layer before a had it"
    );
    (root, a, a1, gate, layer, job)
}
