//! Resource scheduling against real berth processes: clusters, pools and quotas
//! (`clusters.rs`), machines from create to retire (`machines.rs`), the permission matrix
//! cell by cell (`matrix.rs`), health (`health.rs`),
//! the webhook (`webhooks.rs`) and the command line (`cli.rs`).

mod cli;
mod clusters;
mod health;
mod machines;
mod matrix;
mod webhooks;

use serde_json::Value;

use crate::replication::api;
use crate::support::*;

/// `method path` with `body` as `http`'s account: the status and the JSON answer.
pub(crate) async fn call(
    http: &reqwest::Client,
    berth: &Berth,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http.request(method, format!("{}{path}", berth.url));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Waits until machine `id` is in `state` (as the admin sees it); returns it.
pub(crate) async fn machine_in(berth: &Berth, id: &str, state: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let machine = api(
            berth,
            reqwest::Method::GET,
            &format!("/api/v1/machines/{id}"),
            None,
        )
        .await;
        if machine["state"] == state {
            return machine;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "machine {id} never reached {state}: {machine:#}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
