//! What goes wrong: a failing destination, a primary killed mid-run, bad requests.

use super::*;

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

/// A policy `bulk` from `primary` to `replica` through a proxy that slows every request
/// by 150 ms, `images` images pushed, and a run of it with at least `done` tasks finished:
/// the proxy (set it to `Fault::None` to let the job finish), the images and the job id.
async fn slow_bulk_job_under_way(
    primary: &Berth,
    replica: &Berth,
    images: u64,
    done: u64,
) -> (FaultyProxy, Vec<(String, Vec<u8>)>, u64) {
    let proxy = FaultyProxy::start(&replica.addr, Fault::Slow(150)).await;
    berth_endpoint(primary, "replica", &format!("http://{}", proxy.addr)).await;
    create_policy(
        primary,
        json!({"name": "bulk", "endpoints": ["replica"], "concurrency": 2}),
    )
    .await;
    let http = client();
    let mut pushed = Vec::new();
    for i in 0..images {
        pushed.push(push_image(&http, &primary.url, "team/app", &format!("t{i}"), i).await);
    }
    let id = run_policy(primary, "bulk").await;
    eventually("a few tasks are done", || async {
        job(primary, id).await["tasks"]["succeeded"]
            .as_u64()
            .unwrap()
            >= done
    })
    .await;
    (proxy, pushed, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_resumes_after_the_primary_is_killed_mid_run() {
    let mut primary = Berth::start();
    let replica = Berth::start();
    // Slow enough that the kill lands mid-job.
    let (proxy, images, id) = slow_bulk_job_under_way(&primary, &replica, 20, 3).await;
    let http = client();
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

/// A graceful shutdown stops a job where it is (its lease released, nothing cancelled),
/// and the restarted node takes it up at once and finishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_stopped_by_a_graceful_shutdown_resumes_and_nothing_is_cancelled() {
    let mut primary = Berth::start();
    let replica = Berth::start();
    let (proxy, images, id) = slow_bulk_job_under_way(&primary, &replica, 12, 2).await;
    let http = client();
    primary.restart_gracefully();
    proxy.set(Fault::None);
    let done = finished(&primary, id).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["tasks"]["succeeded"], 12, "{done:#}");
    assert_eq!(done["tasks"]["cancelled"], 0, "{done:#}");
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
