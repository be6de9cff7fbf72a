//! The scheduling rows of the permission matrix, walked cell by cell: every kind of
//! caller against every machine action, on a private project.

use serde_json::{Value, json};

use super::{answering_port, call, create_machine, host, machine_in, pool_for};
use crate::replication::api;
use crate::support::*;

/// What a caller may do with a project's machines: read, operate (online/offline,
/// stop/start), manage (create, plan, place, register, retire).
#[derive(Clone, Copy)]
struct May {
    read: bool,
    operate: bool,
    manage: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_caller_against_every_machine_action() {
    use reqwest::Method;
    let berth = Berth::start();
    let port = answering_port();
    let hosts: Vec<Value> = (0..12)
        .map(|i| host(&format!("h{i}"), port, 2, 2048))
        .collect();
    pool_for(&berth, "vault", "rack", Value::Array(hosts)).await;
    for (user, role) in [
        ("pa", Some("admin")),
        ("pd", Some("developer")),
        ("pg", Some("guest")),
        ("out", None),
    ] {
        api(
            &berth,
            Method::POST,
            "/api/v1/users",
            Some(json!({"username": user, "password": format!("{user}'s long password")})),
        )
        .await;
        if let Some(role) = role {
            api(
                &berth,
                Method::POST,
                "/api/v1/projects/vault/members",
                Some(json!({"username": user, "role": role})),
            )
            .await;
        }
    }
    let robot = |name: &'static str, actions: Value| {
        let berth = &berth;
        async move {
            let made = api(
                berth,
                Method::POST,
                "/api/v1/robots",
                Some(json!({"name": name, "permissions": [{"project": "vault", "actions": actions}]})),
            )
            .await;
            client_as(&format!("robot${name}"), made["secret"].as_str().unwrap())
        }
    };
    let id = create_machine(&berth, "vault", "rack", 1, 1024, None).await;
    machine_in(&berth, &id, "online").await;

    let user = |name: &str| client_as(name, &format!("{name}'s long password"));
    let none = May {
        read: false,
        operate: false,
        manage: false,
    };
    let callers: Vec<(&str, reqwest::Client, May, u16)> = vec![
        (
            "system admin",
            client(),
            May {
                read: true,
                operate: true,
                manage: true,
            },
            0,
        ),
        (
            "project admin",
            user("pa"),
            May {
                read: true,
                operate: true,
                manage: true,
            },
            0,
        ),
        (
            "developer",
            user("pd"),
            May {
                read: true,
                operate: true,
                manage: false,
            },
            403,
        ),
        (
            "guest",
            user("pg"),
            May {
                read: true,
                operate: false,
                manage: false,
            },
            403,
        ),
        ("non-member", user("out"), none, 404),
        ("anonymous", anonymous_client(), none, 404),
        (
            "robot with every machine action",
            robot(
                "ops",
                json!([
                    "pull",
                    "read_machines",
                    "operate_machines",
                    "manage_machines"
                ]),
            )
            .await,
            May {
                read: true,
                operate: true,
                manage: true,
            },
            0,
        ),
        (
            "robot that only pulls",
            robot("pull", json!(["pull"])).await,
            none,
            403,
        ),
    ];
    for (who, http, may, denied) in &callers {
        let actions: Vec<(&str, Method, String, Option<Value>, bool)> = vec![
            (
                "list",
                Method::GET,
                "/api/v1/machines?project=vault".into(),
                None,
                may.read,
            ),
            (
                "show",
                Method::GET,
                format!("/api/v1/machines/{id}"),
                None,
                may.read,
            ),
            (
                "history",
                Method::GET,
                format!("/api/v1/machines/{id}/history"),
                None,
                may.read,
            ),
            (
                "offline",
                Method::POST,
                format!("/api/v1/machines/{id}/offline"),
                Some(json!({"force": true})),
                may.operate,
            ),
            (
                "online",
                Method::POST,
                format!("/api/v1/machines/{id}/online"),
                None,
                may.operate,
            ),
            // Starting a running machine answers it as it is.
            (
                "start",
                Method::POST,
                format!("/api/v1/machines/{id}/start"),
                None,
                may.operate,
            ),
            (
                "create",
                Method::POST,
                "/api/v1/machines".into(),
                Some(
                    json!({"project": "vault", "cluster": "rack", "spec": {"cpus": 1, "memory_mib": 1024}}),
                ),
                may.manage,
            ),
            (
                "plan",
                Method::POST,
                "/api/v1/machines/plan".into(),
                Some(json!({"project": "vault", "count": 1, "cpus": 1, "memory_mib": 1024})),
                may.manage,
            ),
            (
                "place",
                Method::POST,
                "/api/v1/machines/place".into(),
                Some(json!({"project": "vault", "count": 1, "cpus": 1, "memory_mib": 1024})),
                may.manage,
            ),
        ];
        // Anonymous callers are asked to log in; others learn no more than whether they
        // can see the project.
        let refusals = if *who == "anonymous" && *denied == 404 {
            [401, 404]
        } else {
            [*denied, *denied]
        };
        for (action, method, path, body, allowed) in actions {
            let (status, answer) = call(http, &berth, method, &path, body).await;
            if allowed {
                assert!(
                    (200..300).contains(&status),
                    "{who} may {action}: {status} {answer}"
                );
            } else {
                assert!(
                    refusals.contains(&status),
                    "{who} may not {action}: {status} {answer}"
                );
            }
        }
        // Stop: a caller who may operate gets past the permission check to the refusal
        // of a host without power control; the others never learn that much.
        let (status, answer) = call(
            http,
            &berth,
            Method::POST,
            &format!("/api/v1/machines/{id}/stop"),
            Some(json!({})),
        )
        .await;
        if may.operate {
            assert_eq!(status, 409, "{who}: {answer}");
            assert!(
                answer["detail"]
                    .as_str()
                    .unwrap()
                    .contains("no power control"),
                "{who}: {answer}"
            );
        } else {
            assert!(
                refusals.contains(&status),
                "{who} may not stop: {status} {answer}"
            );
        }
    }
    // Retire last: the project admin may, the developer may not.
    let path = format!("/api/v1/machines/{id}/retire");
    let (status, _) = call(&user("pd"), &berth, Method::POST, &path, None).await;
    assert_eq!(status, 403);
    let (status, _) = call(&user("pa"), &berth, Method::POST, &path, None).await;
    assert_eq!(status, 202);
}
