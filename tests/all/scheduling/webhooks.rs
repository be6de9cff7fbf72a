//! The machine webhook: every move delivered in order, signed, and retried.

use serde_json::{Value, json};

use super::{answering_port, create_machine, host, machine_in, pool_for};
use crate::replication::api;
use crate::support::*;

/// The requests a receiver accepted: headers and body.
type Accepted = std::sync::Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, Vec<u8>)>>>;

/// A webhook receiver: refuses its first request, then records what it accepts.
struct Receiver {
    url: String,
    accepted: Accepted,
    refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Receiver {
    async fn start() -> Receiver {
        use std::sync::atomic::Ordering;
        let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (keep, count) = (accepted.clone(), refused.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let (keep, count) = (keep.clone(), count.clone());
                    async move {
                        if count.load(Ordering::SeqCst) == 0 {
                            count.fetch_add(1, Ordering::SeqCst);
                            return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                        }
                        keep.lock().unwrap().push((headers, body.to_vec()));
                        axum::http::StatusCode::NO_CONTENT
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver {
            url,
            accepted,
            refused,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_machine_move_reaches_the_webhook_in_order_signed_and_retried() {
    use hmac::Mac;
    use reqwest::Method;
    let receiver = Receiver::start().await;
    let secret = "webhook secret 42";
    let berth = Berth::start_configured(
        &[],
        &[
            ("BERTH_SCHEDULING__WEBHOOK_URL", receiver.url.as_str()),
            ("BERTH_SCHEDULING__WEBHOOK_SECRET", secret),
        ],
    );
    let port = answering_port();
    pool_for(&berth, "infra", "rack", json!([host("h1", port, 2, 2048)])).await;
    let id = create_machine(&berth, "infra", "rack", 1, 1024, None).await;
    machine_in(&berth, &id, "online").await;
    api(
        &berth,
        Method::POST,
        &format!("/api/v1/machines/{id}/retire"),
        None,
    )
    .await;
    machine_in(&berth, &id, "retired").await;

    let expected = [
        "requested",
        "provisioning",
        "initializing",
        "online",
        "retiring",
        "retired",
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let deliveries = loop {
        let got = receiver.accepted.lock().unwrap().clone();
        if got.len() >= expected.len() {
            break got;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} deliveries",
            got.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(
        receiver.refused.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    let mut last = 0;
    let mut moves = Vec::new();
    for (headers, body) in &deliveries {
        let header = |name: &str| headers[name].to_str().unwrap().to_string();
        let timestamp = header("x-berth-timestamp");
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{timestamp}.").as_bytes());
        mac.update(body);
        let expected_signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(header("x-berth-signature"), expected_signature);
        assert_eq!(header("x-berth-event"), "machine.transition");
        let event: Value = serde_json::from_slice(body).unwrap();
        let delivery = header("x-berth-delivery").parse::<u64>().unwrap();
        assert_eq!(event["delivery"], delivery);
        assert!(delivery > last, "in order: {delivery} after {last}");
        last = delivery;
        assert_eq!(event["machine"], id.as_str());
        moves.push(event["to"].as_str().unwrap().to_string());
    }
    assert_eq!(moves, expected);

    // The secret never shows in the printed configuration.
    let out = std::process::Command::new(berth_bin())
        .args(["config", "print"])
        .env("BERTH_SCHEDULING__WEBHOOK_SECRET", secret)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        !printed.contains(secret) && printed.contains("***"),
        "{printed}"
    );
}
