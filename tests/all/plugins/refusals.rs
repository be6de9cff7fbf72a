//! What the sandbox refuses: hostile plugins, unloadable components, ungranted endpoints
//! and secrets.

use super::*;

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
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|p| p["source"]["type"] == "builtin"),
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
        invoke(
            &http,
            &url,
            "inventory",
            "list",
            json!({"cluster": cluster(), "request": {"tags": [], "page-size": 100}}),
        )
        .await
    };

    // No secret granted: the plugin sees the typed refusal and reports it.
    let (status, out) = list(client(), berth.url.clone()).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["error"]["kind"], "not-granted", "{out}");
    assert_eq!(
        out["error"]["message"], "secret inventory-token is not granted to this plugin",
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
    assert_eq!(out["error"]["kind"], "auth", "{out}");
    assert_eq!(
        out["error"]["message"], "secret inventory-token is granted but has no value",
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
    assert_eq!(out["error"]["kind"], "not-granted", "{out}");
    let refused = out["error"]["message"].as_str().unwrap();
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
        out["error"]["message"]
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
    assert_eq!(
        out,
        json!({"ok": {"machines": [], "next-page-token": null}})
    );

    // The whole life of a machine; create is idempotent by client token.
    let create = json!({"cluster": cluster(), "spec": {
        "client-token": "tok-1", "name": "web-1", "region": "local", "zone": null,
        "machine-type": "small", "image": "debian-12", "security-groups": [], "disks": [],
        "tags": [], "user-data": null
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
        json!({"cluster": cluster(), "region": "local", "id": "m-1"}),
    )
    .await;
    assert_eq!(out, json!({"ok": null}));
    let (_, out) = invoke(
        &client(),
        &berth.url,
        "inventory",
        "get",
        json!({"cluster": cluster(), "region": "local", "id": "m-1"}),
    )
    .await;
    assert_eq!(out["ok"]["state"], "stopped", "{out}");
    assert_eq!(out["ok"]["addresses"][0]["ip"], "10.0.0.1");
    let (_, out) = invoke(
        &client(),
        &berth.url,
        "inventory",
        "price",
        json!({"cluster": cluster(), "region": "local", "machine-type": "small", "purchase-option": "on-demand"}),
    )
    .await;
    assert_eq!(
        out["ok"],
        json!({"currency": "USD", "micros-per-hour": 41600, "purchase-option": "on-demand",
               "granularity-secs": 1, "minimum-secs": 60, "effective-from": null})
    );
    let (_, out) = invoke(
        &client(),
        &berth.url,
        "inventory",
        "delete",
        json!({"cluster": cluster(), "region": "local", "id": "m-1"}),
    )
    .await;
    assert_eq!(out, json!({"ok": null}));
    let (_, out) = invoke(
        &client(),
        &berth.url,
        "inventory",
        "get",
        json!({"cluster": cluster(), "region": "local", "id": "m-1"}),
    )
    .await;
    assert_eq!(out["error"]["kind"], "not-found", "{out}");

    // Revoking the endpoint cuts it off again; the secret's value never shows in the API.
    patch(
        &berth,
        "inventory",
        json!({"revoke": {"endpoints": [format!("http://127.0.0.1:{port}/inv")]}}),
    )
    .await;
    let (_, out) = list(client(), berth.url.clone()).await;
    assert!(
        out["error"]["message"]
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

/// The cluster a provider call names, in the WIT's JSON: the plugin's own configuration and
/// grants apply, as the cluster brings no endpoint or credentials.
fn cluster() -> Value {
    json!({"name": "test", "regions": ["local"], "settings": [], "credentials": []})
}
