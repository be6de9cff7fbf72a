//! Three berth nodes serving one registry: one PostgreSQL database for the metadata, one
//! blob directory, each node its own name. Whatever node a client reaches, it sees the
//! same registry: pushes, chunked uploads whose chunks reach different nodes, tag moves
//! racing through different nodes, replication jobs (run once, and taken over when the
//! node running one is killed), and revocations.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::replication::{
    api, berth_endpoint, create_policy, eventually, finished, job, run_policy,
};
use crate::support::*;

struct Cluster {
    nodes: Vec<Berth>,
    database: String,
    data: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// `berth fsck` of the shared blob directory and database, while the nodes serve.
    fn fsck(&self) -> String {
        let out = std::process::Command::new(berth_bin())
            .args(["fsck", "--data-dir", self.data.to_str().unwrap()])
            .env("BERTH_METADATA__BACKEND", "postgres")
            .env("BERTH_METADATA__URL", &self.database)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "fsck: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

/// `n` nodes on a new database and a new shared data directory; `env` is added to each.
fn cluster(n: usize, env: &[(&str, &str)]) -> Cluster {
    // The synchronous client runs a runtime of its own: not on the test's.
    let database = std::thread::spawn(berth_test_postgres::fresh_database)
        .join()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let nodes = (0..n)
        .map(|i| {
            let name = format!("node-{i}");
            let mut vars = vec![
                ("BERTH_METADATA__BACKEND", "postgres"),
                ("BERTH_METADATA__URL", database.as_str()),
                ("BERTH_SERVER__NODE_ID", name.as_str()),
            ];
            vars.extend_from_slice(env);
            Berth::start_node(&data, &vars, i == 0)
        })
        .collect();
    Cluster {
        nodes,
        database,
        data,
        _dir: dir,
    }
}

/// The replication jobs of `policy`, as `node` lists them.
async fn jobs_of(node: &Berth, policy: &str) -> Vec<serde_json::Value> {
    let jobs = api(
        node,
        reqwest::Method::GET,
        &format!("/api/v1/replication/jobs?policy={policy}"),
        None,
    )
    .await;
    jobs.as_array().unwrap().clone()
}

/// The degraded destinations of the first policy, as `node` reports them.
async fn degraded_on(node: &Berth) -> serde_json::Value {
    let status = api(
        node,
        reqwest::Method::GET,
        "/api/v1/replication/status",
        None,
    )
    .await;
    status["policies"][0]["degraded"].clone()
}

/// A manifest GET or HEAD that accepts OCI image manifests.
async fn manifest_request(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
) -> reqwest::Response {
    http.request(method, url)
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap()
}

/// Closes the upload session at `location` through `node` with `digest`; asserts 201.
async fn close_upload(http: &reqwest::Client, node: &Berth, location: &str, digest: &str) {
    let separator = if location.contains('?') { '&' } else { '?' };
    let r = http
        .put(format!(
            "{}{separator}digest={digest}",
            absolute(&node.url, location)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
}

fn absolute(base: &str, location: &str) -> String {
    if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        location.to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_through_one_node_is_pulled_through_the_others_and_chunks_may_reach_any_node() {
    let c = cluster(3, &[]);
    let http = client();
    let (digest, manifest) = push_image(&http, &c.nodes[0].url, "team/app", "v1", 7).await;
    for node in &c.nodes[1..] {
        let r = manifest_request(
            &http,
            reqwest::Method::GET,
            node.v2("team/app/manifests/v1"),
        )
        .await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
        assert_eq!(r.bytes().await.unwrap().as_ref(), manifest.as_slice());
        let tags: serde_json::Value = http
            .get(node.v2("team/app/tags/list"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(tags["tags"], json!(["v1"]));
    }

    // One session, three chunks, each through another node, closed through the first.
    let data = bytes(99, 3 * 1024 * 1024 + 17);
    let blob = sha256(&data);
    let r = http
        .post(c.nodes[0].v2("team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let mut location = r.headers()["location"].to_str().unwrap().to_string();
    let chunks: Vec<&[u8]> = data.chunks(1024 * 1024 + 5).collect();
    let mut offset = 0;
    for (i, chunk) in chunks.iter().enumerate() {
        let node = &c.nodes[(i + 1) % 3];
        let r = http
            .patch(absolute(&node.url, &location))
            .header("content-type", "application/octet-stream")
            .header(
                "content-range",
                format!("{offset}-{}", offset + chunk.len() - 1),
            )
            .body(chunk.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "chunk {i} through {}", node.url);
        offset += chunk.len();
        assert_eq!(
            r.headers()["range"].to_str().unwrap(),
            format!("0-{}", offset - 1)
        );
        location = r.headers()["location"].to_str().unwrap().to_string();
        // Every node reports the same progress.
        let status = http
            .get(absolute(&c.nodes[i % 3].url, &location))
            .send()
            .await
            .unwrap();
        assert_eq!(status.status(), 204);
        assert_eq!(status.headers()["range"], r.headers()["range"]);
    }
    close_upload(&http, &c.nodes[0], &location, &blob).await;
    for node in &c.nodes {
        let got = http
            .get(node.v2(&format!("team/app/blobs/{blob}")))
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), 200);
        assert_eq!(sha256(&got.bytes().await.unwrap()), blob);
    }
    let report = c.fsck();
    assert!(report.contains(" 1 manifests,"), "{report}");
    assert!(report.ends_with("0 problems\n"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_moves_racing_through_different_nodes_converge() {
    let c = cluster(3, &[]);
    let http = client();
    let mut digests = Vec::new();
    for i in 0..6 {
        digests.push(
            push_image(
                &http,
                &c.nodes[i % 3].url,
                "team/race",
                &format!("img{i}"),
                i as u64,
            )
            .await
            .0,
        );
    }
    let manifests: Vec<Vec<u8>> = {
        let mut out = Vec::new();
        for i in 0..6 {
            let r = manifest_request(
                &http,
                reqwest::Method::GET,
                c.nodes[0].v2(&format!("team/race/manifests/img{i}")),
            )
            .await;
            out.push(r.bytes().await.unwrap().to_vec());
        }
        out
    };
    // Nine writers, three per node, each moving `latest` ten times.
    let mut writers = Vec::new();
    for w in 0..9usize {
        let (base, manifests, http) = (c.nodes[w % 3].url.clone(), manifests.clone(), http.clone());
        writers.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for round in 0..10usize {
                let body = manifests[(w + round) % manifests.len()].clone();
                let r = http
                    .put(format!("{base}/v2/team/race/manifests/latest"))
                    .header("content-type", "application/vnd.oci.image.manifest.v1+json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                statuses.push(r.status().as_u16());
            }
            statuses
        }));
    }
    for writer in writers {
        for status in writer.await.unwrap() {
            assert_eq!(
                status, 201,
                "every move is accepted, retried under conflicts"
            );
        }
    }
    let mut seen = Vec::new();
    for node in &c.nodes {
        let r = manifest_request(
            &http,
            reqwest::Method::HEAD,
            node.v2("team/race/manifests/latest"),
        )
        .await;
        assert_eq!(r.status(), 200);
        seen.push(
            r.headers()["docker-content-digest"]
                .to_str()
                .unwrap()
                .to_string(),
        );
    }
    assert!(seen.iter().all(|d| *d == seen[0]), "{seen:?}");
    assert!(digests.contains(&seen[0]));
    // The history agrees with the tag: its newest entry is a target the tag left.
    let history = api(
        &c.nodes[1],
        reqwest::Method::GET,
        "/api/v1/repositories/team%2Frace/tags/latest/history",
        None,
    )
    .await;
    assert_eq!(history["current"]["digest"], seen[0].as_str());
    let entries = history["history"].as_array().unwrap();
    assert!(!entries.is_empty() && entries.len() <= 50, "{history:#}");
    assert!(
        entries.iter().all(|e| e["event"] == "replaced"),
        "{history:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replication_job_runs_once_and_another_node_finishes_it_when_its_node_is_killed() {
    let mut c = cluster(
        3,
        &[
            ("BERTH_REPLICATION__JOB_LEASE_SECS", "3"),
            ("BERTH_REPLICATION__RETRY_BASE_MS", "50"),
            ("BERTH_REPLICATION__RETRY_MAX_MS", "200"),
        ],
    );
    let replica = Berth::start();
    let proxy = FaultyProxy::start(&replica.addr, Fault::Slow(150)).await;
    berth_endpoint(&c.nodes[0], "replica", &format!("http://{}", proxy.addr)).await;
    create_policy(
        &c.nodes[1],
        json!({"name": "bulk", "endpoints": ["replica"], "concurrency": 2}),
    )
    .await;
    let http = client();
    let mut pushed = Vec::new();
    for i in 0..12u64 {
        let node = &c.nodes[i as usize % 3];
        pushed.push(push_image(&http, &node.url, "team/app", &format!("t{i}"), i).await);
    }
    let id = run_policy(&c.nodes[2], "bulk").await;
    eventually("the job is under way on some node", || async {
        let j = job(&c.nodes[0], id).await;
        j["node"].is_string() && j["tasks"]["succeeded"].as_u64().unwrap() >= 2
    })
    .await;
    let under_way = job(&c.nodes[0], id).await;
    let runner = under_way["node"]
        .as_str()
        .expect("a node holds the lease")
        .to_string();
    let killed: usize = runner.trim_start_matches("node-").parse().unwrap();
    c.nodes[killed].kill9();
    let survivor = &c.nodes[(killed + 1) % 3];
    proxy.set(Fault::None);
    let done = finished(survivor, id).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["tasks"]["succeeded"], 12);
    let jobs = jobs_of(survivor, "bulk").await;
    assert_eq!(jobs.len(), 1, "one job: {jobs:#?}");
    for (i, (digest, _)) in pushed.iter().enumerate() {
        let r = manifest_request(
            &http,
            reqwest::Method::HEAD,
            replica.v2(&format!("team/app/manifests/t{i}")),
        )
        .await;
        assert_eq!(r.status(), 200, "t{i} replicated");
        assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    }
    // A second run through yet another node is again one job, run once.
    let again = run_policy(survivor, "bulk").await;
    let j = finished(&c.nodes[(killed + 2) % 3], again).await;
    assert_eq!(j["status"], "succeeded", "{j:#}");
    let report = c.fsck();
    assert!(report.ends_with("0 problems\n"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_robot_revoked_on_one_node_is_refused_by_every_node_within_a_second() {
    let c = cluster(3, &[]);
    let http = client();
    push_image(&http, &c.nodes[0].url, "team/app", "v1", 1).await;
    let robot = api(
        &c.nodes[0],
        reqwest::Method::POST,
        "/api/v1/robots",
        Some(json!({"name": "ci", "permissions": [{"project": "team", "actions": ["pull"]}]})),
    )
    .await;
    let secret = robot["secret"].as_str().unwrap().to_string();
    let as_robot = client_as("robot$ci", &secret);
    for node in &c.nodes {
        let r = manifest_request(
            &as_robot,
            reqwest::Method::GET,
            node.v2("team/app/manifests/v1"),
        )
        .await;
        assert_eq!(r.status(), 200);
    }
    api(
        &c.nodes[1],
        reqwest::Method::DELETE,
        "/api/v1/robots/robot$ci",
        None,
    )
    .await;
    let revoked = Instant::now();
    for node in &c.nodes {
        loop {
            let r = manifest_request(
                &as_robot,
                reqwest::Method::GET,
                node.v2("team/app/manifests/v1"),
            )
            .await;
            if r.status() == 401 {
                break;
            }
            assert!(
                revoked.elapsed() < Duration::from_secs(1),
                "{} still serves a revoked robot",
                node.url
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_membership_removed_on_one_node_is_refused_by_every_node_within_a_second() {
    let c = cluster(3, &[]);
    let http = client();
    push_image(&http, &c.nodes[0].url, "team/app", "v1", 1).await;
    api(
        &c.nodes[0],
        reqwest::Method::POST,
        "/api/v1/users",
        Some(json!({"username": "alice", "password": "alice's long password"})),
    )
    .await;
    api(
        &c.nodes[0],
        reqwest::Method::POST,
        "/api/v1/projects/team/members",
        Some(json!({"username": "alice", "role": "developer"})),
    )
    .await;
    let alice = client_as("alice", "alice's long password");
    let start_upload = |node: &Berth| {
        let (alice, url) = (alice.clone(), node.v2("team/app/blobs/uploads/"));
        async move { alice.post(url).send().await.unwrap().status().as_u16() }
    };
    // Every node lets her push (and keeps what it read for the next request).
    for _ in 0..2 {
        for node in &c.nodes {
            assert_eq!(start_upload(node).await, 202, "{}", node.url);
        }
    }
    api(
        &c.nodes[1],
        reqwest::Method::DELETE,
        "/api/v1/projects/team/members/alice",
        None,
    )
    .await;
    let removed = Instant::now();
    for node in &c.nodes {
        loop {
            let status = start_upload(node).await;
            if status == 403 || status == 401 {
                break;
            }
            assert!(
                removed.elapsed() < Duration::from_secs(1),
                "{} still lets a removed member push ({status})",
                node.url
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // A role given again is seen at once by every node.
    api(
        &c.nodes[2],
        reqwest::Method::POST,
        "/api/v1/projects/team/members",
        Some(json!({"username": "alice", "role": "developer"})),
    )
    .await;
    for node in &c.nodes {
        assert_eq!(start_upload(node).await, 202, "{}", node.url);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_through_any_node_are_replicated_on_change_each_exactly_once() {
    let c = cluster(3, &[]);
    let replica = Berth::start();
    berth_endpoint(&c.nodes[0], "replica", &replica.url).await;
    create_policy(
        &c.nodes[0],
        json!({"name": "follow", "endpoints": ["replica"], "on_change": true}),
    )
    .await;
    let http = client();
    let mut pushed = Vec::new();
    for i in 0..9u64 {
        let node = &c.nodes[i as usize % 3];
        pushed.push(push_image(&http, &node.url, "team/app", &format!("v{i}"), 100 + i).await);
    }
    for (i, (digest, _)) in pushed.iter().enumerate() {
        crate::replication::resolves_to(&replica.url, "team/app", &format!("v{i}"), Some(digest))
            .await;
    }
    // Every node follows the feed; each change was queued into exactly one job.
    let jobs = jobs_of(&c.nodes[2], "follow").await;
    let changes: u64 = jobs.iter().map(|j| j["changes"].as_u64().unwrap()).sum();
    assert_eq!(changes, 9, "{jobs:#?}");
    let status = api(
        &c.nodes[1],
        reqwest::Method::GET,
        "/api/v1/replication/status",
        None,
    )
    .await;
    assert_eq!(status["unread_changes"], 0, "{status:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fires_once_across_the_nodes() {
    let c = cluster(3, &[]);
    let replica = Berth::start();
    berth_endpoint(&c.nodes[0], "replica", &replica.url).await;
    create_policy(
        &c.nodes[0],
        json!({"name": "every2s", "endpoints": ["replica"], "schedule": "*/2 * * * * *"}),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(9)).await;
    api(
        &c.nodes[1],
        reqwest::Method::PATCH,
        "/api/v1/replication/policies/every2s",
        Some(json!({"enabled": false})),
    )
    .await;
    let jobs = jobs_of(&c.nodes[2], "every2s").await;
    let runs = jobs.len();
    // Nine seconds of a two-second schedule: three or four runs (the first due time is
    // set when a node first sees the schedule), where three nodes firing on their own
    // would have made about twelve.
    assert!((2..=5).contains(&runs), "{runs} scheduled runs: {jobs:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sessions_chunks_sent_to_two_nodes_at_once_are_written_one_at_a_time() {
    use futures::StreamExt as _;
    let c = cluster(2, &[]);
    let http = client();
    let r = http
        .post(c.nodes[0].v2("team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let data = bytes(5, 2 * 1024 * 1024);
    let digest = sha256(&data);
    // Through node 0: half the chunk now, the rest a moment later.
    let halves = vec![
        data[..data.len() / 2].to_vec(),
        data[data.len() / 2..].to_vec(),
    ];
    let slow = futures::stream::iter(halves.into_iter().enumerate()).then(|(i, half)| async move {
        if i == 1 {
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        Ok::<_, std::io::Error>(half)
    });
    let first = {
        let (http, url) = (http.clone(), absolute(&c.nodes[0].url, &location));
        tokio::spawn(async move {
            http.patch(url)
                .header("content-type", "application/octet-stream")
                .body(reqwest::Body::wrap_stream(slow))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Meanwhile, other bytes for the same range through node 1: refused, not interleaved.
    let other = http
        .patch(absolute(&c.nodes[1].url, &location))
        .header("content-type", "application/octet-stream")
        .body(bytes(6, 1024 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 429);
    assert!(other.headers().contains_key("retry-after"));
    assert_eq!(first.await.unwrap(), 202);
    // The claim ended with node 0's commit: node 1 closes the session.
    close_upload(&http, &c.nodes[1], &location, &digest).await;
    let got = http
        .get(c.nodes[1].v2(&format!("team/app/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(sha256(&got.bytes().await.unwrap()), digest);
    let report = c.fsck();
    assert!(report.ends_with("0 problems\n"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_destination_one_node_gave_up_on_is_not_waited_for_by_the_others_until_it_is_back() {
    const DEGRADE_AFTER: Duration = Duration::from_secs(10);
    let c = cluster(2, &[]);
    let replica = Berth::start();
    let proxy = FaultyProxy::start(&replica.addr, Fault::None).await;
    berth_endpoint(&c.nodes[0], "replica", &format!("http://{}", proxy.addr)).await;
    create_policy(
        &c.nodes[0],
        json!({"name": "mirror", "endpoints": ["replica"], "on_change": true,
               "delivery": "sync", "degrade_after_secs": DEGRADE_AFTER.as_secs()}),
    )
    .await;
    let http = client();
    // Sync: acknowledged through node 1 only once the replica holds it.
    let (before, _) = push_image(&http, &c.nodes[1].url, "team/app", "before", 1).await;
    let held = manifest_request(
        &http,
        reqwest::Method::HEAD,
        replica.v2("team/app/manifests/before"),
    )
    .await;
    assert_eq!(held.headers()["docker-content-digest"], before.as_str());

    // The replica drops every connection: node 0 holds its push for the whole
    // `degrade_after_secs`, then gives up on the replica.
    proxy.set(Fault::Drop);
    proxy.cut();
    let started = Instant::now();
    let (during_0, _) = push_image(&http, &c.nodes[0].url, "team/app", "during-0", 2).await;
    assert!(
        started.elapsed() >= DEGRADE_AFTER,
        "{:?}",
        started.elapsed()
    );
    // Node 1 knows it at once, and does not wait for the replica again.
    let degraded = degraded_on(&c.nodes[1]).await;
    assert_eq!(degraded[0]["endpoint"], "replica", "{degraded:#}");
    assert_eq!(degraded[0]["node"], "node-0", "{degraded:#}");
    let started = Instant::now();
    let (during_1, _) = push_image(&http, &c.nodes[1].url, "team/app", "during-1", 3).await;
    assert!(
        started.elapsed() < DEGRADE_AFTER,
        "node 1 waited for a destination node 0 gave up on: {:?}",
        started.elapsed()
    );
    let metrics = crate::replication::metrics(&c.nodes[1]).await;
    assert!(
        metrics.contains("berth_replication_degraded{policy=\"mirror\",endpoint=\"replica\"} 1"),
        "{metrics}"
    );

    // Back: some node's probe restores the link for both, and what they acknowledged
    // without it reaches it.
    proxy.set(Fault::None);
    for (tag, digest) in [("during-0", &during_0), ("during-1", &during_1)] {
        crate::replication::resolves_to(&replica.url, "team/app", tag, Some(digest)).await;
    }
    for node in &c.nodes {
        eventually("every node waits for the replica again", || async {
            degraded_on(node).await.as_array().unwrap().is_empty()
        })
        .await;
    }
    let (after, _) = push_image(&http, &c.nodes[0].url, "team/app", "after", 4).await;
    let held = manifest_request(
        &http,
        reqwest::Method::HEAD,
        replica.v2("team/app/manifests/after"),
    )
    .await;
    assert_eq!(
        held.status(),
        200,
        "a sync push is on the replica when acknowledged"
    );
    assert_eq!(held.headers()["docker-content-digest"], after.as_str());
}

/// Starts a delegated transfer of `team/app:tag` through `node` to `url`.
async fn delegate(node: &Berth, tag: &str, url: &str, token: &str) -> String {
    let started = api(
        node,
        reqwest::Method::POST,
        "/api/v1/replication/transfers",
        Some(
            json!({"repository": "team/app", "reference": tag, "destination": "team/app",
                    "target": {"url": url, "kind": "berth", "token": token}}),
        ),
    )
    .await;
    assert_eq!(started["status"], "running", "{started:#}");
    started["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegated_transfer_is_followed_through_any_node_and_fails_when_its_node_dies() {
    let mut c = cluster(2, &[("BERTH_REPLICATION__JOB_LEASE_SECS", "3")]);
    let destination = Berth::start();
    let http = client();
    let (v1, _) = push_image(&http, &c.nodes[0].url, "team/app", "v1", 1).await;
    push_image(&http, &c.nodes[1].url, "team/app", "v2", 2).await;
    let token = token_from(&destination, "repository:team/app:pull,push").await;

    // Started through node 0, followed through node 1 with a long poll.
    let id = delegate(&c.nodes[0], "v1", &destination.url, &token).await;
    let path = format!("/api/v1/replication/transfers/{id}?wait_ms=30000");
    let done = api(&c.nodes[1], reqwest::Method::GET, &path, None).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["progress"]["manifests_copied"], 1, "{done:#}");
    crate::replication::resolves_to(&destination.url, "team/app", "v1", Some(&v1)).await;

    // A transfer that hangs on a destination that takes nothing; its node is killed. The
    // other node reports it failed once the lease lapses, so the planner retries it.
    let held = GatedProxy::start(&destination.addr, 0).await;
    let id = delegate(&c.nodes[0], "v2", &format!("http://{}", held.addr), &token).await;
    let path = format!("/api/v1/replication/transfers/{id}");
    let running = api(&c.nodes[1], reqwest::Method::GET, &path, None).await;
    assert_eq!(running["status"], "running", "{running:#}");
    c.nodes[0].kill9();
    let waited = format!("{path}?wait_ms=20000");
    let over = api(&c.nodes[1], reqwest::Method::GET, &waited, None).await;
    assert_eq!(over["status"], "failed", "{over:#}");
    assert_eq!(over["failure"], "failed", "{over:#}");
    assert!(
        over["error"].as_str().unwrap().contains("node-0"),
        "{over:#}"
    );
    // Ids are the cluster's: one it never gave out is unknown.
    let r = http
        .get(format!(
            "{}/api/v1/replication/transfers/999999",
            c.nodes[1].url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_health_is_probed_by_one_node_and_another_takes_over_when_it_dies() {
    use crate::scheduling::{Port, create_machine, host, machine_in, pool_for};
    let mut c = cluster(
        2,
        &[
            ("BERTH_SCHEDULING__HEALTH_INTERVAL_SECS", "1"),
            ("BERTH_SCHEDULING__UNHEALTHY_AFTER_SECS", "1"),
        ],
    );
    let mut ports = Vec::new();
    for _ in 0..3 {
        ports.push(Port::open().await);
    }
    let hosts: Vec<serde_json::Value> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| host(&format!("h{i}"), p.port, 2, 2048))
        .collect();
    pool_for(
        &c.nodes[0],
        "infra",
        "rack",
        serde_json::Value::Array(hosts),
    )
    .await;
    let mut on_host = std::collections::HashMap::new();
    for i in 0..3 {
        let token = format!("m{i}");
        let id = create_machine(&c.nodes[1], "infra", "rack", 2, 2048, Some(&token)).await;
        let m = machine_in(&c.nodes[0], &id, "online").await;
        on_host.insert(m["provider_id"].as_str().unwrap().to_string(), id);
    }
    // Whichever node probes, killing each in turn leaves the other probing: a host that
    // stops answering is taken offline, and comes back.
    for killed in [0usize, 1] {
        let survivor = 1 - killed;
        c.nodes[killed].kill9();
        ports[0].close();
        let down = machine_in(&c.nodes[survivor], &on_host["h0"], "offline").await;
        assert!(
            down["reason"].as_str().unwrap().starts_with("unhealthy:"),
            "{down:#}"
        );
        ports[0].listen().await;
        machine_in(&c.nodes[survivor], &on_host["h0"], "online").await;
        c.nodes[killed].start_again();
    }
    // One prober: each failure moved the machine once each way.
    let moves = crate::scheduling::moves(&c.nodes[0], &on_host["h0"]).await;
    assert_eq!(
        moves,
        [
            "requested",
            "provisioning",
            "initializing",
            "online",
            "offline",
            "online",
            "offline",
            "online"
        ]
    );
}
