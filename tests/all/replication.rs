//! Replication end to end: real berth processes and Debian's docker-registry on loopback,
//! endpoints and policies made through the API and the CLI, content pushed with HTTP
//! clients and checked byte for byte on the other side.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

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

async fn run_policy(berth: &Berth, policy: &str) -> u64 {
    let job = api(
        berth,
        reqwest::Method::POST,
        &format!("/api/v1/replication/policies/{policy}/run"),
        None,
    )
    .await;
    job["id"].as_u64().unwrap()
}

async fn job(berth: &Berth, id: u64) -> Value {
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
async fn finished(berth: &Berth, id: u64) -> Value {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn star_one_primary_to_three_replicas_converges_and_sends_each_blob_once_per_link() {
    let primary = Berth::start();
    let replicas = [Berth::start(), Berth::start(), Berth::start()];
    for (i, r) in replicas.iter().enumerate() {
        berth_endpoint(&primary, &format!("r{i}"), &r.url).await;
    }
    let health = api(
        &primary,
        reqwest::Method::POST,
        "/api/v1/replication/endpoints/r0/check",
        None,
    )
    .await;
    assert_eq!(health["healthy"], true, "{health}");
    create_policy(
        &primary,
        json!({"name": "fan-out", "endpoints": ["r0", "r1", "r2"], "on_change": true}),
    )
    .await;

    // Five images over two shared base layers, pushed to two repositories.
    let http = client();
    let base_layers = vec![bytes(1000, 300_000), bytes(1001, 200_000)];
    let mut images = Vec::new();
    let mut distinct = std::collections::BTreeSet::new();
    for i in 0..5u64 {
        let repo = if i % 2 == 0 {
            "team/app"
        } else {
            "team/tools/builder"
        };
        let tag = format!("v{i}");
        let (digest, blobs) = push_layered(&http, &primary.url, repo, &tag, &base_layers, i).await;
        images.push((repo, tag, digest));
        distinct.extend(blobs);
    }

    for replica in &replicas {
        for (repo, tag, digest) in &images {
            resolves_to(&replica.url, repo, tag, Some(digest)).await;
        }
    }
    // Byte for byte: the manifests (so the digests) and every blob.
    for replica in &replicas {
        for (repo, tag, _) in &images {
            assert_eq!(
                manifest_bytes(&http, &replica.url, repo, tag).await,
                manifest_bytes(&http, &primary.url, repo, tag).await
            );
        }
    }
    let (_, blobs) = push_layered(&http, &primary.url, "team/app", "probe", &base_layers, 0).await;
    for d in &blobs {
        assert_eq!(
            blob_bytes(&http, &replicas[2].url, "team/app", d).await,
            blob_bytes(&http, &primary.url, "team/app", d).await
        );
    }

    // Every job succeeded, and over all of them each distinct blob crossed each link once:
    // blobs shared between images and repositories were skipped or mounted, not resent.
    eventually("the change jobs are over", || async {
        all_jobs(&primary)
            .await
            .iter()
            .all(|j| j["status"] == "succeeded")
    })
    .await;
    let jobs = all_jobs(&primary).await;
    let sent: u64 = jobs
        .iter()
        .map(|j| j["progress"]["blobs_copied"].as_u64().unwrap())
        .sum();
    // The probe image added one config and one layer of its own (seed 0 equals v0's, so
    // nothing new but its tag).
    assert_eq!(sent, distinct.len() as u64 * 3, "{jobs:#?}");

    // A manual run now finds everything there and sends nothing.
    let id = run_policy(&primary, "fan-out").await;
    let done = finished(&primary, id).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["progress"]["blobs_copied"], 0, "{done:#}");
    assert_eq!(done["progress"]["bytes"], 0, "{done:#}");
    assert_eq!(
        done["tasks"]["total"],
        6 * 3,
        "six tags to three replicas: {done:#}"
    );
    assert_eq!(done["plan"]["strategy"], "star");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_to_and_pull_from_docker_registry() {
    let berth = Berth::start();
    let registry = DockerRegistry::start();
    let http = client();
    let open = anonymous_client();
    api(
        &berth,
        reqwest::Method::POST,
        "/api/v1/replication/endpoints",
        Some(json!({"name": "dist", "kind": "distribution", "url": registry.url})),
    )
    .await;

    // Push: berth → docker-registry.
    let (digest, _) = push_image(&http, &berth.url, "team/app", "v1", 1).await;
    create_policy(&berth, json!({"name": "out", "endpoints": ["dist"]})).await;
    let done = finished(&berth, run_policy(&berth, "out").await).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(
        resolve(&open, &registry.url, "team/app", "v1")
            .await
            .as_deref(),
        Some(digest.as_str())
    );
    assert_eq!(
        manifest_bytes(&open, &registry.url, "team/app", "v1").await,
        manifest_bytes(&http, &berth.url, "team/app", "v1").await
    );

    // Pull: docker-registry → berth, into another namespace.
    let (other, _) = push_image(&open, &registry.url, "upstream/base", "1.0", 7).await;
    berth.create_project("mirror", false);
    create_policy(
        &berth,
        json!({"name": "in", "mode": "pull", "endpoints": ["dist"],
               "filters": {"repository": "upstream/**"}, "destination_namespace": "mirror"}),
    )
    .await;
    let done = finished(&berth, run_policy(&berth, "in").await).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(
        resolve(&http, &berth.url, "mirror/base", "1.0")
            .await
            .as_deref(),
        Some(other.as_str())
    );
    assert_eq!(
        done["tasks"]["total"], 1,
        "the filter keeps team/app out: {done:#}"
    );

    // What was pulled in is not pushed back to where it came from by the push policy
    // that follows changes.
    api(
        &berth,
        reqwest::Method::PATCH,
        "/api/v1/replication/policies/out",
        Some(json!({"on_change": true})),
    )
    .await;
    let again = finished(&berth, run_policy(&berth, "in").await).await;
    assert_eq!(again["status"], "succeeded");
    let jobs = api(
        &berth,
        reqwest::Method::GET,
        "/api/v1/replication/jobs?policy=out",
        None,
    )
    .await;
    assert_eq!(
        jobs.as_array().unwrap().len(),
        1,
        "only the manual run: {jobs:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_namespace_mapping_and_deletions_follow_changes() {
    let primary = Berth::start();
    let replica = Berth::start();
    replica.create_project("mirror", false);
    berth_endpoint(&primary, "replica", &replica.url).await;
    create_policy(
        &primary,
        json!({"name": "releases", "endpoints": ["replica"], "on_change": true,
               "replicate_deletions": true,
               "filters": {"project": "team", "repository": "team/app*", "tag": "v*"},
               "destination_namespace": "mirror"}),
    )
    .await;
    let http = client();
    let (v1, _) = push_image(&http, &primary.url, "team/app", "v1", 1).await;
    push_image(&http, &primary.url, "team/app", "latest", 2).await; // tag filtered out
    push_image(&http, &primary.url, "team/other", "v1", 3).await; // repository filtered out
    push_image(&http, &primary.url, "alpha/app", "v1", 4).await; // project filtered out
    let (v2, _) = push_image(&http, &primary.url, "team/app", "v2", 5).await;
    for (tag, digest) in [("v1", &v1), ("v2", &v2)] {
        resolves_to(&replica.url, "mirror/app", tag, Some(digest)).await;
    }
    // Let every job end, then check that nothing filtered out arrived.
    eventually("jobs are over", || async {
        all_jobs(&primary)
            .await
            .iter()
            .all(|j| j["status"] == "succeeded")
    })
    .await;
    assert_eq!(
        resolve(&http, &replica.url, "mirror/app", "latest").await,
        None
    );
    for repo in [
        "mirror/other",
        "team/app",
        "team/other",
        "alpha/app",
        "mirror/app",
    ] {
        if repo == "mirror/app" {
            continue;
        }
        assert_eq!(
            resolve(&http, &replica.url, repo, "v1").await,
            None,
            "{repo}"
        );
    }

    // A tag moved on the primary moves on the replica; a deleted tag is deleted there.
    let (moved, _) = push_image(&http, &primary.url, "team/app", "v1", 9).await;
    resolves_to(&replica.url, "mirror/app", "v1", Some(&moved)).await;
    let r = http
        .delete(format!("{}/v2/team/app/manifests/v2", primary.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    resolves_to(&replica.url, "mirror/app", "v2", None).await;
    // The manifest v2 named is still there by digest: only the tag was deleted.
    assert_eq!(
        resolve(&http, &replica.url, "mirror/app", &v2)
            .await
            .as_deref(),
        Some(v2.as_str())
    );
    // Deleting a manifest by digest deletes it there too.
    let r = http
        .delete(format!("{}/v2/team/app/manifests/{v2}", primary.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    resolves_to(&replica.url, "mirror/app", &v2, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_destination_is_retried_and_reported_while_the_others_carry_on() {
    let primary = Berth::start_configured(&[], QUICK_RETRIES);
    let healthy = Berth::start();
    let broken = Berth::start();
    let slow = Berth::start();
    let failing = FaultyProxy::start(&broken.addr, Fault::ServerError).await;
    let sluggish = FaultyProxy::start(&slow.addr, Fault::Slow(300)).await;
    berth_endpoint(&primary, "healthy", &healthy.url).await;
    berth_endpoint(&primary, "broken", &format!("http://{}", failing.addr)).await;
    berth_endpoint(&primary, "slow", &format!("http://{}", sluggish.addr)).await;
    let health = api(
        &primary,
        reqwest::Method::POST,
        "/api/v1/replication/endpoints/broken/check",
        None,
    )
    .await;
    assert_eq!(health["healthy"], false, "{health}");
    assert!(
        health["error"].as_str().unwrap().contains("500"),
        "{health}"
    );
    create_policy(
        &primary,
        json!({"name": "all", "endpoints": ["healthy", "broken", "slow"]}),
    )
    .await;
    let http = client();
    let mut images = Vec::new();
    for i in 0..3u64 {
        images.push(push_image(&http, &primary.url, "team/app", &format!("v{i}"), i).await);
    }
    let id = run_policy(&primary, "all").await;
    let done = finished(&primary, id).await;
    assert_eq!(done["status"], "failed", "{done:#}");
    assert_eq!(
        done["tasks"]["succeeded"], 6,
        "healthy and slow got everything: {done:#}"
    );
    assert_eq!(done["tasks"]["failed"], 3, "{done:#}");
    for task in done["task_list"].as_array().unwrap() {
        if task["target"] == "broken" {
            assert_eq!(task["attempts"], 3, "{task}");
            assert!(task["error"].as_str().unwrap().contains("500"), "{task}");
        } else {
            assert_eq!(task["status"], "succeeded", "{task}");
        }
    }
    for (i, (digest, _)) in images.iter().enumerate() {
        for url in [&healthy.url, &slow.url] {
            assert_eq!(
                resolve(&http, url, "team/app", &format!("v{i}"))
                    .await
                    .as_deref(),
                Some(digest.as_str())
            );
        }
    }

    // Dropped connections fail the same way; once the destination recovers, a retry of
    // the job delivers only what was missing.
    failing.set(Fault::Drop);
    let retried = api(
        &primary,
        reqwest::Method::POST,
        &format!("/api/v1/replication/jobs/{id}/retry"),
        None,
    )
    .await;
    let dropped = finished(&primary, retried["id"].as_u64().unwrap()).await;
    assert_eq!(dropped["status"], "failed", "{dropped:#}");
    assert_eq!(
        dropped["tasks"]["total"], 3,
        "only the failed tasks: {dropped:#}"
    );
    failing.set(Fault::None);
    let again = api(
        &primary,
        reqwest::Method::POST,
        &format!("/api/v1/replication/jobs/{}/retry", dropped["id"]),
        None,
    )
    .await;
    let recovered = finished(&primary, again["id"].as_u64().unwrap()).await;
    assert_eq!(recovered["status"], "succeeded", "{recovered:#}");
    for (i, (digest, _)) in images.iter().enumerate() {
        assert_eq!(
            resolve(&http, &broken.url, "team/app", &format!("v{i}"))
                .await
                .as_deref(),
            Some(digest.as_str())
        );
    }
    // The failed job keeps its outcome: a job's status is final once it ends.
    assert_eq!(job(&primary, id).await["status"], "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_resumes_after_the_primary_is_killed_mid_run() {
    let mut primary = Berth::start();
    let replica = Berth::start();
    // Slow enough that the kill lands mid-job.
    let proxy = FaultyProxy::start(&replica.addr, Fault::Slow(150)).await;
    berth_endpoint(&primary, "replica", &format!("http://{}", proxy.addr)).await;
    create_policy(
        &primary,
        json!({"name": "bulk", "endpoints": ["replica"], "concurrency": 2}),
    )
    .await;
    let http = client();
    let mut images = Vec::new();
    for i in 0..20u64 {
        images.push(push_image(&http, &primary.url, "team/app", &format!("t{i}"), i).await);
    }
    let id = run_policy(&primary, "bulk").await;
    eventually("a few tasks are done", || async {
        job(&primary, id).await["tasks"]["succeeded"]
            .as_u64()
            .unwrap()
            >= 3
    })
    .await;
    let before = job(&primary, id).await;
    primary.restart(); // kill -9, then start on the same data directory
    proxy.set(Fault::None);
    let done = finished(&primary, id).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["tasks"]["succeeded"], 20);
    // Tasks that had finished before the kill did not run again; at most the two in
    // flight (the policy's concurrency) ran twice.
    let finished_before: Vec<u64> = before["task_list"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] == "succeeded")
        .map(|t| t["index"].as_u64().unwrap())
        .collect();
    let tasks = done["task_list"].as_array().unwrap();
    for index in &finished_before {
        assert_eq!(
            tasks[*index as usize]["attempts"], 1,
            "{:#}",
            tasks[*index as usize]
        );
    }
    let rerun = tasks
        .iter()
        .filter(|t| t["attempts"].as_u64().unwrap() > 1)
        .count();
    assert!(rerun <= 2, "{rerun} tasks ran twice: {done:#}");
    for (i, (digest, _)) in images.iter().enumerate() {
        assert_eq!(
            resolve(&http, &replica.url, "team/app", &format!("t{i}"))
                .await
                .as_deref(),
            Some(digest.as_str())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_replication_requests_are_refused_with_the_reason_and_change_nothing() {
    let berth = Berth::start_configured(&[], QUICK_RETRIES);
    let url = |p: &str| format!("{}/api/v1/replication{p}", berth.url);
    let http = client();
    let cases: Vec<(reqwest::Method, &str, Value, u16, &str)> = vec![
        (
            reqwest::Method::POST,
            "/endpoints",
            json!({"name": "x", "url": "ftp://x"}),
            400,
            "scheme",
        ),
        (
            reqwest::Method::POST,
            "/endpoints",
            json!({"name": "Bad Name", "url": "http://x"}),
            400,
            "invalid endpoint name",
        ),
        (
            reqwest::Method::POST,
            "/endpoints",
            json!({"name": "x", "url": "http://x", "color": 1}),
            400,
            "unknown field",
        ),
        (
            reqwest::Method::POST,
            "/endpoints",
            json!({"name": "x", "url": "http://x", "ca_cert": "nope"}),
            400,
            "PEM",
        ),
        (
            reqwest::Method::POST,
            "/policies",
            json!({"name": "p", "endpoints": ["ghost"]}),
            400,
            "does not exist",
        ),
        (
            reqwest::Method::POST,
            "/policies",
            json!({"name": "p", "endpoints": []}),
            400,
            "at least one endpoint",
        ),
        (
            reqwest::Method::GET,
            "/jobs/abc",
            Value::Null,
            400,
            "numbers",
        ),
        (
            reqwest::Method::GET,
            "/jobs/99",
            Value::Null,
            404,
            "no job 99",
        ),
        (
            reqwest::Method::POST,
            "/policies/ghost/run",
            Value::Null,
            404,
            "no policy",
        ),
    ];
    for (method, path, body, status, says) in cases {
        let mut request = http.request(method.clone(), url(path));
        if !body.is_null() {
            request = request.json(&body);
        }
        let r = request.send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{method} {path}");
        let text = r.text().await.unwrap();
        assert!(text.contains(says), "{method} {path}: {text}");
    }
    // A body that is not JSON, and a caller who is not an admin.
    let r = http
        .post(url("/endpoints"))
        .body("name=x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = anonymous_client()
        .get(url("/endpoints"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    api(
        &berth,
        reqwest::Method::POST,
        "/api/v1/users",
        Some(json!({"username": "dev", "password": "a developer password"})),
    )
    .await;
    let r = client_as("dev", "a developer password")
        .get(url("/policies"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // A valid endpoint and policy; then refusals that must leave them as they were.
    api(
        &berth,
        reqwest::Method::POST,
        "/api/v1/replication/endpoints",
        Some(json!({"name": "peer", "url": "http://127.0.0.1:9", "username": "u", "password": "secret pw"})),
    )
    .await;
    create_policy(
        &berth,
        json!({"name": "p", "endpoints": ["peer"], "schedule": "0 0 3 * * *"}),
    )
    .await;
    let r = http
        .patch(url("/policies/p"))
        .json(&json!({"schedule": "every night"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(url("/endpoints"))
        .json(&json!({"name": "peer", "url": "http://127.0.0.1:10"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let r = http.delete(url("/endpoints/peer")).send().await.unwrap();
    assert_eq!(r.status(), 409, "a policy uses it");
    let policy = api(
        &berth,
        reqwest::Method::GET,
        "/api/v1/replication/policies/p",
        None,
    )
    .await;
    assert_eq!(policy["schedule"], "0 0 3 * * *");
    let endpoint = api(
        &berth,
        reqwest::Method::GET,
        "/api/v1/replication/endpoints/peer",
        None,
    )
    .await;
    assert_eq!(endpoint["url"], "http://127.0.0.1:9");
    assert_eq!(endpoint["has_password"], true);
    assert!(endpoint.get("password").is_none() && !endpoint.to_string().contains("secret pw"));

    // With nothing to replicate a run succeeds at once; with something, a run against an
    // endpoint that does not answer fails after its retries, and says why.
    let done = finished(&berth, run_policy(&berth, "p").await).await;
    assert_eq!(
        done["status"], "succeeded",
        "nothing to replicate: {done:#}"
    );
    assert_eq!(done["tasks"]["total"], 0);
    push_image(&http, &berth.url, "team/app", "v1", 1).await;
    let done = finished(&berth, run_policy(&berth, "p").await).await;
    assert_eq!(done["status"], "failed", "{done:#}");
    let task = &done["task_list"][0];
    assert_eq!(task["attempts"], 3, "{task}");
    assert!(task["error"].as_str().unwrap().contains("peer"), "{task}");
    // Cancelling a finished job is refused; retrying one that succeeded too.
    let r = http
        .post(url(&format!("/jobs/{}/cancel", done["id"])))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_datacenter_tree_one_two_four_carries_each_blob_once_per_link() {
    // root → {a, b}; a → {a1, a2}; b → {b1, b2}: seven instances, one per datacenter.
    let root = Berth::start();
    let names = ["a", "b", "a1", "a2", "b1", "b2"];
    let others: Vec<Berth> = names.iter().map(|_| Berth::start()).collect();
    let mut datacenters = vec![json!({"id": "root"})];
    let mut instances = vec![json!({"id": "root", "datacenter": "root"})];
    for (name, berth) in names.iter().zip(&others) {
        berth_endpoint(&root, name, &berth.url).await;
        let parent = if name.len() == 1 {
            "root".to_string()
        } else {
            name[..1].to_string()
        };
        datacenters.push(json!({"id": name, "parent": parent}));
        instances.push(json!({"id": name, "datacenter": name, "endpoint": name}));
    }
    create_policy(
        &root,
        json!({"name": "tree", "strategy": "tree", "endpoints": names,
               "topology": {"datacenters": datacenters, "instances": instances}}),
    )
    .await;
    let http = client();
    let base_layers = vec![bytes(2000, 400_000)];
    let mut images = Vec::new();
    let mut distinct = std::collections::BTreeSet::new();
    for i in 0..4u64 {
        let (digest, blobs) = push_layered(
            &http,
            &root.url,
            "team/app",
            &format!("v{i}"),
            &base_layers,
            i,
        )
        .await;
        images.push(digest);
        distinct.extend(blobs);
    }
    let done = finished(&root, run_policy(&root, "tree").await).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["plan"]["waves"], 2, "{done:#}");
    for berth in &others {
        for (i, digest) in images.iter().enumerate() {
            assert_eq!(
                resolve(&http, &berth.url, "team/app", &format!("v{i}"))
                    .await
                    .as_deref(),
                Some(digest.as_str()),
                "{}",
                berth.url
            );
        }
    }
    // Per link, the blobs sent: every tree edge carries each distinct blob once, and the
    // root sends only to its two children.
    let mut per_link: std::collections::BTreeMap<(String, String), u64> = Default::default();
    for task in done["task_list"].as_array().unwrap() {
        let link = (
            task["source"].as_str().unwrap().to_string(),
            task["target"].as_str().unwrap().to_string(),
        );
        *per_link.entry(link).or_default() += task["progress"]["blobs_copied"].as_u64().unwrap();
    }
    let expected: Vec<(&str, &str)> = vec![
        ("a", "a1"),
        ("a", "a2"),
        ("b", "b1"),
        ("b", "b2"),
        ("root", "a"),
        ("root", "b"),
    ];
    assert_eq!(
        per_link
            .keys()
            .map(|(s, t)| (s.as_str(), t.as_str()))
            .collect::<Vec<_>>(),
        expected
    );
    for (link, sent) in &per_link {
        assert_eq!(*sent, distinct.len() as u64, "{link:?}: {per_link:?}");
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_primary_async_pushes_and_tag_moves_on_both_sides_converge() {
    let (a, b) = pair(
        "async",
        &[("BERTH_REPLICATION__INSTANCE_NAME", "dc-a")],
        &[("BERTH_REPLICATION__INSTANCE_NAME", "dc-b")],
    )
    .await;
    let http = client();
    // Both sides at once: their own tags, and the same tags with different content.
    let (ua, ub) = (a.url.clone(), b.url.clone());
    let side = |url: String, offset: u64| {
        let http = http.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..12u64 {
                let own = format!("own-{offset}-{i}");
                acked.push((
                    own.clone(),
                    push_image(&http, &url, "team/app", &own, offset + i)
                        .await
                        .0,
                ));
                let shared = format!("shared-{}", i % 4);
                acked.push((
                    shared,
                    push_image(
                        &http,
                        &url,
                        "team/app",
                        &format!("shared-{}", i % 4),
                        offset + 100 + i,
                    )
                    .await
                    .0,
                ));
            }
            acked
        })
    };
    let (from_a, from_b) = (side(ua, 1000), side(ub, 2000));
    let acked: Vec<(String, String)> = from_a
        .await
        .unwrap()
        .into_iter()
        .chain(from_b.await.unwrap())
        .collect();
    // A deleted tag goes on both sides.
    let r = http
        .delete(format!("{}/v2/team/app/manifests/own-1000-3", a.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (ma, mb) = (tag_map(&a, "team/app").await, tag_map(&b, "team/app").await);
        if ma == mb && idle(&a).await && idle(&b).await && ma.len() == 12 * 2 - 1 + 4 {
            break;
        }
        if Instant::now() > deadline {
            let keys: std::collections::BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
            let differ: Vec<_> = keys
                .into_iter()
                .filter(|t| ma.get(*t) != mb.get(*t))
                .map(|t| (t.clone(), ma.get(t).cloned(), mb.get(t).cloned()))
                .collect();
            let mut report = format!(
                "not converged: A has {} tags, B {}; differing {differ:?}\n",
                ma.len(),
                mb.len()
            );
            for (tag, _, _) in &differ {
                for side in [&a, &b] {
                    let r = client()
                        .get(format!(
                            "{}/api/v1/repositories/team%2Fapp/tags/{tag}/history",
                            side.url
                        ))
                        .send()
                        .await
                        .unwrap()
                        .text()
                        .await
                        .unwrap();
                    report.push_str(&format!("history of {tag} on {}: {r}\n", side.url));
                }
            }
            for side in [&a, &b] {
                let status = api(
                    side,
                    reqwest::Method::GET,
                    "/api/v1/replication/status",
                    None,
                )
                .await;
                report.push_str(&format!("{}: {status}\n", side.url));
                for j in all_jobs(side).await {
                    if j["status"] != "succeeded" {
                        let detail = job(side, j["id"].as_u64().unwrap()).await;
                        report.push_str(&format!("{detail}\n"));
                    }
                }
            }
            panic!("{report}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let map = tag_map(&a, "team/app").await;
    assert!(!map.contains_key("own-1000-3"));
    assert!(map.contains_key("own-2000-3"));
    // Every acknowledged manifest is on both sides, by digest, with all its blobs.
    for (tag, digest) in &acked {
        for side in [&a, &b] {
            let bytes = manifest_bytes(&http, &side.url, "team/app", digest).await;
            assert_eq!(sha256(&bytes), *digest, "{tag} on {}", side.url);
            let manifest: Value = serde_json::from_slice(&bytes).unwrap();
            for blob in
                std::iter::once(&manifest["config"]).chain(manifest["layers"].as_array().unwrap())
            {
                let d = blob["digest"].as_str().unwrap();
                assert_eq!(
                    sha256(&blob_bytes(&http, &side.url, "team/app", d).await),
                    d
                );
            }
        }
    }
    // A shared tag moved on both sides: the loser of each race is in the history, on the
    // side where it lost or was replaced.
    let history = api(
        &a,
        reqwest::Method::GET,
        "/api/v1/repositories/team%2Fapp/tags/shared-0/history",
        None,
    )
    .await;
    assert!(
        !history["history"].as_array().unwrap().is_empty(),
        "{history:#}"
    );
    let clock = history["current"]["clock"].as_str().unwrap();
    assert!(
        clock.ends_with(".dc-a") || clock.ends_with(".dc-b"),
        "{clock}"
    );

    // Nothing echoes: content that arrived by replication is not sent back, so once idle
    // no new jobs appear.
    let before = (all_jobs(&a).await.len(), all_jobs(&b).await.len());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!((all_jobs(&a).await.len(), all_jobs(&b).await.len()), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_primary_sync_loses_no_acknowledged_push_when_a_is_killed_ten_times() {
    let (mut a, b) = pair("sync", QUICK_RETRIES, QUICK_RETRIES).await;
    let url = a.url.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let http = client();
            let mut acked = Vec::new();
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let tag = format!("w{i}");
                if let Some(digest) = try_push(&http, &url, "team/app", &tag, i).await {
                    acked.push((tag, digest));
                }
                i += 1;
            }
            acked
        })
    };
    for cycle in 0..10 {
        tokio::time::sleep(Duration::from_millis(300 + cycle * 37)).await;
        a.restart(); // kill -9, then start again on the same data directory and port
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = writer.await.unwrap();
    assert!(acked.len() >= 10, "the writer got through: {}", acked.len());
    // Sync: what A acknowledged was on B before A said so; no waiting here.
    let http = client();
    for (tag, digest) in &acked {
        assert_eq!(
            resolve(&http, &b.url, "team/app", tag).await.as_deref(),
            Some(digest.as_str()),
            "{tag} was acknowledged by A but is not on B"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_primary_sync_degrades_while_b_is_down_and_b_catches_up() {
    let (a, mut b) = pair("sync", QUICK_RETRIES, QUICK_RETRIES).await;
    let http = client();
    let (first, _) = push_image(&http, &a.url, "team/app", "before", 1).await;
    assert_eq!(
        resolve(&http, &b.url, "team/app", "before")
            .await
            .as_deref(),
        Some(first.as_str())
    );
    b.kill9();
    // A keeps accepting: the first push waits out degrade_after_secs, then A degrades.
    let mut acked = Vec::new();
    for i in 0..5u64 {
        let tag = format!("during-{i}");
        acked.push((
            tag.clone(),
            push_image(&http, &a.url, "team/app", &tag, 10 + i).await.0,
        ));
    }
    let status = api(&a, reqwest::Method::GET, "/api/v1/replication/status", None).await;
    let pair_status = &status["policies"][0];
    assert_eq!(pair_status["delivery"], "sync");
    assert_eq!(
        pair_status["degraded"][0]["endpoint"], "peer-b",
        "{status:#}"
    );
    assert!(
        pair_status["pending_tasks"].as_u64().unwrap()
            + pair_status["pending_changes"].as_u64().unwrap()
            > 0,
        "{status:#}"
    );
    let metrics = client()
        .get(format!("{}/metrics", a.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("berth_replication_degraded{policy=\"pair\",endpoint=\"peer-b\"} 1"),
        "{metrics}"
    );
    b.restart();
    for (tag, digest) in &acked {
        resolves_to(&b.url, "team/app", tag, Some(digest)).await;
    }
    eventually("A is no longer degraded", || async {
        let status = api(&a, reqwest::Method::GET, "/api/v1/replication/status", None).await;
        status["policies"][0]["degraded"]
            .as_array()
            .unwrap()
            .is_empty()
    })
    .await;
    // Sync again: a push is on B as soon as A acknowledges it.
    let (after, _) = push_image(&http, &a.url, "team/app", "after", 99).await;
    assert_eq!(
        resolve(&http, &b.url, "team/app", "after").await.as_deref(),
        Some(after.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_brings_its_children_referrers_follow_their_subject_schedules_fire_and_old_jobs_go()
 {
    let primary = Berth::start_configured(&[], &[("BERTH_REPLICATION__MAX_FINISHED_JOBS", "3")]);
    let replica = Berth::start();
    berth_endpoint(&primary, "replica", &replica.url).await;
    let http = client();
    // An index of two images, tagged; a signature whose subject is the index, untagged.
    let mut children = Vec::new();
    for seed in [1u64, 2] {
        let (digest, bytes) = push_image(
            &http,
            &primary.url,
            "team/multi",
            &format!("arch{seed}"),
            seed,
        )
        .await;
        children.push(
            json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                             "digest": digest, "size": bytes.len(),
                             "platform": {"architecture": format!("arch{seed}"), "os": "linux"}}),
        );
    }
    // Untag the children, so only the index (and its referrer) can bring them.
    for seed in [1u64, 2] {
        let r = http
            .delete(format!(
                "{}/v2/team/multi/manifests/arch{seed}",
                primary.url
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    let index = serde_json::to_vec(&json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": children}))
    .unwrap();
    put_manifest(
        &http,
        &primary.url,
        "team/multi",
        "all",
        "application/vnd.oci.image.index.v1+json",
        &index,
    )
    .await;
    let empty = b"{}".to_vec();
    push_blob(&http, &primary.url, "team/multi", &empty).await;
    let signature_payload = bytes(77, 256);
    push_blob(&http, &primary.url, "team/multi", &signature_payload).await;
    let signature = serde_json::to_vec(&json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(&empty), "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": sha256(&signature_payload), "size": 256}],
        "subject": {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": sha256(&index), "size": index.len()}})).unwrap();
    put_manifest(
        &http,
        &primary.url,
        "team/multi",
        &sha256(&signature),
        "application/vnd.oci.image.manifest.v1+json",
        &signature,
    )
    .await;

    // A policy that runs every second: the schedule is the only trigger.
    create_policy(
        &primary,
        json!({"name": "nightly", "endpoints": ["replica"], "schedule": "* * * * * *",
               "filters": {"repository": "team/multi"}}),
    )
    .await;
    eventually("the schedule fires and the job succeeds", || async {
        all_jobs(&primary)
            .await
            .iter()
            .any(|j| j["trigger"]["type"] == "schedule" && j["status"] == "succeeded")
    })
    .await;
    assert_eq!(
        resolve(&http, &replica.url, "team/multi", "all")
            .await
            .as_deref(),
        Some(sha256(&index).as_str())
    );
    for child in &children {
        let d = child["digest"].as_str().unwrap();
        assert_eq!(
            resolve(&http, &replica.url, "team/multi", d)
                .await
                .as_deref(),
            Some(d)
        );
    }
    let referrers: Value = http
        .get(format!(
            "{}/v2/team/multi/referrers/{}",
            replica.url,
            sha256(&index)
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        referrers["manifests"][0]["digest"],
        sha256(&signature),
        "{referrers}"
    );
    assert_eq!(
        manifest_bytes(&http, &replica.url, "team/multi", &sha256(&signature)).await,
        signature
    );

    // It keeps firing; at most three finished jobs are kept.
    eventually("old jobs are removed", || async {
        let ids: Vec<u64> = all_jobs(&primary)
            .await
            .iter()
            .map(|j| j["id"].as_u64().unwrap())
            .collect();
        ids.first().is_some_and(|newest| *newest >= 5) && ids.len() <= 4
    })
    .await;
    let r = client()
        .get(format!("{}/api/v1/replication/jobs/1", primary.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "the first job is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replication_commands_drive_endpoints_policies_runs_and_jobs() {
    let primary = Berth::start();
    let replica = Berth::start();
    let tmp = tempfile::tempdir().unwrap();
    let env = [
        ("BERTH_SERVER", primary.url.as_str()),
        ("BERTH_USERNAME", "admin"),
        ("BERTH_PASSWORD", ADMIN_PASSWORD),
    ];
    let run = |stdin: Option<&str>, args: &[&str]| {
        let mut all = vec!["replication"];
        all.extend_from_slice(args);
        crate::cli::berth_cli(tmp.path(), &env, stdin, &all)
    };
    let (ok, out, err) = run(
        Some(&format!("{ADMIN_PASSWORD}\n")),
        &[
            "endpoint",
            "create",
            "dc2",
            "--kind",
            "berth",
            "--url",
            &replica.url,
            "--username",
            "admin",
            "--password-stdin",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("dc2") && out.contains("true"), "{out}");
    assert!(
        !out.contains(ADMIN_PASSWORD),
        "the password is never printed: {out}"
    );
    let (ok, out, err) = run(None, &["endpoint", "check", "dc2"]);
    assert!(ok && out.contains("true"), "{out}{err}");
    let topology = tmp.path().join("topology.toml");
    std::fs::write(
        &topology,
        r#"
datacenters = [{ id = "main" }, { id = "east", parent = "main" }]
instances = [
  { id = "primary", datacenter = "main" },
  { id = "dc2", datacenter = "east", endpoint = "dc2" },
]
"#,
    )
    .unwrap();
    let (ok, out, err) = run(
        None,
        &[
            "policy",
            "create",
            "east",
            "--endpoint",
            "dc2",
            "--repository",
            "team/**",
            "--tag",
            "v*",
            "--strategy",
            "tree",
            "--topology",
            topology.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("east") && out.contains("tree"), "{out}");
    let (ok, _, err) = run(None, &["policy", "create", "bad", "--endpoint", "nowhere"]);
    assert!(
        !ok && err.contains("nowhere") && err.contains("400"),
        "{err}"
    );

    let http = client();
    let (digest, _) = push_image(&http, &primary.url, "team/app", "v1", 5).await;
    let (ok, out, err) = run(None, &["run", "east", "--wait"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("succeeded"), "{out}");
    assert_eq!(
        resolve(&http, &replica.url, "team/app", "v1")
            .await
            .as_deref(),
        Some(digest.as_str())
    );
    let (ok, out, err) = run(None, &["jobs", "--policy", "east"]);
    assert!(
        ok && out.contains("succeeded") && out.contains("1/1 done"),
        "{out}{err}"
    );
    let (ok, out, err) = run(None, &["job", "show", "1"]);
    assert!(
        ok && out.contains("copy team/app:v1 → team/app") && out.contains("dc2"),
        "{out}{err}"
    );
    let (ok, _, err) = run(None, &["job", "retry", "1"]);
    assert!(!ok && err.contains("409"), "{err}");
    let (ok, _, err) = run(None, &["job", "cancel", "1"]);
    assert!(!ok && err.contains("already succeeded"), "{err}");
    let (ok, out, err) = run(None, &["--output", "json", "status"]);
    assert!(ok, "{err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        status["policies"][0]["last_status"], "succeeded",
        "{status}"
    );
    let (ok, out, _) = run(None, &["policy", "disable", "east"]);
    assert!(ok && out.contains("false"), "{out}");
    let (ok, _, err) = run(None, &["run", "east"]);
    assert!(!ok && err.contains("disabled"), "{err}");
    let (ok, _, err) = run(None, &["endpoint", "delete", "dc2"]);
    assert!(!ok && err.contains("used by policies east"), "{err}");
    let (ok, _, err) = run(None, &["policy", "delete", "east"]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(None, &["endpoint", "delete", "dc2"]);
    assert!(ok, "{err}");
    let (ok, out, _) = run(None, &["endpoint", "list"]);
    assert!(ok && !out.contains("dc2"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_primary_metadata_converges_users_projects_members_robots_and_settings() {
    let (a, b) = pair_with(
        "async",
        true,
        &[("BERTH_REPLICATION__INSTANCE_NAME", "dc-a")],
        &[("BERTH_REPLICATION__INSTANCE_NAME", "dc-b")],
    )
    .await;
    let third = Berth::start();
    let post = |berth: &Berth, path: &str, body: Value| {
        let (url, path) = (berth.url.clone(), path.to_string());
        async move {
            let r = client()
                .post(format!("{url}{path}"))
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            assert!(status.is_success(), "POST {path}: {status} {body}");
            body
        }
    };
    // On A: a project with a member, and a robot; a third endpoint with its policy.
    post(&a, "/api/v1/projects", json!({"name": "shared"})).await;
    post(
        &a,
        "/api/v1/users",
        json!({"username": "alice", "password": "alice's long password"}),
    )
    .await;
    post(
        &a,
        "/api/v1/projects/shared/members",
        json!({"username": "alice", "role": "developer"}),
    )
    .await;
    let robot = post(
        &a,
        "/api/v1/robots",
        json!({"name": "ci", "permissions": [{"project": "shared", "actions": ["pull", "push"]}]}),
    )
    .await;
    let secret = robot["secret"].as_str().unwrap().to_string();
    berth_endpoint(&a, "third", &third.url).await;
    create_policy(
        &a,
        json!({"name": "to-third", "endpoints": ["third"], "filters": {"project": "shared"}}),
    )
    .await;
    // On B: a user and a project of its own.
    post(
        &b,
        "/api/v1/users",
        json!({"username": "bob", "password": "bob's long password here"}),
    )
    .await;
    post(&b, "/api/v1/projects", json!({"name": "bobs"})).await;

    let get = |berth: &Berth, path: &str| {
        let (url, path) = (berth.url.clone(), path.to_string());
        async move {
            let r = client().get(format!("{url}{path}")).send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    eventually("A's records reach B and B's reach A", || async {
        get(&b, "/api/v1/projects/shared").await.0 == 200
            && get(&b, "/api/v1/users/alice").await.0 == 200
            && get(&b, "/api/v1/robots/robot$ci").await.0 == 200
            && get(&b, "/api/v1/replication/policies/to-third").await.0 == 200
            && get(&a, "/api/v1/users/bob").await.0 == 200
            && get(&a, "/api/v1/projects/bobs").await.0 == 200
            && get(&b, "/api/v1/projects/shared/members")
                .await
                .1
                .to_string()
                .contains("alice")
    })
    .await;
    // The synced endpoint works on B: its password was sealed again there.
    let check = api(
        &b,
        reqwest::Method::POST,
        "/api/v1/replication/endpoints/third/check",
        None,
    )
    .await;
    assert_eq!(check["healthy"], true, "{check}");
    // The pair's own settings stay each side's own.
    assert_eq!(get(&b, "/api/v1/replication/endpoints/peer-b").await.0, 404);
    assert_eq!(get(&a, "/api/v1/replication/endpoints/peer-a").await.0, 404);
    // The robot made on A logs in and pushes on B; alice logs in on B.
    push_image(
        &client_as("robot$ci", &secret),
        &b.url,
        "shared/app",
        "v1",
        3,
    )
    .await;
    let r = client_as("alice", "alice's long password")
        .get(format!("{}/api/v1/users/current", b.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Deletes travel too: a member removed on B, a project deleted on A.
    let r = client()
        .delete(format!("{}/api/v1/projects/shared/members/alice", b.url))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let r = client()
        .delete(format!("{}/api/v1/projects/bobs", a.url))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    eventually("the deletes converge", || async {
        !get(&a, "/api/v1/projects/shared/members")
            .await
            .1
            .to_string()
            .contains("alice")
            && get(&b, "/api/v1/projects/bobs").await.0 == 404
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_endpoints_tags_left_alone_without_override_and_cancelling_a_running_job() {
    // A replica serving TLS with a certificate no system trusts.
    let tmp = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
    std::fs::write(tmp.path().join("cert.pem"), &cert_pem).unwrap();
    std::fs::write(tmp.path().join("key.pem"), &key_pem).unwrap();
    let secure = Berth::start_with(&[
        "--tls-cert",
        tmp.path().join("cert.pem").to_str().unwrap(),
        "--tls-key",
        tmp.path().join("key.pem").to_str().unwrap(),
    ]);
    install_crypto();
    let https = {
        use base64::Engine;
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN_PASSWORD}"));
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Basic {basic}").parse().unwrap(),
        );
        reqwest::Client::builder()
            .default_headers(headers)
            .tls_certs_only([reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap()])
            .build()
            .unwrap()
    };
    let r = https
        .post(format!("{}/api/v1/projects", secure.url))
        .json(&json!({"name": "team"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let primary = Berth::start_configured(&[], QUICK_RETRIES);
    berth_endpoint(&primary, "secure", &secure.url).await;
    let check = api(
        &primary,
        reqwest::Method::POST,
        "/api/v1/replication/endpoints/secure/check",
        None,
    )
    .await;
    assert_eq!(check["healthy"], false, "{check}");
    assert!(
        check["error"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("certificate"),
        "{check}"
    );
    api(
        &primary,
        reqwest::Method::PATCH,
        "/api/v1/replication/endpoints/secure",
        Some(json!({"ca_cert": cert_pem})),
    )
    .await;
    let check = api(
        &primary,
        reqwest::Method::POST,
        "/api/v1/replication/endpoints/secure/check",
        None,
    )
    .await;
    assert_eq!(check["healthy"], true, "{check}");

    // Without override, a destination tag that points elsewhere is left alone, and the
    // task says so.
    let http = client();
    let (v1, _) = push_image(&http, &primary.url, "team/app", "v1", 1).await;
    push_image(&http, &primary.url, "team/app", "v2", 2).await;
    let (theirs, _) = push_image(&https, &secure.url, "team/app", "v2", 3).await;
    create_policy(
        &primary,
        json!({"name": "keep", "endpoints": ["secure"], "override_existing": false}),
    )
    .await;
    let done = finished(&primary, run_policy(&primary, "keep").await).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(
        resolve(&https, &secure.url, "team/app", "v1")
            .await
            .as_deref(),
        Some(v1.as_str())
    );
    assert_eq!(
        resolve(&https, &secure.url, "team/app", "v2")
            .await
            .as_deref(),
        Some(theirs.as_str())
    );
    let notes: Vec<&str> = done["task_list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["note"].as_str())
        .collect();
    assert!(notes.iter().any(|n| n.contains("left alone")), "{done:#}");

    // A job cancelled while it runs stops: what had not run is cancelled, and it is
    // final.
    let slow_replica = Berth::start();
    let proxy = FaultyProxy::start(&slow_replica.addr, Fault::Slow(400)).await;
    berth_endpoint(&primary, "slow", &format!("http://{}", proxy.addr)).await;
    for i in 0..10u64 {
        push_image(&http, &primary.url, "team/many", &format!("t{i}"), 100 + i).await;
    }
    create_policy(
        &primary,
        json!({"name": "bulk", "endpoints": ["slow"], "concurrency": 1}),
    )
    .await;
    let id = run_policy(&primary, "bulk").await;
    eventually("the job runs", || async {
        job(&primary, id).await["status"] == "running"
    })
    .await;
    let cancelled = api(
        &primary,
        reqwest::Method::POST,
        &format!("/api/v1/replication/jobs/{id}/cancel"),
        None,
    )
    .await;
    assert_eq!(cancelled["status"], "cancelled");
    let done = finished(&primary, id).await;
    assert_eq!(done["status"], "cancelled", "{done:#}");
    assert!(
        done["tasks"]["cancelled"].as_u64().unwrap() >= 5,
        "{done:#}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        job(&primary, id).await["status"],
        "cancelled",
        "a cancelled job stays cancelled"
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hop_forwarding_what_it_still_receives_stops_when_that_transfer_fails() {
    // root → a → a1, where a refuses the push (its project is gone): the hop a → a1,
    // started early to forward as a receives, is stopped instead of waiting it out.
    let root = Berth::start_configured(&[], QUICK_RETRIES);
    let a = Berth::start();
    let a1 = Berth::start();
    let r = client()
        .delete(format!("{}/api/v1/projects/team", a.url))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    berth_endpoint(&root, "a", &a.url).await;
    berth_endpoint(&root, "a1", &a1.url).await;
    chain_tree_policy(&root).await;
    push_image(&client(), &root.url, "team/app", "v1", 1).await;
    let done = finished(&root, run_policy(&root, "tree").await).await;
    assert_eq!(done["status"], "failed", "{done:#}");
    let tasks = done["task_list"].as_array().unwrap();
    let hop = |source: &str| tasks.iter().find(|t| t["source"] == source).unwrap();
    assert_eq!(hop("root")["status"], "failed", "{done:#}");
    assert_eq!(hop("a")["status"], "cancelled", "{done:#}");
    assert_eq!(resolve(&client(), &a1.url, "team/app", "v1").await, None);
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

#[tokio::test(flavor = "multi_thread")]
async fn a_tree_hop_forwards_a_blob_while_it_still_arrives() {
    let (root, _a, a1, gate, layer, job) = tree_with_a_half_arrived_layer().await;
    gate.set(Gate::Open);
    let done = finished(&root, job).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let r = client()
        .get(a1.v2(&format!("team/app/blobs/{}", sha256(&layer))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap() == layer, "a1's layer differs");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_forwarded_while_it_arrives_is_not_completed_downstream_when_its_upload_fails() {
    // The held upload to a is cut: a never verifies those bytes, so a1, which was
    // forwarded most of them, must not complete the blob from them; the job's retry
    // brings the whole layer through a new connection.
    let (root, a, mut a1, gate, layer, job) = tree_with_a_half_arrived_layer().await;
    let blob = format!("team/app/blobs/{}", sha256(&layer));
    gate.set(Gate::Cut);
    let done = finished(&root, job).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    for berth in [&a, &a1] {
        let r = client().get(berth.v2(&blob)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.bytes().await.unwrap() == layer, "a layer differs");
    }
    assert!(a1.terminate(), "a1 did not stop cleanly");
    let (clean, report) = a1.fsck(false);
    assert!(clean, "{report}");
}
