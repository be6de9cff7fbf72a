//! Machines through provider plugins, on the test inventory API: a cluster's endpoint and
//! credentials reach its plugin for calls about that cluster only (a plugin with no grants
//! of its own serves it), wrong credentials fail a create with the provider's typed error,
//! and a plugin built for `berth:plugin@0.1.0` still serves a cluster end to end.

use reqwest::Method;
use serde_json::{Value, json};

use super::machine_in;
use crate::plugins::{inventory_server, invoke, load_ok, patch};
use crate::replication::api;
use crate::support::*;

/// The inventory API's machines, as its own client reads them.
async fn inventory_machines(inventory: &str, token: &str) -> Vec<Value> {
    client()
        .get(format!("{inventory}/inv/machines"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json::<Vec<Value>>()
        .await
        .unwrap()
}

fn has_tag(machine: &Value, key: &str, value: &str) -> bool {
    machine["tags"]
        .as_array()
        .is_some_and(|tags| tags.contains(&json!([key, value])))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clusters_endpoint_and_credentials_reach_its_provider_only_for_its_calls() {
    let berth = Berth::start();
    let inventory = inventory_server("the right token").await;
    // No grant, no configuration: everything the plugin reaches comes with the cluster.
    load_ok(&berth, "berth-test-inventory").await;
    for (name, token) in [("inv", "the right token"), ("inv-wrong", "a wrong token")] {
        let (status, out) = super::call(
            &client(),
            &berth,
            Method::POST,
            "/api/v1/clusters",
            Some(json!({
                "name": name, "provider": "inventory", "regions": ["local"],
                "endpoint": format!("{inventory}/inv"), "credentials": {"token": token},
                "projects": ["team"], "probe": {"kind": "none"},
            })),
        )
        .await;
        assert_eq!(status, 201, "{out}");
        assert_eq!(out["has_credentials"], true);
        assert!(out.get("credentials").is_none(), "{out}");
    }

    // The machine type's size is the provider's, not the caller's.
    let created = api(
        &berth,
        Method::POST,
        "/api/v1/machines",
        Some(json!({"project": "team", "cluster": "inv",
                    "spec": {"machine_type": "small", "image": "debian-12"}})),
    )
    .await;
    assert_eq!(created["spec"]["cpus"], 2, "{created}");
    assert_eq!(created["spec"]["memory_mib"], 4096);
    let id = created["id"].as_str().unwrap().to_string();
    let online = machine_in(&berth, &id, "online").await;
    assert_eq!(online["provider_id"], "m-1", "{online:#}");
    assert_eq!(online["addresses"], json!(["10.0.0.1"]));
    let at_provider = inventory_machines(&inventory, "the right token").await;
    assert_eq!(at_provider.len(), 1);
    assert!(
        has_tag(&at_provider[0], "berth:machine-id", &id),
        "{at_provider:?}"
    );
    assert!(has_tag(&at_provider[0], "berth:project", "team"));
    assert_eq!(at_provider[0]["client_token"], id.as_str());

    // A type the provider does not offer is refused before anything is recorded.
    let (status, out) = super::call(
        &client(),
        &berth,
        Method::POST,
        "/api/v1/machines",
        Some(json!({"project": "team", "cluster": "inv",
                    "spec": {"machine_type": "huge", "image": "debian-12"}})),
    )
    .await;
    assert_eq!(status, 400, "{out}");
    assert!(out["detail"].as_str().unwrap().contains("small"), "{out}");

    // Credentials the provider refuses: the create fails with the typed reason, once.
    let wrong = api(
        &berth,
        Method::POST,
        "/api/v1/machines",
        Some(json!({"project": "team", "cluster": "inv-wrong",
                    "spec": {"machine_type": "small", "image": "debian-12", "cpus": 2, "memory_mib": 4096}})),
    )
    .await;
    let failed = machine_in(&berth, wrong["id"].as_str().unwrap(), "failed").await;
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("auth: HTTP 401"),
        "{failed:#}"
    );

    // Outside a call about the cluster the plugin reaches nothing: naming the endpoint
    // in a hand-made context grants nothing.
    let (status, out) = invoke(
        &client(),
        &berth.url,
        "inventory",
        "list",
        json!({
            "cluster": {"name": "inv", "endpoint": format!("{inventory}/inv"), "regions": [],
                        "settings": [], "credentials": ["token"]},
            "request": {"tags": [], "page-size": 10},
        }),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["error"]["kind"], "not-granted", "{out}");

    // Retired: gone at the provider too.
    api(
        &berth,
        Method::POST,
        &format!("/api/v1/machines/{id}/retire"),
        Some(json!({})),
    )
    .await;
    machine_in(&berth, &id, "retired").await;
    assert!(
        inventory_machines(&inventory, "the right token")
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_built_for_0_1_0_still_serves_a_cluster() {
    let berth = Berth::start();
    let inventory = inventory_server("legacy token").await;
    let loaded = load_ok(&berth, "berth-test-legacy-provider").await;
    assert_eq!(loaded["world_version"], "0.1.0", "{loaded:#}");
    // 0.1.0 knows no cluster context: its endpoint is its configuration, and the
    // cluster's credential is handed to it under the secret name it asks for.
    patch(
        &berth,
        "legacy-provider",
        json!({"config": {"endpoint": format!("{inventory}/inv")}}),
    )
    .await;
    api(
        &berth,
        Method::POST,
        "/api/v1/clusters",
        Some(json!({
            "name": "old", "provider": "legacy-provider", "regions": ["local"],
            "endpoint": format!("{inventory}/inv"),
            "credentials": {"inventory-token": "legacy token"},
            "projects": ["team"], "probe": {"kind": "none"},
        })),
    )
    .await;
    let created = api(
        &berth,
        Method::POST,
        "/api/v1/machines",
        Some(json!({"project": "team", "cluster": "old",
                    "spec": {"machine_type": "small", "image": "debian-12"}})),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_string();
    let online = machine_in(&berth, &id, "online").await;
    assert_eq!(online["provider_id"], "m-1", "{online:#}");
    let at_provider = inventory_machines(&inventory, "legacy token").await;
    assert!(
        has_tag(&at_provider[0], "berth:machine-id", &id),
        "{at_provider:?}"
    );

    // What 0.1.0 cannot take is refused, not dropped.
    let subnet = api(
        &berth,
        Method::POST,
        "/api/v1/machines",
        Some(json!({"project": "team", "cluster": "old",
                    "spec": {"machine_type": "small", "image": "debian-12", "subnet": "s-1"}})),
    )
    .await;
    let failed = machine_in(&berth, subnet["id"].as_str().unwrap(), "failed").await;
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.contains("unsupported") && reason.contains("subnet"),
        "{reason}"
    );

    api(
        &berth,
        Method::POST,
        &format!("/api/v1/machines/{id}/retire"),
        Some(json!({})),
    )
    .await;
    machine_in(&berth, &id, "retired").await;
    assert!(
        inventory_machines(&inventory, "legacy token")
            .await
            .is_empty()
    );
}
