//! Resource scheduling through the admin API, against a real berth: clusters with sealed
//! credentials, grants, a physical pool's inventory and quotas, and who may do what.

use serde_json::{Value, json};

use crate::replication::api;
use crate::support::*;

async fn call(
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

/// Waits until machine `id` is in `state` (as the admin sees it); returns it.
async fn machine_in(berth: &Berth, id: &str, state: &str) -> Value {
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
async fn the_cluster_machine_and_quota_commands_drive_the_api() {
    let berth = Berth::start();
    let answering = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = answering.local_addr().unwrap().port();
    std::thread::spawn(move || for _ in answering.incoming() {});
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let run = |args: &[&str]| {
        let (ok, out, err) = crate::cli::berth_cli(dir, &[], None, args);
        assert!(ok, "berth {}: {err}", args.join(" "));
        out
    };
    let (ok, _, err) = crate::cli::berth_cli(
        dir,
        &[],
        Some(&format!("{ADMIN_PASSWORD}\n")),
        &["login", &berth.url, "-u", "admin", "--password-stdin"],
    );
    assert!(ok, "{err}");
    run(&["project", "create", "infra"]);
    let credentials = dir.join("credentials-of-rack.json");
    std::fs::write(&credentials, r#"{"ipmi_password": "hunter2"}"#).unwrap();
    let out = run(&[
        "cluster",
        "add",
        "rack",
        "--provider",
        "static-pool",
        "--project",
        "infra",
        "--label",
        "dc=one",
        "--credentials-file",
        credentials.to_str().unwrap(),
    ]);
    assert!(out.contains("rack") && out.contains("static-pool"), "{out}");
    assert!(!out.contains("hunter2"), "{out}");
    let hosts = dir.join("hosts.json");
    std::fs::write(
        &hosts,
        format!(r#"[{{"name": "h1", "address": "127.0.0.1", "ssh_port": {port}, "cpus": 4, "memory_mib": 8192}}]"#),
    )
    .unwrap();
    let out = run(&[
        "cluster",
        "hosts",
        "rack",
        "--file",
        hosts.to_str().unwrap(),
    ]);
    assert!(out.contains("h1"), "{out}");
    let out = run(&[
        "quota",
        "set",
        "infra",
        "--machines",
        "2",
        "--output",
        "json",
    ]);
    let quota: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(quota["quota"], json!({"machines": 2}));

    let out = run(&[
        "machine",
        "create",
        "--project",
        "infra",
        "--cluster",
        "rack",
        "--cpus",
        "2",
        "--memory-mib",
        "4096",
        "--client-token",
        "cli-1",
        "--output",
        "json",
    ]);
    let created: Value = serde_json::from_str(&out).unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let shown: Value =
            serde_json::from_str(&run(&["machine", "show", &id, "--output", "json"])).unwrap();
        if shown["state"] == "online" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{shown:#}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let out = run(&["machine", "list", "--project", "infra"]);
    assert!(out.contains(&id) && out.contains("online"), "{out}");
    let out = run(&[
        "machine",
        "offline",
        &id,
        "--force",
        "--reason",
        "maintenance",
    ]);
    assert!(out.contains("offline"), "{out}");
    run(&["machine", "retire", &id]);
    let out = run(&["machine", "history", &id]);
    for state in ["requested", "online", "offline", "retiring"] {
        assert!(out.contains(state), "{state}: {out}");
    }
    assert!(out.contains("maintenance"), "{out}");
    let out = run(&["quota", "show", "infra"]);
    assert!(out.contains("infra"), "{out}");
    run(&["cluster", "update", "rack", "--disable"]);
    let out = run(&["cluster", "show", "rack", "--output", "json"]);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["enabled"],
        false
    );
    let (ok, _, err) = crate::cli::berth_cli(dir, &[], None, &["cluster", "remove", "nope"]);
    assert!(!ok && err.contains("404"), "{err}");
}

/// A host's SSH port that the test opens and closes.
struct Port {
    port: u16,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Port {
    async fn open() -> Port {
        let mut port = Port {
            port: 0,
            task: None,
        };
        port.listen().await;
        port
    }

    async fn listen(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        self.port = listener.local_addr().unwrap().port();
        self.task = Some(tokio::spawn(async move {
            loop {
                let _ = listener.accept().await;
            }
        }));
    }

    fn close(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_that_stops_answering_goes_offline_and_comes_back_unless_most_of_its_cluster_fails()
 {
    use reqwest::Method;
    let berth = Berth::start_configured(
        &[],
        &[
            ("BERTH_SCHEDULING__HEALTH_INTERVAL_SECS", "1"),
            ("BERTH_SCHEDULING__UNHEALTHY_AFTER_SECS", "1"),
            ("BERTH_SCHEDULING__MAX_UNHEALTHY_PERCENT", "40"),
        ],
    );
    let mut ports = [Port::open().await, Port::open().await, Port::open().await];
    api(
        &berth,
        Method::POST,
        "/api/v1/projects",
        Some(json!({"name": "infra"})),
    )
    .await;
    api(
        &berth,
        Method::POST,
        "/api/v1/clusters",
        Some(json!({"name": "rack", "provider": "static-pool", "projects": ["infra"]})),
    )
    .await;
    let hosts: Vec<Value> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| json!({"name": format!("h{i}"), "address": "127.0.0.1", "ssh_port": p.port, "cpus": 4, "memory_mib": 4096}))
        .collect();
    api(
        &berth,
        Method::POST,
        "/api/v1/clusters/rack/hosts",
        Some(Value::Array(hosts)),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let created = api(
            &berth,
            Method::POST,
            "/api/v1/machines",
            Some(json!({"project": "infra", "cluster": "rack", "spec": {"cpus": 4, "memory_mib": 4096},
                        "client_token": format!("m{i}")})),
        )
        .await;
        ids.push(created["id"].as_str().unwrap().to_string());
    }
    let mut by_host = std::collections::HashMap::new();
    for id in &ids {
        let m = machine_in(&berth, id, "online").await;
        by_host.insert(m["provider_id"].as_str().unwrap().to_string(), id.clone());
    }

    // One of three stops answering: offline, with the reason; back once it answers.
    ports[0].close();
    let down = machine_in(&berth, &by_host["h0"], "offline").await;
    assert!(
        down["reason"].as_str().unwrap().starts_with("unhealthy:"),
        "{down:#}"
    );
    assert_eq!(down["state"], "offline");
    ports[0].listen().await;
    machine_in(&berth, &by_host["h0"], "online").await;

    // An operator's offline is not health's to undo.
    let path = format!("/api/v1/machines/{}/offline", by_host["h1"]);
    api(&berth, Method::POST, &path, Some(json!({"force": true}))).await;

    // Both machines still online fail at once: 100% of the cluster's online machines,
    // over the 40% guard, so nothing is taken offline.
    ports[0].close();
    ports[2].close();
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    for host in ["h0", "h2"] {
        let m = api(
            &berth,
            Method::GET,
            &format!("/api/v1/machines/{}", by_host[host]),
            None,
        )
        .await;
        assert_eq!(m["state"], "online", "{host}: {m:#}");
    }
    let m = api(
        &berth,
        Method::GET,
        &format!("/api/v1/machines/{}", by_host["h1"]),
        None,
    )
    .await;
    assert_eq!(m["state"], "offline", "{m:#}");
}
