//! The plugin platform end to end: each world through a small plugin, the sandbox against
//! hostile plugins (while the registry keeps serving), refused components, grants and
//! secrets, concurrency with disable/remove in flight, OCI push and load, persistence.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::{Value, json};

use crate::support::{ADMIN_PASSWORD, Berth, berth_bin, client, client_as};

mod calls;
mod distribution;
mod refusals;

/// A test plugin built by host/build.rs.
pub(crate) fn test_plugin(package: &str) -> PathBuf {
    PathBuf::from(env!("BERTH_TEST_PLUGINS_DIR"))
        .join(format!("{}.wasm", package.replace('-', "_")))
}

pub(crate) async fn load(berth: &Berth, bytes: Vec<u8>) -> reqwest::Response {
    client()
        .post(format!("{}/api/v1/plugins", berth.url))
        .header("content-type", "application/wasm")
        .body(bytes)
        .send()
        .await
        .unwrap()
}

pub(crate) async fn load_ok(berth: &Berth, package: &str) -> Value {
    let r = load(berth, std::fs::read(test_plugin(package)).unwrap()).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    r.json().await.unwrap()
}

pub(crate) async fn patch(berth: &Berth, name: &str, body: Value) -> Value {
    let r = client()
        .patch(format!("{}/api/v1/plugins/{name}", berth.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    r.json().await.unwrap()
}

/// Invokes `function`; returns the status and the body (output, or the problem's detail).
pub(crate) async fn invoke(
    http: &reqwest::Client,
    url: &str,
    name: &str,
    function: &str,
    input: Value,
) -> (u16, Value) {
    let r = http
        .post(format!("{url}/api/v1/plugins/{name}/invoke"))
        .json(&json!({"function": function, "input": input}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    if status == 200 {
        (status, body["output"].clone())
    } else {
        (status, body["detail"].clone())
    }
}

/// The input of a strategy's `plan`: its one parameter, `request`, in the WIT's names.
pub(crate) fn plan_request() -> Value {
    json!({"request": {
        "topology": {
            "datacenters": [{"id": "dc1", "parent": null}],
            "instances": [{"id": "primary", "datacenter": "dc1"}, {"id": "r1", "datacenter": "dc1"}, {"id": "r2", "datacenter": "dc1"}],
            "links": [{"source": "primary", "target": "r1", "bandwidth-mbps": null, "max-parallel": 2}]
        },
        "artifacts": [{"id": "sha256:aa", "size": 10}, {"id": "sha256:bb", "size": 20}],
        "present": [{"artifact": "sha256:aa", "instances": ["primary", "r2"]}, {"artifact": "sha256:bb", "instances": ["primary"]}],
        "targets": ["r1", "r2"]
    }})
}

fn facts(sysctl: &[(&str, &str)]) -> Value {
    json!({
        "hostname": "h1", "os": {"id": "debian", "version": "12"}, "arch": "x86_64",
        "packages": [], "services": [], "files": [],
        "sysctl": sysctl.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
    })
}

/// A tiny inventory API for the test provider: machines in memory, bearer token checked.
pub(crate) async fn inventory_server(token: &'static str) -> String {
    use axum::extract::{Path, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, post};
    use std::sync::Mutex;
    type Machines = Arc<Mutex<Vec<Value>>>;
    fn authorised(headers: &HeaderMap, token: &str) -> bool {
        headers.get("authorization").and_then(|v| v.to_str().ok())
            == Some(&format!("Bearer {token}"))
    }
    let machines: Machines = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .route(
            "/inv/machines",
            get(move |State(m): State<Machines>, headers: HeaderMap| async move {
                if !authorised(&headers, token) {
                    return Err(StatusCode::UNAUTHORIZED);
                }
                Ok(axum::Json(Value::Array(m.lock().unwrap().clone())))
            })
            .post(move |State(m): State<Machines>, headers: HeaderMap, axum::Json(mut spec): axum::Json<Value>| async move {
                if !authorised(&headers, token) {
                    return Err(StatusCode::UNAUTHORIZED);
                }
                let mut m = m.lock().unwrap();
                if let Some(existing) = m.iter().find(|x| x["client_token"] == spec["client_token"]) {
                    return Ok(axum::Json(existing.clone()));
                }
                spec["id"] = json!(format!("m-{}", m.len() + 1));
                spec["state"] = json!("running");
                spec["ip"] = json!(format!("10.0.0.{}", m.len() + 1));
                m.push(spec.clone());
                Ok(axum::Json(spec))
            }),
        )
        .route(
            "/inv/machines/{id}",
            get(move |State(m): State<Machines>, headers: HeaderMap, Path(id): Path<String>| async move {
                if !authorised(&headers, token) {
                    return Err(StatusCode::UNAUTHORIZED);
                }
                m.lock().unwrap().iter().find(|x| x["id"] == id).cloned().map(axum::Json).ok_or(StatusCode::NOT_FOUND)
            })
            .delete(move |State(m): State<Machines>, headers: HeaderMap, Path(id): Path<String>| async move {
                if !authorised(&headers, token) {
                    return StatusCode::UNAUTHORIZED;
                }
                let mut m = m.lock().unwrap();
                let before = m.len();
                m.retain(|x| x["id"] != id);
                if m.len() < before { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND }
            }),
        )
        .route(
            "/inv/machines/{id}/stop",
            post(move |State(m): State<Machines>, headers: HeaderMap, Path(id): Path<String>| async move {
                if !authorised(&headers, token) {
                    return StatusCode::UNAUTHORIZED;
                }
                for x in m.lock().unwrap().iter_mut().filter(|x| x["id"] == id) {
                    x["state"] = json!("stopped");
                }
                StatusCode::NO_CONTENT
            }),
        )
        .with_state(machines);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// Waits until the server reports `n` calls of `name` in flight.
async fn wait_for_calls_in_flight(berth: &Berth, name: &str, n: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let v: Value = client()
            .get(format!("{}/api/v1/plugins/{name}", berth.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["calls_in_flight"].as_u64() == Some(n) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "calls in flight: {}",
            v["calls_in_flight"]
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

pub(crate) fn cli(berth: &Berth, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(berth_bin())
        .args(args)
        .env("BERTH_SERVER", &berth.url)
        .env("BERTH_USERNAME", "admin")
        .env("BERTH_PASSWORD", ADMIN_PASSWORD)
        .env("BERTH_CONFIG_DIR", berth.data_dir.join("cli-config"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
