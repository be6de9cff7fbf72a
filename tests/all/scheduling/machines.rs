//! Machines on a physical pool: create, online, offline, drain, retire, history, and who
//! may do which.

use serde_json::{Value, json};

use super::{answering_port, call, host, machine_in, pool_for};
use crate::replication::api;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_gets_a_pool_host_online_takes_it_offline_and_retires_it() {
    use reqwest::Method;
    let berth = Berth::start_configured(
        &[],
        &[
            ("BERTH_SCHEDULING__DRAIN_SECS", "1"),
            ("BERTH_SCHEDULING__INITIALIZE_TIMEOUT_SECS", "3"),
        ],
    );
    // The hosts' SSH ports: one answers, one is closed.
    let answering = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open_port = answering.local_addr().unwrap().port();
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    tokio::spawn(async move {
        loop {
            let _ = answering.accept().await;
        }
    });
    api(
        &berth,
        Method::POST,
        "/api/v1/projects",
        Some(json!({"name": "infra"})),
    )
    .await;
    for (user, role) in [("ada", "admin"), ("dev", "developer"), ("gus", "guest")] {
        api(
            &berth,
            Method::POST,
            "/api/v1/users",
            Some(json!({"username": user, "password": format!("{user}'s long password")})),
        )
        .await;
        api(
            &berth,
            Method::POST,
            "/api/v1/projects/infra/members",
            Some(json!({"username": user, "role": role})),
        )
        .await;
    }
    let as_user = |user: &str| client_as(user, &format!("{user}'s long password"));
    api(
        &berth,
        Method::POST,
        "/api/v1/clusters",
        Some(json!({"name": "rack", "provider": "static-pool", "projects": ["infra"]})),
    )
    .await;
    api(
        &berth,
        Method::POST,
        "/api/v1/clusters/rack/hosts",
        Some(json!([
            {"name": "up", "address": "127.0.0.1", "ssh_port": open_port, "cpus": 8, "memory_mib": 16384},
            {"name": "down", "address": "127.0.0.1", "ssh_port": closed_port, "cpus": 64, "memory_mib": 262144}
        ])),
    )
    .await;
    api(
        &berth,
        Method::PUT,
        "/api/v1/projects/infra/quota",
        Some(json!({"machines": 1})),
    )
    .await;
    let ask = json!({"project": "infra", "cluster": "rack", "spec": {"cpus": 4, "memory_mib": 8192},
                     "client_token": "first"});

    // Guests and developers may not create; the project admin may.
    for user in ["gus", "dev"] {
        let (status, _) = call(
            &as_user(user),
            &berth,
            Method::POST,
            "/api/v1/machines",
            Some(ask.clone()),
        )
        .await;
        assert_eq!(status, 403, "{user}");
    }
    let ada = as_user("ada");
    let (status, created) = call(
        &ada,
        &berth,
        Method::POST,
        "/api/v1/machines",
        Some(ask.clone()),
    )
    .await;
    assert_eq!(status, 202, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let (status, again) = call(
        &ada,
        &berth,
        Method::POST,
        "/api/v1/machines",
        Some(ask.clone()),
    )
    .await;
    assert_eq!(
        (status, again["id"].as_str()),
        (200, Some(id.as_str())),
        "{again}"
    );
    let mut other = ask.clone();
    other["client_token"] = json!("second");
    let (status, refused) = call(
        &ada,
        &berth,
        Method::POST,
        "/api/v1/machines",
        Some(other.clone()),
    )
    .await;
    assert_eq!(status, 409, "the quota of one machine: {refused}");

    // The smallest host that fits, and online once its SSH port answers.
    let online = machine_in(&berth, &id, "online").await;
    assert_eq!(online["provider_id"], "up");
    assert_eq!(online["addresses"], json!(["127.0.0.1"]));
    let (status, seen) = call(
        &as_user("gus"),
        &berth,
        Method::GET,
        &format!("/api/v1/machines/{id}"),
        None,
    )
    .await;
    assert_eq!((status, &seen["state"]), (200, &json!("online")));
    let (status, listed) = call(
        &as_user("gus"),
        &berth,
        Method::GET,
        "/api/v1/machines?project=infra",
        None,
    )
    .await;
    assert_eq!((status, listed.as_array().map(Vec::len)), (200, Some(1)));

    // Robot accounts: as granted.
    for (name, actions, status) in [
        ("watcher", json!(["pull", "read_machines"]), 200),
        ("puller", json!(["pull"]), 403),
    ] {
        let robot = api(
            &berth,
            Method::POST,
            "/api/v1/robots",
            Some(json!({"name": name, "permissions": [{"project": "infra", "actions": actions}]})),
        )
        .await;
        let as_robot = client_as(&format!("robot${name}"), robot["secret"].as_str().unwrap());
        let (got, body) = call(
            &as_robot,
            &berth,
            Method::GET,
            "/api/v1/machines?project=infra",
            None,
        )
        .await;
        assert_eq!(got, status, "{name}: {body}");
    }

    // Developers take it offline (force) and back; a drain ends drained.
    let dev = as_user("dev");
    let path = |action: &str| format!("/api/v1/machines/{id}/{action}");
    let (status, _) = call(&as_user("gus"), &berth, Method::POST, &path("online"), None).await;
    assert_eq!(status, 403);
    let (status, off) = call(
        &dev,
        &berth,
        Method::POST,
        &path("offline"),
        Some(json!({"force": true, "reason": "kernel update"})),
    )
    .await;
    assert_eq!((status, &off["state"]), (200, &json!("offline")), "{off}");
    let (status, on) = call(&dev, &berth, Method::POST, &path("online"), None).await;
    assert_eq!((status, &on["state"]), (200, &json!("online")), "{on}");
    let (status, draining) = call(
        &dev,
        &berth,
        Method::POST,
        &path("offline"),
        Some(json!({})),
    )
    .await;
    assert_eq!((status, &draining["state"]), (200, &json!("draining")));
    machine_in(&berth, &id, "drained").await;
    let (status, _) = call(&dev, &berth, Method::POST, &path("retire"), None).await;
    assert_eq!(status, 403);
    let (status, _) = call(&ada, &berth, Method::POST, &path("retire"), None).await;
    assert_eq!(status, 202);
    machine_in(&berth, &id, "retired").await;
    let (status, _) = call(&ada, &berth, Method::POST, &path("retire"), None).await;
    assert_eq!(
        status, 202,
        "retiring a retired machine again is not an error"
    );
    let hosts = api(&berth, Method::GET, "/api/v1/clusters/rack/hosts", None).await;
    let up = hosts
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "up")
        .unwrap();
    assert_eq!(
        (&up["machine"], &up["needs_init"]),
        (&Value::Null, &json!(true)),
        "{hosts:#}"
    );

    let history = api(&berth, Method::GET, &path("history"), None).await;
    let moves: Vec<(&str, &str)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["to"].as_str().unwrap(), t["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        moves,
        [
            ("requested", "ada"),
            ("provisioning", "berth"),
            ("initializing", "berth"),
            ("online", "berth"),
            ("offline", "dev"),
            ("online", "dev"),
            ("draining", "dev"),
            ("drained", "berth"),
            ("retiring", "ada"),
            ("retired", "berth")
        ]
    );
    assert_eq!(history[4]["reason"], "kernel update");
    // Every move is audited: berth's own too.
    let audit = api(
        &berth,
        Method::GET,
        &format!("/api/v1/audit?action=machine.transition&resource={id}"),
        None,
    )
    .await;
    let details: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "berth")
        .filter_map(|e| e["detail"].as_str())
        .collect();
    for state in [
        "provisioning",
        "initializing",
        "online",
        "drained",
        "retired",
    ] {
        assert!(
            details.iter().any(|d| d.starts_with(state)),
            "{state} not audited: {audit:#}"
        );
    }

    // A host that never answers: the create fails with the reason, the host is free
    // again and the quota's share given back.
    let mut big = other.clone();
    big["spec"] = json!({"cpus": 32, "memory_mib": 65536});
    let (status, created) = call(&ada, &berth, Method::POST, "/api/v1/machines", Some(big)).await;
    assert_eq!(status, 202, "{created}");
    let failed = machine_in(&berth, created["id"].as_str().unwrap(), "failed").await;
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("did not answer"),
        "{failed:#}"
    );
    let hosts = api(&berth, Method::GET, "/api/v1/clusters/rack/hosts", None).await;
    assert!(
        hosts
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["machine"].is_null()),
        "{hosts:#}"
    );
    let quota = api(&berth, Method::GET, "/api/v1/projects/infra/quota", None).await;
    assert_eq!(quota["usage"]["machines"], 0, "{quota:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_already_runs_is_registered_as_it_is() {
    use reqwest::Method;
    let berth = Berth::start();
    let port = answering_port();
    let mut db7 = host("db-7", port, 48, 393216);
    db7["zone"] = json!("dc2");
    pool_for(&berth, "ops", "legacy", json!([db7])).await;
    let admin = client();
    let register =
        json!({"project": "ops", "cluster": "legacy", "host": "db-7", "client_token": "db-7"});
    let (status, machine) = call(
        &admin,
        &berth,
        Method::POST,
        "/api/v1/machines/register",
        Some(register.clone()),
    )
    .await;
    assert_eq!(status, 202, "{machine}");
    let id = machine["id"].as_str().unwrap().to_string();
    let online = machine_in(&berth, &id, "online").await;
    assert_eq!(online["provider_id"], "db-7");
    assert_eq!(online["spec"]["cpus"], 48);
    assert_eq!(online["spec"]["zone"], "dc2");
    // Again with its token: the same machine; with another token: the host is taken.
    let (status, again) = call(
        &admin,
        &berth,
        Method::POST,
        "/api/v1/machines/register",
        Some(register.clone()),
    )
    .await;
    assert_eq!((status, again["id"].as_str()), (200, Some(id.as_str())));
    let mut other = register.clone();
    other["client_token"] = json!("another");
    let (status, refused) = call(
        &admin,
        &berth,
        Method::POST,
        "/api/v1/machines/register",
        Some(other),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["detail"].as_str().unwrap().contains("already"),
        "{refused}"
    );
    let history = api(
        &berth,
        Method::GET,
        &format!("/api/v1/machines/{id}/history"),
        None,
    )
    .await;
    assert_eq!(history[1]["reason"], "allocated host db-7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_in_flight_when_berth_is_killed_resumes_where_it_was() {
    use reqwest::Method;
    let mut berth =
        Berth::start_configured(&[], &[("BERTH_SCHEDULING__INITIALIZE_TIMEOUT_SECS", "120")]);
    // The host does not answer yet: the create waits in `initializing`.
    let mut port = super::Port::open().await;
    port.close();
    pool_for(
        &berth,
        "infra",
        "rack",
        json!([
            host("h1", port.port, 4, 4096),
            host("h2", port.port, 4, 4096)
        ]),
    )
    .await;
    let id = super::create_machine(&berth, "infra", "rack", 2, 2048, Some("resume")).await;
    machine_in(&berth, &id, "initializing").await;
    berth.restart(); // kill -9, then the same data directory again
    port.listen().await;
    let online = machine_in(&berth, &id, "online").await;
    assert_eq!(online["provider_id"], "h1");
    // Resumed, not redone: one allocation, each move once, the other host still free.
    let moves = super::moves(&berth, &id).await;
    assert_eq!(
        moves,
        ["requested", "provisioning", "initializing", "online"]
    );
    // Killed again at once: the create's end is recorded lazily (nothing durable follows
    // it here), so the job most likely runs again; it finds the machine online and ends,
    // moving nothing.
    berth.restart();
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(super::moves(&berth, &id).await, moves);
    machine_in(&berth, &id, "online").await;
    let hosts = api(&berth, Method::GET, "/api/v1/clusters/rack/hosts", None).await;
    let taken: Vec<&str> = hosts
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| !h["machine"].is_null())
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(taken, ["h1"]);
    // The same token after the restart is still the same machine.
    let (status, again) = call(
        &client(),
        &berth,
        Method::POST,
        "/api/v1/machines",
        Some(
            json!({"project": "infra", "cluster": "rack", "spec": {"cpus": 2, "memory_mib": 2048},
                    "client_token": "resume"}),
        ),
    )
    .await;
    assert_eq!((status, again["id"].as_str()), (200, Some(id.as_str())));
}
