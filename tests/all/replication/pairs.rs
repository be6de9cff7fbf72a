//! Dual-primary pairs: async and sync delivery, kills, degradation, metadata convergence.

use super::*;

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
    let ids = |jobs: Vec<Value>| -> std::collections::BTreeSet<u64> {
        jobs.iter().map(|j| j["id"].as_u64().unwrap()).collect()
    };
    let before = (ids(all_jobs(&a).await), ids(all_jobs(&b).await));
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (side, known) in [(&a, &before.0), (&b, &before.1)] {
        let now = ids(all_jobs(side).await);
        if now != *known {
            // Say which jobs came (or went), and why they were made.
            let mut report = String::new();
            for id in now.symmetric_difference(known) {
                report.push_str(&format!("{:#}\n", job(side, *id).await));
            }
            panic!(
                "{}: jobs changed while idle: {:?} -> {:?}\n{report}",
                side.url, known, now
            );
        }
    }
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
    let metrics = metrics(&a).await;
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
    eventually("the member removed on B is gone on A", || async {
        !get(&a, "/api/v1/projects/shared/members")
            .await
            .1
            .to_string()
            .contains("alice")
    })
    .await;
    eventually("the project deleted on A is gone on B", || async {
        get(&b, "/api/v1/projects/bobs").await.0 == 404
    })
    .await;
    // And neither comes back: a round that read the records while the other side's
    // deletion was being applied must not revive them.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for (side, berth) in [("A", &a), ("B", &b)] {
        let members = get(berth, "/api/v1/projects/shared/members").await.1;
        assert!(!members.to_string().contains("alice"), "{side}: {members}");
        assert_eq!(get(berth, "/api/v1/projects/bobs").await.0, 404, "{side}");
    }
}
