//! Machines on OpenStack through the built-in `openstack` plugin, against the OpenStack
//! emulator (`tests/emulators/openstack_cloud.py`, proven by openstacksdk in
//! `emulators.rs`): Keystone v3 sign-in from the catalog, Nova servers from create to
//! retire, idempotency without a client token, ERROR and quota refusals, a token that
//! expires mid-operation, and wrong credentials.

use reqwest::Method;
use serde_json::{Value, json};

use super::{machine_in, quick_berth as berth};
use crate::replication::api;
use crate::support::*;

/// The emulator's Debian image.
const DEBIAN: &str = "9b2b0ef6-0f4e-4c43-9d33-7e1f8a6b0001";

/// An OpenStack cluster `name` for project team, signing in as `berth` with `password`.
async fn openstack_cluster(berth: &Berth, cloud: &OpenStackCloud, name: &str, password: &str) {
    let (status, out) = super::call(
        &client(),
        berth,
        Method::POST,
        "/api/v1/clusters",
        Some(json!({
            "name": name, "provider": "openstack", "regions": ["RegionOne"],
            "endpoint": format!("{}/identity/v3", cloud.url),
            "credentials": {"password": password},
            "settings": {"username": "berth", "project": "team",
                         "service-endpoints": format!("{}/", cloud.url),
                         "prices": {"m1.small": "0.0200"}},
            "projects": ["team"], "probe": {"kind": "none"},
        })),
    )
    .await;
    assert_eq!(status, 201, "{out}");
}

async fn create(berth: &Berth, cluster: &str, token: Option<&str>) -> (u16, Value) {
    super::call(
        &client(),
        berth,
        Method::POST,
        "/api/v1/machines",
        Some(
            json!({"project": "team", "cluster": cluster, "client_token": token,
                    "spec": {"machine_type": "m1.small", "image": DEBIAN}}),
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openstack_server_goes_online_is_made_once_per_token_and_retires() {
    let cloud = OpenStackCloud::start();
    let berth = berth();
    openstack_cluster(&berth, &cloud, "os", "berth-secret").await;

    let (status, created) = create(&berth, "os", Some("deploy-1")).await;
    assert_eq!(status, 202, "{created}");
    // The flavor's size, as Nova describes it, which the quota counts.
    assert_eq!(created["spec"]["cpus"], 1, "{created:#}");
    assert_eq!(created["spec"]["memory_mib"], 2048);
    let id = created["id"].as_str().unwrap().to_string();
    let online = machine_in(&berth, &id, "online").await;
    let server = online["provider_id"].as_str().unwrap().to_string();
    assert!(
        !online["addresses"].as_array().unwrap().is_empty(),
        "{online:#}"
    );

    // Nova holds exactly one server for it: named after the machine, carrying its id.
    let servers = cloud.servers().await;
    assert_eq!(servers.len(), 1, "{servers:?}");
    assert_eq!(servers[0]["id"], server.as_str());
    assert_eq!(servers[0]["name"], id.as_str());
    assert_eq!(servers[0]["metadata"]["berth:machine-id"], id.as_str());
    assert_eq!(servers[0]["metadata"]["berth:project"], "team");
    assert_eq!(servers[0]["status"], "ACTIVE");

    // The same token again is the same machine, and Nova is not asked again.
    let creates = cloud
        .seen("POST (?:/(regiontwo))?/compute/v2\\.1/servers")
        .await;
    let (status, again) = create(&berth, "os", Some("deploy-1")).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], id.as_str());
    assert_eq!(
        cloud
            .seen("POST (?:/(regiontwo))?/compute/v2\\.1/servers")
            .await,
        creates
    );

    // The token runs out as the retire's delete uses it: the plugin signs in again once,
    // and the retire goes through.
    let sign_ins = cloud.seen("POST /identity/v3/auth/tokens").await;
    cloud.faults(json!({"expire_next_token_use": 1})).await;
    api(
        &berth,
        Method::POST,
        &format!("/api/v1/machines/{id}/retire"),
        Some(json!({})),
    )
    .await;
    machine_in(&berth, &id, "retired").await;
    assert!(cloud.servers().await.is_empty());
    // Two sign-ins for the delete (the second after the expiry), one at least for the
    // reads until the server is gone.
    assert!(cloud.seen("POST /identity/v3/auth/tokens").await >= sign_ins + 3);

    // A server deleted behind berth's back (another client) retires all the same: a
    // delete of what is gone is done.
    let (_, second) = create(&berth, "os", None).await;
    let second = second["id"].as_str().unwrap().to_string();
    let online = machine_in(&berth, &second, "online").await;
    let server = online["provider_id"].as_str().unwrap();
    let (status, _) = cloud
        .nova(Method::DELETE, &format!("/servers/{server}"), None)
        .await;
    assert_eq!(status, 204);
    api(
        &berth,
        Method::POST,
        &format!("/api/v1/machines/{second}/retire"),
        Some(json!({})),
    )
    .await;
    machine_in(&berth, &second, "retired").await;
    assert!(cloud.servers().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_quota_and_wrong_passwords_fail_the_create_and_release_the_quota() {
    let cloud = OpenStackCloud::start();
    let berth = berth();
    openstack_cluster(&berth, &cloud, "os", "berth-secret").await;
    api(
        &berth,
        Method::PUT,
        "/api/v1/projects/team/quota",
        Some(json!({"machines": 1})),
    )
    .await;

    // Nova could not place it: ERROR is a failed create with Nova's fault, not a machine
    // (Terraform once took it as created), and nothing is left in the cloud.
    cloud.faults(json!({"error_creates": 1})).await;
    let (_, first) = create(&berth, "os", None).await;
    let failed = machine_in(&berth, first["id"].as_str().unwrap(), "failed").await;
    let reason = failed["reason"].as_str().unwrap();
    assert!(reason.contains("No valid host"), "{reason}");
    let quota = api(&berth, Method::GET, "/api/v1/projects/team/quota", None).await;
    assert_eq!(quota["usage"]["machines"], 0, "{quota:#}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !cloud.servers().await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the ERROR server was not deleted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // Over the cloud's own instance quota: a quota failure, at once.
    cloud.faults(json!({"quota_instances": 0})).await;
    let (_, second) = create(&berth, "os", None).await;
    let failed = machine_in(&berth, second["id"].as_str().unwrap(), "failed").await;
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.contains("quota") && reason.contains("Quota exceeded"),
        "{reason}"
    );
    cloud.faults(json!({"quota_instances": 100})).await;

    // A wrong password: Keystone refuses it; the create is refused as an auth failure
    // after one sign-in, not a retry storm.
    openstack_cluster(&berth, &cloud, "os-wrong", "not the password").await;
    let sign_ins = cloud.seen("POST /identity/v3/auth/tokens").await;
    let (status, out) = create(&berth, "os-wrong", None).await;
    assert_eq!(status, 502, "{out}");
    assert!(out["detail"].as_str().unwrap().contains("auth:"), "{out}");
    assert_eq!(
        cloud.seen("POST /identity/v3/auth/tokens").await,
        sign_ins + 1
    );

    // The catalog's services are reached only where the administrator granted them: a
    // cluster granting Keystone alone cannot reach Nova, whatever the catalog says.
    let (status, out) = super::call(
        &client(),
        &berth,
        Method::POST,
        "/api/v1/clusters",
        Some(json!({
            "name": "os-ungranted", "provider": "openstack", "regions": ["RegionOne"],
            "endpoint": format!("{}/identity/v3", cloud.url),
            "credentials": {"password": "berth-secret"},
            "settings": {"username": "berth", "project": "team"},
            "projects": ["team"], "probe": {"kind": "none"},
        })),
    )
    .await;
    assert_eq!(status, 201, "{out}");
    let (status, out) = create(&berth, "os-ungranted", None).await;
    assert_eq!(status, 502, "{out}");
    assert!(
        out["detail"].as_str().unwrap().contains("not-granted"),
        "{out}"
    );
    // Nor is a service endpoint that is no URL taken.
    let (status, out) = super::call(
        &client(),
        &berth,
        Method::PATCH,
        "/api/v1/clusters/os-ungranted",
        Some(json!({"settings": {"service-endpoints": "ftp://nova.example/"}})),
    )
    .await;
    assert_eq!(status, 400, "{out}");

    // And with all of that behind it, the quota's one machine is still there to take.
    let (_, third) = create(&berth, "os", None).await;
    machine_in(&berth, third["id"].as_str().unwrap(), "online").await;
}

/// Right after a create Nova may not know the server yet (a cell lagging behind the API),
/// and a busy cloud throttles: berth waits the first out and backs off the second, makes
/// the server once, and the machine goes online.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_unknown_at_first_and_a_throttled_cloud_still_go_online_once() {
    const CREATES: &str = "POST (?:/(regiontwo))?/compute/v2\\.1/servers";
    const READS: &str = "GET (?:/(regiontwo))?/compute/v2\\.1/servers/([0-9a-f-]{36})";
    let cloud = OpenStackCloud::start();
    let berth = berth();
    openstack_cluster(&berth, &cloud, "os", "berth-secret").await;
    cloud
        .faults(json!({"throttle": 1, "not_found_reads": 2}))
        .await;

    let (status, created) = create(&berth, "os", Some("deploy-2")).await;
    assert_eq!(status, 202, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let online = machine_in(&berth, &id, "online").await;
    assert!(
        !online["addresses"].as_array().unwrap().is_empty(),
        "{online:#}"
    );
    assert_eq!(cloud.seen(CREATES).await, 1, "one server, however it went");
    assert_eq!(cloud.servers().await.len(), 1);
    // Two reads answered 404, and a third found it running.
    assert!(cloud.seen(READS).await >= 3, "{}", cloud.seen(READS).await);
}

/// berth dies between Nova's answer to a create and its own record of it: after the
/// restart the server is found by its name and metadata (Nova has no client token), not
/// made again, and the machine goes online with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_the_nova_create_and_its_record_leaves_one_server() {
    const CREATES: &str = "POST (?:/(regiontwo))?/compute/v2\\.1/servers";
    let cloud = OpenStackCloud::start();
    let mut berth = Berth::start_configured(
        &[],
        &[
            ("BERTH_SCHEDULING__JOB_LEASE_SECS", "2"),
            ("BERTH_FAULT_CRASH_AFTER_PROVIDER_CREATE", "1"),
        ],
    );
    openstack_cluster(&berth, &cloud, "os", "berth-secret").await;
    let (_, created) = create(&berth, "os", None).await;
    let id = created["id"].as_str().unwrap().to_string();
    berth.wait_for_exit(std::time::Duration::from_secs(30));
    let servers = cloud.servers().await;
    assert_eq!(servers.len(), 1, "{servers:?}");
    assert_eq!(servers[0]["name"], id.as_str());

    berth.set_env("BERTH_FAULT_CRASH_AFTER_PROVIDER_CREATE", None);
    berth.start_again();
    let online = machine_in(&berth, &id, "online").await;
    let servers = cloud.servers().await;
    assert_eq!(servers.len(), 1, "no second server: {servers:?}");
    assert_eq!(online["provider_id"], servers[0]["id"]);
    assert_eq!(cloud.seen(CREATES).await, 1);
}

/// Reconciliation reads Nova's servers page by page (`marker`/`limit`): a server deleted
/// behind berth's back retires its machine, and one made behind its back for this cluster
/// is an orphan, however many pages it takes to find them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_pages_through_nova_and_finds_what_changed_behind_its_back() {
    let cloud = OpenStackCloud::start();
    let berth = Berth::start_configured(
        &[],
        &[
            ("BERTH_SCHEDULING__JOB_LEASE_SECS", "2"),
            ("BERTH_SCHEDULING__RECONCILE_INTERVAL_SECS", "1"),
            // Six servers and an orphan take two pages.
            ("BERTH_SCHEDULING__RECONCILE_PAGE_SIZE", "5"),
        ],
    );
    openstack_cluster(&berth, &cloud, "os", "berth-secret").await;
    let mut ids = Vec::new();
    for _ in 0..6 {
        let (_, created) = create(&berth, "os", None).await;
        ids.push(created["id"].as_str().unwrap().to_string());
    }
    let mut servers = Vec::new();
    for id in &ids {
        let online = machine_in(&berth, id, "online").await;
        servers.push(online["provider_id"].as_str().unwrap().to_string());
    }
    let pages_before = cloud
        .seen("GET (?:/(regiontwo))?/compute/v2\\.1/servers(/detail)?")
        .await;

    let (status, _) = cloud
        .nova(Method::DELETE, &format!("/servers/{}", servers[0]), None)
        .await;
    assert_eq!(status, 204);
    let (status, made) = cloud
        .nova(
            Method::POST,
            "/servers",
            Some(
                json!({"server": {"name": "stray", "flavorRef": "2", "imageRef": DEBIAN,
                                   "networks": "auto", "metadata": {"berth:cluster": "os"}}}),
            ),
        )
        .await;
    assert_eq!(status, 202, "{made}");
    let stray = made["server"]["id"].as_str().unwrap().to_string();

    super::reconciled_behind_the_back(&berth, "os", &ids, &stray).await;
    // Listings of more than one page were read (two pages a round at least).
    let pages = cloud
        .seen("GET (?:/(regiontwo))?/compute/v2\\.1/servers(/detail)?")
        .await;
    assert!(pages >= pages_before + 2, "{pages_before} then {pages}");
}
