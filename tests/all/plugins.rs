//! The plugin platform end to end: each world through a small plugin, the sandbox against
//! hostile plugins (while the registry keeps serving), refused components, grants and
//! secrets, concurrency with disable/remove in flight, OCI push and load, persistence.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::{Value, json};

use crate::support::{ADMIN_PASSWORD, Berth, berth_bin, client, client_as};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_in_strategy_and_host_init_plugins_answer_through_the_api() {
    let berth = Berth::start();
    let list: Value = client()
        .get(format!("{}/api/v1/plugins", berth.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dual-primary", "star", "sysctl", "tree"]);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|p| p["source"]["type"] == "builtin" && p["state"] == "ready")
    );

    // star: r1 lacks both artifacts, r2 lacks one; the primary sends; the link's cap of 2
    // is below the default of 4.
    let (status, out) = invoke(&client(), &berth.url, "star", "plan", plan_request()).await;
    assert_eq!(status, 200, "{out}");
    let transfers = &out["ok"]["waves"][0]["transfers"];
    let mut got: Vec<String> = transfers
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            format!(
                "{}->{}:{}",
                t["source"].as_str().unwrap(),
                t["target"].as_str().unwrap(),
                t["artifact"].as_str().unwrap()
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            "primary->r1:sha256:aa",
            "primary->r1:sha256:bb",
            "primary->r2:sha256:bb"
        ]
    );
    let limits = out["ok"]["limits"].as_array().unwrap();
    assert!(
        limits.contains(&json!({"source": "primary", "target": "r1", "max-parallel": 2})),
        "{limits:?}"
    );
    assert!(
        limits.contains(&json!({"source": "primary", "target": "r2", "max-parallel": 4})),
        "{limits:?}"
    );

    // A planner error is the plugin's typed answer, not a failure of the call.
    let mut bad = plan_request();
    bad["request"]["targets"] = json!(["nowhere"]);
    let (status, out) = invoke(&client(), &berth.url, "star", "plan", bad).await;
    assert_eq!(status, 200);
    assert!(
        out["error"]["invalid"]
            .as_str()
            .unwrap()
            .contains("nowhere"),
        "{out}"
    );

    // sysctl: parameters, the actions for what differs, and the drift report.
    let (status, out) = invoke(&client(), &berth.url, "sysctl", "parameters", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(out[0]["name"], "values");
    let params = json!([["values", "net.ipv4.ip_forward=1,vm.swappiness=10"]]);
    let input = json!({"facts": facts(&[("net.ipv4.ip_forward", "0"), ("vm.swappiness", "10")]), "params": params});
    let (status, out) = invoke(&client(), &berth.url, "sysctl", "plan", input.clone()).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(
        out["ok"],
        json!([{"sysctl": {"key": "net.ipv4.ip_forward", "value": "1"}}])
    );
    let (_, out) = invoke(&client(), &berth.url, "sysctl", "drift", input).await;
    assert_eq!(
        out["ok"],
        json!([{"subject": "sysctl net.ipv4.ip_forward", "expected": "1", "actual": "0"}])
    );
    let (_, out) = invoke(
        &client(),
        &berth.url,
        "sysctl",
        "plan",
        json!({"facts": facts(&[]), "params": [["bogus", "1"]]}),
    )
    .await;
    assert!(
        out["error"]["invalid-parameter"]
            .as_str()
            .unwrap()
            .contains("unknown parameter bogus"),
        "{out}"
    );

    // A function the world does not have, and malformed input: 400 with the reason.
    let (status, detail) = invoke(&client(), &berth.url, "star", "create", json!({})).await;
    assert_eq!(status, 400);
    assert!(
        detail.as_str().unwrap().contains("no function create"),
        "{detail}"
    );
    let (status, detail) = invoke(
        &client(),
        &berth.url,
        "star",
        "plan",
        json!({"request": {"topology": 7}}),
    )
    .await;
    assert_eq!(status, 400);
    let detail = detail.as_str().unwrap();
    assert!(detail.contains("bad input for plan"), "{detail}");
    assert!(
        detail.contains("request.topology: expected an object"),
        "{detail}"
    );
    // Rust's spelling of a WIT name is not the WIT's: the error names the right one.
    let mut rusty = plan_request();
    rusty["request"]["topology"]["links"][0] =
        json!({"source": "primary", "target": "r1", "bandwidth_mbps": null, "max_parallel": 2});
    let (status, detail) = invoke(&client(), &berth.url, "star", "plan", rusty).await;
    assert_eq!(status, 400);
    assert!(
        detail
            .as_str()
            .unwrap()
            .contains("unknown field \"bandwidth_mbps\"")
            && detail.as_str().unwrap().contains("bandwidth-mbps"),
        "{detail}"
    );
    let (status, detail) = invoke(
        &client(),
        &berth.url,
        "star",
        "plan",
        json!({"topology": {}}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        detail
            .as_str()
            .unwrap()
            .contains("no parameter \"topology\"; its parameters are request"),
        "{detail}"
    );

    // Built-ins cannot be removed, only disabled; a disabled plugin refuses calls.
    let r = client()
        .delete(format!("{}/api/v1/plugins/star", berth.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    patch(&berth, "star", json!({"enabled": false})).await;
    let (status, detail) = invoke(&client(), &berth.url, "star", "plan", plan_request()).await;
    assert_eq!(status, 409);
    assert!(detail.as_str().unwrap().contains("disabled"), "{detail}");
    patch(&berth, "star", json!({"enabled": true})).await;
    assert_eq!(
        invoke(&client(), &berth.url, "star", "plan", plan_request())
            .await
            .0,
        200
    );

    // Only system administrators manage plugins.
    let r = client()
        .post(format!("{}/api/v1/users", berth.url))
        .json(&json!({"username": "dev", "password": "developer password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let dev = client_as("dev", "developer password");
    assert_eq!(
        dev.get(format!("{}/api/v1/plugins", berth.url))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        invoke(&dev, &berth.url, "star", "plan", plan_request())
            .await
            .0,
        403
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plugins_fail_with_the_limit_named_while_the_registry_keeps_serving() {
    let berth = Berth::start();
    load_ok(&berth, "berth-test-hostile").await;
    patch(&berth, "hostile", json!({"limits": {"memory_bytes": 64 * 1024 * 1024, "fuel": 2_000_000_000u64, "wall_time_ms": 3000}})).await;

    // Registry traffic all along: every request must succeed.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let traffic = tokio::spawn({
        let (stop, served, url) = (stop.clone(), served.clone(), berth.url.clone());
        async move {
            let http = client();
            while !stop.load(Ordering::Relaxed) {
                let r = http.get(format!("{url}/v2/_catalog")).send().await.unwrap();
                assert_eq!(r.status(), 200);
                served.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    });

    let cases: &[(&str, &[&str])] = &[
        (
            "loop",
            &[
                "plugin hostile used up its CPU limit",
                "2000000000 units of fuel",
                "berth plugin limits hostile --fuel",
            ],
        ),
        (
            "memory",
            &["plugin hostile tried to grow its memory past its 67108864-byte limit"],
        ),
        ("recursion", &["plugin hostile overflowed its stack"]),
        ("trap", &["plugin hostile trapped", "unreachable"]),
        (
            "panic",
            &[
                "plugin hostile panicked",
                "the hostile plugin panicked on purpose",
            ],
        ),
        // WASI 0.2's exit carries only success or failure: exit(3) arrives as status 1.
        ("exit", &["plugin hostile exited with status 1"]),
        (
            "sleep",
            &["plugin hostile did not finish plan within its wall-time limit of 3000 ms"],
        ),
    ];
    for (behaviour, expected) in cases {
        patch(
            &berth,
            "hostile",
            json!({"config": {"behaviour": behaviour}}),
        )
        .await;
        let (status, detail) =
            invoke(&client(), &berth.url, "hostile", "plan", plan_request()).await;
        assert_eq!(status, 502, "{behaviour}: {detail}");
        for text in *expected {
            assert!(
                detail.as_str().unwrap().contains(text),
                "{behaviour}: {detail} lacks {text:?}"
            );
        }
        // The plugin itself is fine afterwards: a fresh sandbox per call.
        patch(&berth, "hostile", json!({"config": {"behaviour": "ok"}})).await;
        let (status, out) = invoke(&client(), &berth.url, "hostile", "plan", plan_request()).await;
        assert_eq!(status, 200, "after {behaviour}: {out}");
    }
    // Other plugins never noticed.
    assert_eq!(
        invoke(&client(), &berth.url, "star", "plan", plan_request())
            .await
            .0,
        200
    );
    // The statistics count every call: the load's info call, seven failures and seven
    // successes; each spent time in its sandbox, and no less from start to result.
    let shown: Value = client()
        .get(format!("{}/api/v1/plugins/hostile", berth.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let calls = &shown["calls"];
    assert_eq!(calls["completed"], 15, "{shown}");
    assert_eq!(calls["failed"], 7, "{shown}");
    let sandbox = calls["mean_sandbox_us"].as_f64().unwrap();
    let total = calls["mean_total_us"].as_f64().unwrap();
    // The caller has its answer before the sandbox's teardown, so neither bounds the other.
    assert!(sandbox > 0.0 && total > 0.0, "{calls}");
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    assert!(
        served.load(Ordering::Relaxed) > 20,
        "registry requests served: {}",
        served.load(Ordering::Relaxed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_that_are_not_loadable_are_refused_with_the_reason_and_nothing_is_stored() {
    let berth = Berth::start();
    let hostile = std::fs::read(test_plugin("berth-test-hostile")).unwrap();
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "a text file",
            b"#!/bin/sh\necho hi\n".to_vec(),
            vec!["not a WebAssembly file", "magic number"],
        ),
        (
            "a core module",
            b"\0asm\x01\0\0\0".to_vec(),
            vec!["core WebAssembly module, not a component", "wasm32-wasip2"],
        ),
        (
            "a truncated component",
            hostile[..hostile.len() / 2].to_vec(),
            vec!["not a valid WebAssembly component"],
        ),
        (
            "a plugin for another world version",
            std::fs::read(test_plugin("berth-test-future")).unwrap(),
            vec![
                "built for berth:plugin@9.0.0",
                "this host serves berth:plugin@0.1.0, @0.2.0",
            ],
        ),
        (
            "a strategy importing http",
            std::fs::read(test_plugin("berth-test-overreach")).unwrap(),
            vec![
                "imports berth:plugin/http@0.1.0",
                "replication-strategy world does not allow",
            ],
        ),
        (
            "a strategy importing sockets",
            std::fs::read(test_plugin("berth-test-sneaky")).unwrap(),
            vec!["imports wasi:sockets/", "does not allow"],
        ),
    ];
    for (what, bytes, expected) in cases {
        let r = load(&berth, bytes).await;
        assert_eq!(r.status(), 422, "{what}");
        let detail = r.json::<Value>().await.unwrap()["detail"]
            .as_str()
            .unwrap()
            .to_string();
        for text in expected {
            assert!(detail.contains(text), "{what}: {detail:?} lacks {text:?}");
        }
    }
    let r = load(&berth, Vec::new()).await;
    assert_eq!(r.status(), 400);
    let list: Value = client()
        .get(format!("{}/api/v1/plugins", berth.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        list.as_array().unwrap().len(),
        4,
        "only the built-ins: {list}"
    );
    let components = berth.data_dir.join("plugins/components");
    assert_eq!(
        std::fs::read_dir(&components)
            .map(|d| d.count())
            .unwrap_or(0),
        0
    );

    // A second load of the same name needs --replace; a built-in's name is never taken.
    load_ok(&berth, "berth-test-hostile").await;
    let r = load(&berth, hostile.clone()).await;
    assert_eq!(r.status(), 409);
    let r = client()
        .post(format!("{}/api/v1/plugins?replace=true", berth.url))
        .header("content-type", "application/wasm")
        .body(hostile)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

/// A tiny inventory API for the test provider: machines in memory, bearer token checked.
async fn inventory_server(token: &'static str) -> String {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_reaches_only_granted_endpoints_with_only_granted_secrets() {
    let berth = Berth::start();
    let inventory = inventory_server("inventory token value").await;
    load_ok(&berth, "berth-test-inventory").await;
    patch(
        &berth,
        "inventory",
        json!({"config": {"endpoint": format!("{inventory}/inv")}}),
    )
    .await;
    let list = |http: reqwest::Client, url: String| async move {
        invoke(&http, &url, "inventory", "list", json!({})).await
    };

    // No secret granted: the plugin sees the typed refusal and reports it.
    let (status, out) = list(client(), berth.url.clone()).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(
        out["error"]["not-granted"], "secret inventory-token is not granted to this plugin",
        "{out}"
    );
    // Granted, but no value stored yet.
    patch(
        &berth,
        "inventory",
        json!({"grant": {"secrets": ["inventory-token"]}}),
    )
    .await;
    let (_, out) = list(client(), berth.url.clone()).await;
    assert_eq!(
        out["error"]["auth"], "secret inventory-token is granted but has no value",
        "{out}"
    );
    let r = client()
        .put(format!(
            "{}/api/v1/plugin-secrets/inventory-token",
            berth.url
        ))
        .json(&json!({"value": "inventory token value"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    // No endpoint granted: refused by the host before anything leaves it.
    let (_, out) = list(client(), berth.url.clone()).await;
    // A missing grant is `not-granted`, never `auth` (which is for credentials the
    // provider's API refused).
    let refused = out["error"]["not-granted"].as_str().unwrap();
    assert!(
        refused.contains("is not granted to this plugin") && refused.contains("http://127.0.0.1:"),
        "{out}"
    );
    // A grant for another path prefix does not cover /inv.
    let port = inventory.rsplit(':').next().unwrap();
    patch(
        &berth,
        "inventory",
        json!({"grant": {"endpoints": [format!("http://127.0.0.1:{port}/other")]}}),
    )
    .await;
    let (_, out) = list(client(), berth.url.clone()).await;
    assert!(
        out["error"]["not-granted"]
            .as_str()
            .unwrap()
            .contains("not granted"),
        "{out}"
    );
    patch(
        &berth,
        "inventory",
        json!({"grant": {"endpoints": [format!("http://127.0.0.1:{port}/inv")]}}),
    )
    .await;
    let (_, out) = list(client(), berth.url.clone()).await;
    assert_eq!(out, json!({"ok": []}));

    // The whole life of a machine; create is idempotent by client token.
    let create = json!({"spec": {
        "client-token": "tok-1", "name": "web-1", "region": "local", "zone": null,
        "machine-type": "small", "image": "debian-12", "tags": [], "user-data": null
    }});
    let (_, first) = invoke(&client(), &berth.url, "inventory", "create", create.clone()).await;
    let (_, again) = invoke(&client(), &berth.url, "inventory", "create", create).await;
    assert_eq!(first["ok"]["id"], "m-1", "{first}");
    assert_eq!(
        again["ok"]["id"], "m-1",
        "same client token, same machine: {again}"
    );
    let (_, out) = invoke(
        &client(),
        &berth.url,
        "inventory",
        "stop",
        json!({"region": "local", "id": "m-1"}),
    )
    .await;
    assert_eq!(out, json!({"ok": null}));
    let (_, out) = invoke(
        &client(),
        &berth.url,
        "inventory",
        "get",
        json!({"region": "local", "id": "m-1"}),
    )
    .await;
    assert_eq!(out["ok"]["state"], "stopped", "{out}");
    assert_eq!(out["ok"]["addresses"][0]["ip"], "10.0.0.1");
    let (_, out) = invoke(
        &client(),
        &berth.url,
        "inventory",
        "price",
        json!({"region": "local", "machine-type": "small"}),
    )
    .await;
    assert_eq!(
        out["ok"],
        json!({"currency": "USD", "micros-per-hour": 41600})
    );
    let (_, out) = invoke(
        &client(),
        &berth.url,
        "inventory",
        "delete",
        json!({"region": "local", "id": "m-1"}),
    )
    .await;
    assert_eq!(out, json!({"ok": null}));
    let (_, out) = invoke(
        &client(),
        &berth.url,
        "inventory",
        "get",
        json!({"region": "local", "id": "m-1"}),
    )
    .await;
    assert!(out["error"]["not-found"].is_string(), "{out}");

    // Revoking the endpoint cuts it off again; the secret's value never shows in the API.
    patch(
        &berth,
        "inventory",
        json!({"revoke": {"endpoints": [format!("http://127.0.0.1:{port}/inv")]}}),
    )
    .await;
    let (_, out) = list(client(), berth.url.clone()).await;
    assert!(
        out["error"]["not-granted"]
            .as_str()
            .unwrap()
            .contains("not granted"),
        "{out}"
    );
    let secrets: Value = client()
        .get(format!("{}/api/v1/plugin-secrets", berth.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(secrets, json!(["inventory-token"]));
    let detail: Value = client()
        .get(format!("{}/api/v1/plugins/inventory", berth.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!detail.to_string().contains("inventory token value"));
    let at_rest = std::fs::read(berth.data_dir.join("berth.redb")).unwrap();
    assert!(
        !at_rest
            .windows(b"inventory token value".len())
            .any(|w| w == b"inventory token value"),
        "the secret is sealed at rest"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_calls_and_disable_or_remove_while_calls_are_in_flight() {
    let berth = Berth::start();
    load_ok(&berth, "berth-test-hostile").await;
    patch(&berth, "hostile", json!({"config": {"behaviour": "ok"}})).await;
    let calls = (0..100).map(|_| {
        let url = berth.url.clone();
        tokio::spawn(async move {
            invoke(&client(), &url, "hostile", "plan", plan_request())
                .await
                .0
        })
    });
    for call in calls.collect::<Vec<_>>() {
        assert_eq!(call.await.unwrap(), 200);
    }

    // Calls that take a second each; disabling lets them finish and refuses new ones.
    patch(
        &berth,
        "hostile",
        json!({"config": {"behaviour": "sleep", "sleep-ms": "1000"}}),
    )
    .await;
    let in_flight: Vec<_> = (0..8)
        .map(|_| {
            let url = berth.url.clone();
            tokio::spawn(
                async move { invoke(&client(), &url, "hostile", "plan", plan_request()).await },
            )
        })
        .collect();
    wait_for_calls_in_flight(&berth, "hostile", 8).await;
    patch(&berth, "hostile", json!({"enabled": false})).await;
    assert_eq!(
        invoke(&client(), &berth.url, "hostile", "plan", plan_request())
            .await
            .0,
        409
    );
    for call in in_flight {
        let (status, out) = call.await.unwrap();
        assert_eq!(status, 200, "{out}");
    }
    patch(&berth, "hostile", json!({"enabled": true})).await;

    // Removal while calls run: they finish; the plugin is gone afterwards.
    let in_flight: Vec<_> = (0..8)
        .map(|_| {
            let url = berth.url.clone();
            tokio::spawn(
                async move { invoke(&client(), &url, "hostile", "plan", plan_request()).await },
            )
        })
        .collect();
    wait_for_calls_in_flight(&berth, "hostile", 8).await;
    let r = client()
        .delete(format!("{}/api/v1/plugins/hostile", berth.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    for call in in_flight {
        let (status, out) = call.await.unwrap();
        assert_eq!(status, 200, "{out}");
    }
    assert_eq!(
        invoke(&client(), &berth.url, "hostile", "plan", plan_request())
            .await
            .0,
        404
    );
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

#[test]
fn the_cli_pushes_a_plugin_to_the_registry_loads_it_by_reference_and_it_survives_a_restart() {
    let mut berth = Berth::start();
    let file = test_plugin("berth-test-hostile");
    let reference = format!("{}/alpha/plugins/hostile:1.0", berth.addr);
    let (ok, pinned, err) = cli(
        &berth,
        &["plugin", "push", file.to_str().unwrap(), &reference],
    );
    assert!(ok, "{err}");
    let pinned = pinned.trim().to_string();
    assert!(
        pinned.starts_with(&format!("{}/alpha/plugins/hostile@sha256:", berth.addr)),
        "{pinned}"
    );

    // The artifact is a CNCF Wasm artifact in berth's own registry.
    let manifest: Value = tokio::runtime::Runtime::new().unwrap().block_on(async {
        client()
            .get(berth.v2("alpha/plugins/hostile/manifests/1.0"))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    assert_eq!(manifest["layers"][0]["mediaType"], "application/wasm");

    let (ok, out, err) = cli(&berth, &["plugin", "load", &reference]);
    assert!(ok, "{err}");
    assert!(
        out.contains("hostile") && err.contains(&pinned),
        "{out}\n{err}"
    );
    let (ok, out, _) = cli(
        &berth,
        &["plugin", "inspect", "hostile", "--output", "json"],
    );
    assert!(ok);
    let detail: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        detail["source"],
        json!({"type": "oci", "reference": pinned})
    );
    assert!(
        detail["imports"]
            .as_array()
            .unwrap()
            .contains(&json!("berth:plugin/host@0.2.0"))
    );
    assert!(
        detail["exports"]
            .as_array()
            .unwrap()
            .contains(&json!("berth:plugin/strategy@0.2.0"))
    );

    // The contract the server serves.
    let (ok, out, _) = cli(&berth, &["plugin", "worlds"]);
    assert!(
        ok && out.contains("berth:plugin@0.1.0")
            && out.contains("berth:plugin@0.2.0")
            && out.contains("replication-strategy")
            && out.contains("host,http,secrets"),
        "{out}"
    );

    // Settings through the CLI.
    assert!(
        cli(
            &berth,
            &["plugin", "limits", "hostile", "--fuel", "123456789"]
        )
        .0
    );
    assert!(cli(&berth, &["plugin", "config", "hostile", "behaviour=ok"]).0);
    let (ok, out, err) = cli(
        &berth,
        &[
            "plugin",
            "call",
            "hostile",
            "plan",
            "--input",
            &plan_request().to_string(),
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("\"ok\""), "{out}");
    // Loading by a digest that does not match is refused before anything is sent.
    let wrong = format!(
        "{}/alpha/plugins/hostile@sha256:{}",
        berth.addr,
        "0".repeat(64)
    );
    let (ok, _, err) = cli(&berth, &["plugin", "load", &wrong]);
    assert!(!ok && err.contains("cannot pull"), "{err}");

    // After a restart the plugin is there, with its settings, from the compiled cache.
    berth.restart();
    let (ok, out, _) = cli(
        &berth,
        &["plugin", "inspect", "hostile", "--output", "json"],
    );
    assert!(ok, "{out}");
    let detail: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(detail["limits"]["fuel"], 123456789);
    assert_eq!(detail["config"]["behaviour"], "ok");
    assert_eq!(detail["state"], "ready");
    let compiled = std::fs::read_dir(berth.data_dir.join("plugins/compiled"))
        .unwrap()
        .count();
    assert!(compiled >= 3, "compiled artifacts cached: {compiled}");
    let (ok, _, err) = cli(
        &berth,
        &[
            "plugin",
            "call",
            "hostile",
            "plan",
            "--input",
            &plan_request().to_string(),
        ],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&berth, &["plugin", "remove", "hostile"]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&berth, &["plugin", "remove", "star"]);
    assert!(!ok && err.contains("built in"), "{err}");
}

#[test]
fn the_examples_walkthrough_builds_a_plugin_from_cargo_new_and_loads_it() {
    let berth = Berth::start();
    let work = tempfile::tempdir().unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/plugin-walkthrough/walkthrough.sh"
    );
    let out = std::process::Command::new("sh")
        .arg(script)
        .env("WORK", work.path())
        .env("BERTH", berth_bin())
        .env("BERTH_SERVER", &berth.url)
        .env("BERTH_USERNAME", "admin")
        .env("BERTH_PASSWORD", ADMIN_PASSWORD)
        .env("BERTH_CONFIG_DIR", work.path().join("cli-config"))
        // The host's own build settings must not leak into the guest's.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("nearest-first") && stdout.contains("ready"),
        "{stdout}"
    );
    let plan: Value = serde_json::from_str(&stdout[stdout.find('{').unwrap()..]).unwrap();
    let waves = plan["ok"]["waves"].as_array().unwrap();
    assert_eq!(waves.len(), 2, "{plan}");
    assert_eq!(
        waves[0]["transfers"],
        json!([{"artifact": "sha256:0c0ffee", "source": "main-1", "target": "east-1"}])
    );
    assert_eq!(waves[1]["transfers"].as_array().unwrap().len(), 2);
    let size = std::fs::metadata(
        work.path()
            .join("nearest-first/target/wasm32-wasip2/release/nearest_first.wasm"),
    )
    .unwrap()
    .len();
    assert!(
        size < 200_000,
        "the release profile keeps plugins small: {size} bytes"
    );
}
