//! Clusters, grants, a physical pool's inventory and quotas through the admin API.

use serde_json::{Value, json};

use super::call;
use crate::replication::api;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_adds_a_pool_grants_it_fills_it_and_sets_a_quota() {
    use reqwest::Method;
    let berth = Berth::start();
    let admin = client();
    api(
        &berth,
        Method::POST,
        "/api/v1/projects",
        Some(json!({"name": "infra"})),
    )
    .await;
    let created = api(
        &berth,
        Method::POST,
        "/api/v1/clusters",
        Some(
            json!({"name": "rack-1", "provider": "static-pool", "labels": {"dc": "one"},
                    "settings": {"ssh_user": "ops"},
                    "credentials": {"ssh_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n"},
                    "projects": ["infra"]}),
        ),
    )
    .await;
    assert_eq!(created["has_credentials"], true, "{created:#}");
    assert_eq!(created["projects"], json!(["infra"]));
    // The credentials are never shown again, in any answer.
    let listed = api(&berth, Method::GET, "/api/v1/clusters", None).await;
    assert!(!listed.to_string().contains("secret"), "{listed}");
    assert_eq!(listed[0]["name"], "rack-1");

    let hosts = api(
        &berth,
        Method::POST,
        "/api/v1/clusters/rack-1/hosts",
        Some(json!([
            {"name": "h1", "address": "10.0.0.1", "cpus": 32, "memory_mib": 131072, "rack": "r1"},
            {"name": "h2", "address": "10.0.0.2", "ssh_port": 2222, "cpus": 8, "memory_mib": 32768,
             "labels": {"gpu": "none"}}
        ])),
    )
    .await;
    assert_eq!(hosts.as_array().unwrap().len(), 2, "{hosts:#}");
    assert_eq!(hosts[0]["ssh_port"], 22);
    assert_eq!(hosts[1]["ssh_port"], 2222);
    assert_eq!(hosts[0]["machine"], Value::Null);

    let quota = api(
        &berth,
        Method::PUT,
        "/api/v1/projects/infra/quota",
        Some(json!({"machines": 7, "cpus": 64})),
    )
    .await;
    assert_eq!(quota["quota"], json!({"machines": 7, "cpus": 64}));
    assert_eq!(
        quota["usage"],
        json!({"machines": 0, "cpus": 0, "memory_mib": 0})
    );

    // Refusals, each with a problem document.
    for (method, path, body, status) in [
        (
            Method::POST,
            "/api/v1/clusters",
            json!({"name": "rack-1", "provider": "static-pool"}),
            409,
        ),
        (
            Method::POST,
            "/api/v1/clusters",
            json!({"name": "aws", "provider": "no-such-plugin"}),
            400,
        ),
        (
            Method::POST,
            "/api/v1/clusters",
            json!({"name": "Bad Name", "provider": "static-pool"}),
            400,
        ),
        (
            Method::POST,
            "/api/v1/clusters",
            json!({"name": "x", "provider": "static-pool", "settings": [1]}),
            400,
        ),
        (
            Method::POST,
            "/api/v1/clusters",
            json!({"name": "y", "provider": "static-pool", "projects": ["nope"]}),
            404,
        ),
        (
            Method::POST,
            "/api/v1/clusters",
            json!({"name": "z", "provider": "static-pool", "typo": 1}),
            400,
        ),
        (
            Method::PUT,
            "/api/v1/clusters/rack-1/projects/nope",
            Value::Null,
            404,
        ),
        (
            Method::DELETE,
            "/api/v1/clusters/rack-1/projects/other",
            Value::Null,
            404,
        ),
        (Method::POST, "/api/v1/clusters/nope/hosts", json!([]), 400),
        (
            Method::POST,
            "/api/v1/clusters/rack-1/hosts",
            json!([{"name": "h/3", "address": "a", "cpus": 1, "memory_mib": 1}]),
            400,
        ),
        (
            Method::PUT,
            "/api/v1/projects/nope/quota",
            json!({"machines": 1}),
            404,
        ),
        (
            Method::PUT,
            "/api/v1/projects/infra/quota",
            json!({"machines": -1}),
            400,
        ),
    ] {
        let body = (!body.is_null()).then_some(body);
        let (got, problem) = call(&admin, &berth, method.clone(), path, body).await;
        assert_eq!(got, status, "{method} {path}: {problem}");
        assert!(problem["detail"].is_string(), "{method} {path}: {problem}");
    }

    // A guest of the project sees its quota, and nothing of the clusters.
    api(
        &berth,
        Method::POST,
        "/api/v1/users",
        Some(json!({"username": "gus", "password": "gus's long password"})),
    )
    .await;
    api(
        &berth,
        Method::POST,
        "/api/v1/projects/infra/members",
        Some(json!({"username": "gus", "role": "guest"})),
    )
    .await;
    let gus = client_as("gus", "gus's long password");
    let (status, seen) = call(
        &gus,
        &berth,
        Method::GET,
        "/api/v1/projects/infra/quota",
        None,
    )
    .await;
    assert_eq!(
        (status, &seen["quota"]["machines"]),
        (200, &json!(7)),
        "{seen}"
    );
    for (method, path) in [
        (Method::GET, "/api/v1/clusters"),
        (Method::GET, "/api/v1/clusters/rack-1"),
        (Method::DELETE, "/api/v1/clusters/rack-1"),
        (Method::GET, "/api/v1/clusters/rack-1/hosts"),
        (Method::PUT, "/api/v1/clusters/rack-1/projects/infra"),
    ] {
        let (status, _) = call(&gus, &berth, method.clone(), path, None).await;
        assert_eq!(status, 403, "{method} {path}");
    }
    let (status, _) = call(
        &gus,
        &berth,
        Method::PUT,
        "/api/v1/projects/infra/quota",
        Some(json!({"machines": 100})),
    )
    .await;
    assert_eq!(status, 403);

    // Changes: disabled, credentials removed; revoked; then removed with its hosts.
    let changed = api(
        &berth,
        Method::PATCH,
        "/api/v1/clusters/rack-1",
        Some(json!({"enabled": false, "credentials": null})),
    )
    .await;
    assert_eq!(
        (
            changed["enabled"].clone(),
            changed["has_credentials"].clone()
        ),
        (json!(false), json!(false))
    );
    let revoked = api(
        &berth,
        Method::DELETE,
        "/api/v1/clusters/rack-1/projects/infra",
        None,
    )
    .await;
    assert_eq!(revoked["projects"], json!([]));
    api(&berth, Method::DELETE, "/api/v1/clusters/rack-1", None).await;
    let (status, _) = call(&admin, &berth, Method::GET, "/api/v1/clusters/rack-1", None).await;
    assert_eq!(status, 404);
    let audit = api(
        &berth,
        Method::GET,
        "/api/v1/audit?action=cluster.create",
        None,
    )
    .await;
    assert!(audit.to_string().contains("rack-1"), "{audit}");
}
