//! Calling plugins through the API: the built-ins, and a hundred calls at once while
//! plugins are disabled and removed.

use super::*;

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
    assert_eq!(
        names,
        [
            "aliyun-ecs",
            "aws-ec2",
            "dual-primary",
            "openstack",
            "redfish",
            "star",
            "sysctl",
            "tree"
        ]
    );
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
