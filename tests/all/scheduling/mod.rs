//! Resource scheduling against real berth processes: clusters, pools and quotas
//! (`clusters.rs`), machines from create to retire (`machines.rs`), the permission matrix
//! cell by cell (`matrix.rs`), health (`health.rs`),
//! the webhook (`webhooks.rs`), the command line (`cli.rs`), provider plugins on a test
//! inventory API (`providers.rs`), AWS EC2 on moto (`ec2.rs`), OpenStack and Alibaba Cloud
//! ECS on their emulators (`openstack.rs`, `aliyun_ecs.rs`), power control through
//! Redfish (`power.rs`), the cloud emulators proven by their vendors' SDKs
//! (`emulators.rs`), and one project on all four kinds of cluster at once
//! (`four_providers.rs`), stop and start of cloud machines (`stop_start.rs`), and what
//! machines cost (`costs.rs`).

mod aliyun_ecs;
mod cli;
mod clusters;
mod cost_crash;
mod costs;
mod ec2;
mod emulators;
mod four_providers;
mod health;
mod machines;
mod matrix;
mod openstack;
mod power;
mod providers;
mod stop_start;
mod webhooks;

use serde_json::{Value, json};

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

/// berth with quick leases and timeouts for provider machines.
pub(crate) fn quick_berth() -> Berth {
    Berth::start_configured(
        &[],
        &[
            ("BERTH_SCHEDULING__JOB_LEASE_SECS", "2"),
            ("BERTH_SCHEDULING__INITIALIZE_TIMEOUT_SECS", "60"),
        ],
    )
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

/// A port on 127.0.0.1 that accepts connections for as long as the test runs: a pool
/// host's SSH port that answers.
pub(crate) fn answering_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || for _ in listener.incoming() {});
    port
}

/// Project `project`, the physical pool `pool` granted to it, and `hosts` in the pool.
pub(crate) async fn pool_for(berth: &Berth, project: &str, pool: &str, hosts: Value) {
    use reqwest::Method;
    api(
        berth,
        Method::POST,
        "/api/v1/projects",
        Some(json!({"name": project})),
    )
    .await;
    api(
        berth,
        Method::POST,
        "/api/v1/clusters",
        Some(json!({"name": pool, "provider": "static-pool", "projects": [project]})),
    )
    .await;
    api(
        berth,
        Method::POST,
        &format!("/api/v1/clusters/{pool}/hosts"),
        Some(hosts),
    )
    .await;
}

/// A host of `port` on 127.0.0.1 named `name`, with `cpus` and `memory_mib`.
pub(crate) fn host(name: &str, port: u16, cpus: u32, memory_mib: u64) -> Value {
    json!({"name": name, "address": "127.0.0.1", "ssh_port": port, "cpus": cpus, "memory_mib": memory_mib})
}

/// Creates a machine of `cpus` and `memory_mib` as the admin; returns its id.
pub(crate) async fn create_machine(
    berth: &Berth,
    project: &str,
    pool: &str,
    cpus: u32,
    memory_mib: u64,
    token: Option<&str>,
) -> String {
    let created = api(
        berth,
        reqwest::Method::POST,
        "/api/v1/machines",
        Some(json!({"project": project, "cluster": pool, "spec": {"cpus": cpus, "memory_mib": memory_mib},
                    "client_token": token})),
    )
    .await;
    created["id"].as_str().unwrap().to_string()
}

/// A host's SSH port that the test opens and closes.
pub(crate) struct Port {
    pub(crate) port: u16,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Port {
    pub(crate) async fn open() -> Port {
        let mut port = Port {
            port: 0,
            task: None,
        };
        port.listen().await;
        port
    }

    pub(crate) async fn listen(&mut self) {
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

    pub(crate) fn close(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The states machine `id` went through, oldest first, from its history.
pub(crate) async fn moves(berth: &Berth, id: &str) -> Vec<String> {
    let history = api(
        berth,
        reqwest::Method::GET,
        &format!("/api/v1/machines/{id}/history"),
        None,
    )
    .await;
    history
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["to"].as_str().unwrap().to_owned())
        .collect()
}

/// What reconciliation must make of one machine's instance deleted behind berth's back
/// (`ids[0]`'s) and of `stray`, made behind it with this cluster's tag: the machine is
/// retired as deleted out of band, `stray` is the cluster's one orphan, and the rest of
/// `ids` are still online.
pub(crate) async fn reconciled_behind_the_back(
    berth: &Berth,
    cluster: &str,
    ids: &[String],
    stray: &str,
) {
    use reqwest::Method;
    let retired = machine_in(berth, &ids[0], "retired").await;
    assert!(
        retired["reason"].as_str().unwrap().contains("out of band"),
        "{retired:#}"
    );
    let orphans = api(
        berth,
        Method::GET,
        &format!("/api/v1/clusters/{cluster}/orphans"),
        None,
    )
    .await;
    let found: Vec<&str> = orphans
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["provider_id"].as_str().unwrap())
        .collect();
    assert_eq!(found, [stray], "{orphans:#}");
    for id in &ids[1..] {
        let machine = api(berth, Method::GET, &format!("/api/v1/machines/{id}"), None).await;
        assert_eq!(machine["state"], "online", "{machine:#}");
    }
}
