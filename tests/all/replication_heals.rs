//! Replication through errors that heal: a sync peer that refuses a push (its project is
//! missing), restarts and recovers, with every acknowledged push ending on both sides; a
//! project that arrives by the pair's metadata convergence; a destination account whose
//! rights are fixed while a refused token could be cached; what `berth replication jobs`
//! and `status` say about it.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::plugins::cli;
use crate::replication::{
    QUICK_RETRIES, all_jobs, api, create_policy, eventually, idle, pair_with, resolve, resolves_to,
};
use crate::support::*;

const NAMES_A: &[(&str, &str)] = &[
    ("BERTH_REPLICATION__INSTANCE_NAME", "dc-a"),
    ("BERTH_REPLICATION__RETRY_BASE_MS", "50"),
    ("BERTH_REPLICATION__RETRY_MAX_MS", "300"),
    ("BERTH_REPLICATION__MAX_ATTEMPTS", "3"),
];
const NAMES_B: &[(&str, &str)] = &[
    ("BERTH_REPLICATION__INSTANCE_NAME", "dc-b"),
    ("BERTH_REPLICATION__RETRY_BASE_MS", "50"),
    ("BERTH_REPLICATION__RETRY_MAX_MS", "300"),
    ("BERTH_REPLICATION__MAX_ATTEMPTS", "3"),
];

async fn status(berth: &Berth) -> Value {
    api(
        berth,
        reqwest::Method::GET,
        "/api/v1/replication/status",
        None,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_push_the_peer_refuses_degrades_loudly_and_arrives_once_the_peer_can_take_it() {
    let (a, mut b) = pair_with("sync", false, NAMES_A, NAMES_B).await;
    let http = client();
    // The project exists on A only: B answers NAME_UNKNOWN to everything A sends.
    a.create_project("fresh", false);
    let started = Instant::now();
    let (first, _) = push_image(&http, &a.url, "fresh/app", "v1", 1).await;
    // Acknowledged only once A gave up waiting (degrade_after_secs = 2), never at once.
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "acknowledged after {:?} though B refused it",
        started.elapsed()
    );
    let s = status(&a).await;
    let policy = &s["policies"][0];
    assert_eq!(policy["degraded"][0]["endpoint"], "peer-b", "{s:#}");
    assert!(
        policy["degraded"][0]["error"]
            .as_str()
            .unwrap()
            .contains("fresh"),
        "{s:#}"
    );
    // The CLI says so loudly.
    let (ok, _, err) = cli(&a, &["replication", "status"]);
    assert!(ok);
    assert!(err.contains("DEGRADED") && err.contains("peer-b"), "{err}");

    // More pushes while degraded are acknowledged at once, and queued.
    let mut acked = vec![("v1".to_string(), first)];
    for i in 2..5u64 {
        let tag = format!("v{i}");
        let started = Instant::now();
        let (digest, _) = push_image(&http, &a.url, "fresh/app", &tag, i).await;
        assert!(started.elapsed() < Duration::from_secs(2));
        acked.push((tag, digest));
    }
    // The change jobs keep trying: none gives up on a refusal that can heal.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let jobs = all_jobs(&a).await;
    assert!(
        jobs.iter().all(|j| j["status"] != "failed"),
        "a change job gave up: {jobs:#?}"
    );
    let s = status(&a).await;
    let policy = &s["policies"][0];
    assert!(
        policy["pending_tasks"].as_u64().unwrap() + policy["pending_changes"].as_u64().unwrap() > 0,
        "{s:#}"
    );

    // The peer restarts meanwhile; then its project is created.
    b.restart();
    b.create_project("fresh", false);
    for (tag, digest) in &acked {
        resolves_to(&b.url, "fresh/app", tag, Some(digest)).await;
    }
    eventually("A waits for B again", || async {
        status(&a).await["policies"][0]["degraded"]
            .as_array()
            .unwrap()
            .is_empty()
    })
    .await;
    // Synchronous again: on B as soon as A acknowledges.
    let (after, _) = push_image(&http, &a.url, "fresh/app", "after", 9).await;
    assert_eq!(
        resolve(&http, &b.url, "fresh/app", "after")
            .await
            .as_deref(),
        Some(after.as_str())
    );
    eventually("A is idle", || idle(&a)).await;
    assert!(all_jobs(&a).await.iter().all(|j| j["status"] != "failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_that_reaches_the_peer_by_metadata_convergence_brings_the_push_with_it() {
    let (a, b) = pair_with("sync", true, NAMES_A, NAMES_B).await;
    let http = client();
    a.create_project("arriving", false);
    // Pushed before the project's metadata round: delivered once the project is there.
    let (digest, _) = push_image(&http, &a.url, "arriving/app", "v1", 3).await;
    resolves_to(&b.url, "arriving/app", "v1", Some(&digest)).await;
    eventually("A is idle", || idle(&a)).await;
    assert!(all_jobs(&a).await.iter().all(|j| j["status"] != "failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixing_the_destination_accounts_rights_takes_effect_at_the_next_attempt() {
    let a = Berth::start_configured(&[], QUICK_RETRIES);
    let b = Berth::start();
    // On B: an account with no role in `team` yet.
    let r = client()
        .post(format!("{}/api/v1/users", b.url))
        .json(&json!({"username": "syncer", "password": "syncer password 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    api(
        &a,
        reqwest::Method::POST,
        "/api/v1/replication/endpoints",
        Some(json!({"name": "b", "kind": "berth", "url": b.url,
                     "username": "syncer", "password": "syncer password 1"})),
    )
    .await;
    create_policy(
        &a,
        json!({"name": "to-b", "endpoints": ["b"], "on_change": true}),
    )
    .await;
    let http = client();
    let (digest, _) = push_image(&http, &a.url, "team/app", "v1", 5).await;
    // Refused (the token grants nothing), for a while: tokens are obtained and refused.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(resolve(&http, &b.url, "team/app", "v1").await, None);

    let r = client()
        .post(format!("{}/api/v1/projects/team/members", b.url))
        .json(&json!({"username": "syncer", "role": "developer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let fixed = Instant::now();
    resolves_to(&b.url, "team/app", "v1", Some(&digest)).await;
    // Not after a cached token expired (five minutes), but at the next retries.
    assert!(
        fixed.elapsed() < Duration::from_secs(20),
        "took {:?}",
        fixed.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_shows_its_reason_and_twin_instance_names_are_warned_about() {
    // Two berths that both keep the default instance name.
    let a = Berth::start_configured(&[], QUICK_RETRIES);
    let b = Berth::start();
    crate::replication::berth_endpoint(&a, "b", &b.url).await;
    let check = api(
        &a,
        reqwest::Method::POST,
        "/api/v1/replication/endpoints/b/check",
        None,
    )
    .await;
    assert_eq!(check["healthy"], true, "{check}");
    let s = status(&a).await;
    let warnings = s["warnings"].as_array().unwrap();
    assert!(
        warnings.iter().any(|w| w
            .as_str()
            .unwrap()
            .contains("endpoint b is a berth named \"local\"")),
        "{s:#}"
    );
    let (ok, _, err) = cli(&a, &["replication", "status"]);
    assert!(ok);
    assert!(
        err.contains("warning: endpoint b is a berth named"),
        "{err}"
    );

    // A manual run to a project B does not have: the job fails after its attempts and
    // says why, in the job itself and in `berth replication jobs`.
    a.create_project("only-a", false);
    push_image(&client(), &a.url, "only-a/app", "v1", 7).await;
    create_policy(
        &a,
        json!({"name": "manual", "endpoints": ["b"], "filters": {"project": "only-a"}}),
    )
    .await;
    let job = crate::replication::run_policy_and_wait(&a, "manual").await;
    assert_eq!(job["status"], "failed", "{job:#}");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("1 of 1 tasks failed") && error.contains("only-a"),
        "{job:#}"
    );
    let (ok, out, err) = cli(&a, &["replication", "jobs"]);
    assert!(ok, "{err}");
    assert!(out.contains("1 of 1 tasks failed"), "{out}");
}
