//! Health probes on real ports that the test opens and closes, and an HTTP health check.

use serde_json::{Value, json};

use super::{Port, call, create_machine, host, machine_in, pool_for};
use crate::replication::api;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_that_stops_answering_goes_offline_and_comes_back_unless_most_of_its_cluster_fails()
 {
    use reqwest::Method;
    let berth = Berth::start_configured(
        &[],
        &[
            ("BERTH_SCHEDULING__HEALTH_INTERVAL_SECS", "1"),
            ("BERTH_SCHEDULING__UNHEALTHY_AFTER_SECS", "1"),
            ("BERTH_SCHEDULING__MAX_UNHEALTHY_PERCENT", "40"),
        ],
    );
    let mut ports = [Port::open().await, Port::open().await, Port::open().await];
    let hosts: Vec<Value> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| host(&format!("h{i}"), p.port, 4, 4096))
        .collect();
    pool_for(&berth, "infra", "rack", Value::Array(hosts)).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let token = format!("m{i}");
        ids.push(create_machine(&berth, "infra", "rack", 4, 4096, Some(&token)).await);
    }
    let mut by_host = std::collections::HashMap::new();
    for id in &ids {
        let m = machine_in(&berth, id, "online").await;
        by_host.insert(m["provider_id"].as_str().unwrap().to_string(), id.clone());
    }

    // One of three stops answering: offline, with the reason; back once it answers.
    ports[0].close();
    let down = machine_in(&berth, &by_host["h0"], "offline").await;
    assert!(
        down["reason"].as_str().unwrap().starts_with("unhealthy:"),
        "{down:#}"
    );
    assert_eq!(down["state"], "offline");
    ports[0].listen().await;
    machine_in(&berth, &by_host["h0"], "online").await;

    // An operator's offline is not health's to undo.
    let path = format!("/api/v1/machines/{}/offline", by_host["h1"]);
    api(&berth, Method::POST, &path, Some(json!({"force": true}))).await;

    // Both machines still online fail at once: 100% of the cluster's online machines,
    // over the 40% guard, so nothing is taken offline.
    ports[0].close();
    ports[2].close();
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    for host in ["h0", "h2"] {
        let m = api(
            &berth,
            Method::GET,
            &format!("/api/v1/machines/{}", by_host[host]),
            None,
        )
        .await;
        assert_eq!(m["state"], "online", "{host}: {m:#}");
    }
    let m = api(
        &berth,
        Method::GET,
        &format!("/api/v1/machines/{}", by_host["h1"]),
        None,
    )
    .await;
    assert_eq!(m["state"], "offline", "{m:#}");
}

/// An HTTP health endpoint that answers 200 or 503 as the test says.
async fn health_endpoint() -> (u16, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let healthy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = healthy.clone();
    let app = axum::Router::new().route(
        "/healthz",
        axum::routing::get(move || {
            let flag = flag.clone();
            async move {
                if flag.load(std::sync::atomic::Ordering::Relaxed) {
                    axum::http::StatusCode::OK
                } else {
                    axum::http::StatusCode::SERVICE_UNAVAILABLE
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, healthy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_health_check_takes_a_machine_offline_and_back() {
    use reqwest::Method;
    let berth = Berth::start_configured(
        &[],
        &[
            ("BERTH_SCHEDULING__HEALTH_INTERVAL_SECS", "1"),
            ("BERTH_SCHEDULING__UNHEALTHY_AFTER_SECS", "1"),
            // One machine is all of its cluster: the guard must not hold it back.
            ("BERTH_SCHEDULING__MAX_UNHEALTHY_PERCENT", "100"),
        ],
    );
    let (port, healthy) = health_endpoint().await;
    // The SSH port answers nothing: only the HTTP check decides.
    pool_for(&berth, "web", "rack", json!([host("h1", 9, 4, 4096)])).await;
    let (status, out) = call(
        &client(),
        &berth,
        Method::PATCH,
        "/api/v1/clusters/rack",
        Some(json!({"probe": {"kind": "http", "port": port, "path": "/healthz"}})),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    let id = create_machine(&berth, "web", "rack", 2, 2048, None).await;
    let online = machine_in(&berth, &id, "online").await;
    assert_eq!(
        online["reason"],
        format!("answers at http://127.0.0.1:{port}/healthz")
    );
    healthy.store(false, std::sync::atomic::Ordering::Relaxed);
    let offline = machine_in(&berth, &id, "offline").await;
    assert!(
        offline["reason"]
            .as_str()
            .unwrap()
            .starts_with("unhealthy:"),
        "{offline:#}"
    );
    healthy.store(true, std::sync::atomic::Ordering::Relaxed);
    machine_in(&berth, &id, "online").await;
}
