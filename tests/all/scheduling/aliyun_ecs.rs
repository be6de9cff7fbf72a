//! Machines on Alibaba Cloud ECS through the built-in `aliyun-ecs` plugin, against the ECS
//! emulator (`tests/emulators/aliyun_ecs.py`, proven by Alibaba Cloud's SDK in
//! `emulators.rs`), which checks every ACS3 signature: instances from create to retire
//! (a running one released with `Force`), `ClientToken` idempotency, no stock, quota,
//! throttling and NotFound-after-create, wrong secrets, tampered requests and a skewed
//! clock, a crash between `RunInstances` and berth's record, prices from `DescribePrice`
//! or the cluster's sheet, and reconciliation paging through `DescribeInstances`.

use reqwest::Method;
use serde_json::{Value, json};

use super::{machine_in, quick_berth as berth};
use crate::replication::api;
use crate::support::*;

const DEBIAN: &str = "debian_12_6_x64_20G_alibase_20240823.vhd";
const ACCESS_KEY_ID: &str = "LTAI5tBerthTeam";
const SECRET: &str = "berth-ecs-secret";

/// An ECS cluster `name` for project team at `endpoint`, signing with `secret`, with
/// `settings` over the defaults (a vSwitch in each of two zones, a security group).
async fn ecs_cluster(berth: &Berth, name: &str, endpoint: &str, secret: &str, settings: Value) {
    let mut all = json!({
        "vswitch": {"cn-hangzhou-h": "vsw-hz-h", "cn-hangzhou-i": "vsw-hz-i"},
        "security-group": "sg-hz-web", "image-owners": "system,self",
    });
    for (key, value) in settings.as_object().unwrap() {
        all[key] = value.clone();
    }
    let (status, out) = super::call(
        &client(),
        berth,
        Method::POST,
        "/api/v1/clusters",
        Some(json!({
            "name": name, "provider": "aliyun-ecs", "regions": ["cn-hangzhou"],
            "endpoint": endpoint,
            "credentials": {"access-key-id": ACCESS_KEY_ID, "access-key-secret": secret},
            "settings": all, "projects": ["team"], "probe": {"kind": "none"},
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
                    "spec": {"machine_type": "ecs.g7.large", "image": DEBIAN}}),
        ),
    )
    .await
}

/// Every request the emulator has seen, whatever its action.
async fn requests(cloud: &EcsCloud) -> u64 {
    let mut total = 0;
    for action in [
        "DescribeRegions",
        "DescribeZones",
        "DescribeInstanceTypes",
        "DescribeImages",
        "DescribePrice",
        "RunInstances",
        "DescribeInstances",
        "StartInstance",
        "StopInstance",
        "DeleteInstance",
    ] {
        total += cloud.seen(action).await;
    }
    total
}

async fn retire(berth: &Berth, id: &str) {
    api(
        berth,
        Method::POST,
        &format!("/api/v1/machines/{id}/retire"),
        Some(json!({})),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ecs_instance_goes_online_once_per_token_and_a_running_one_is_released() {
    let cloud = EcsCloud::start();
    let berth = berth();
    ecs_cluster(&berth, "ecs", &cloud.url, SECRET, json!({})).await;

    let (status, created) = create(&berth, "ecs", Some("deploy-1")).await;
    assert_eq!(status, 202, "{created}");
    // The type's size, as DescribeInstanceTypes tells it (8 GiB), which the quota counts.
    assert_eq!(created["spec"]["cpus"], 2, "{created:#}");
    assert_eq!(created["spec"]["memory_mib"], 8192);
    let id = created["id"].as_str().unwrap().to_string();
    let online = machine_in(&berth, &id, "online").await;
    let instance = online["provider_id"].as_str().unwrap().to_string();
    assert!(
        !online["addresses"].as_array().unwrap().is_empty(),
        "{online:#}"
    );
    // The first zone of the cluster's vSwitches.
    assert_eq!(online["zone"], "cn-hangzhou-h", "{online:#}");

    // ECS holds one instance for it, named and tagged after it, running.
    let instances = cloud.instances().await;
    assert_eq!(instances.len(), 1, "{instances:?}");
    let held = &instances[0];
    assert_eq!(held["InstanceId"], instance.as_str());
    assert_eq!(held["InstanceName"], id.as_str());
    assert_eq!(held["Status"], "Running");
    assert_eq!(
        held["SecurityGroupIds"]["SecurityGroupId"],
        json!(["sg-hz-web"])
    );
    let tags: std::collections::BTreeMap<&str, &str> = held["Tags"]["Tag"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["TagKey"].as_str().unwrap(),
                t["TagValue"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(tags["berth:machine-id"], id.as_str());
    assert_eq!(tags["berth:project"], "team");

    // The same token again is the same machine, and ECS is not asked again.
    let (status, again) = create(&berth, "ecs", Some("deploy-1")).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], id.as_str());
    assert_eq!(cloud.seen("RunInstances").await, 1);

    // Retired while running: ECS releases a running instance only when forced, and the
    // plugin forces it.
    retire(&berth, &id).await;
    machine_in(&berth, &id, "retired").await;
    assert!(cloud.instances().await.is_empty());

    // An instance released behind berth's back (the console) retires all the same: a
    // delete of what is gone is done.
    let (_, second) = create(&berth, "ecs", None).await;
    let second = second["id"].as_str().unwrap().to_string();
    let online = machine_in(&berth, &second, "online").await;
    cloud
        .release_behind_the_back(online["provider_id"].as_str().unwrap())
        .await;
    let deletes = cloud.seen("DeleteInstance").await;
    retire(&berth, &second).await;
    machine_in(&berth, &second, "retired").await;
    assert!(cloud.seen("DeleteInstance").await > deletes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stock_quota_throttling_and_an_instance_unknown_at_first_keep_the_quota_right() {
    let cloud = EcsCloud::start();
    let berth = berth();
    ecs_cluster(&berth, "ecs", &cloud.url, SECRET, json!({})).await;
    api(
        &berth,
        Method::PUT,
        "/api/v1/projects/team/quota",
        Some(json!({"machines": 1})),
    )
    .await;

    // No stock: failed with ECS's reason, not retried, nothing left at ECS, and the
    // quota's one machine is free again.
    cloud.faults(json!({"no_stock": 1})).await;
    let (_, first) = create(&berth, "ecs", None).await;
    let failed = machine_in(&berth, first["id"].as_str().unwrap(), "failed").await;
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.contains("capacity") && reason.contains("OperationDenied.NoStock"),
        "{reason}"
    );
    assert_eq!(cloud.seen("RunInstances").await, 1);
    assert!(cloud.instances().await.is_empty());
    let quota = api(&berth, Method::GET, "/api/v1/projects/team/quota", None).await;
    assert_eq!(quota["usage"]["machines"], 0, "{quota:#}");

    // Over the account's own instance quota: a quota failure, at once.
    cloud.faults(json!({"quota_instances": 0})).await;
    let (_, second) = create(&berth, "ecs", None).await;
    let failed = machine_in(&berth, second["id"].as_str().unwrap(), "failed").await;
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.contains("quota") && reason.contains("QuotaExceed.ElasticQuota"),
        "{reason}"
    );
    cloud.faults(json!({"quota_instances": 100})).await;

    // Throttled, then not found right after the create (a read that lags behind the
    // write): berth backs off the first, waits out the second, makes the instance once,
    // and the machine goes online.
    let runs = cloud.seen("RunInstances").await;
    cloud
        .faults(json!({"throttle": 1, "not_found_reads": 2}))
        .await;
    let (status, third) = create(&berth, "ecs", Some("deploy-3")).await;
    assert_eq!(status, 202, "{third}");
    let online = machine_in(&berth, third["id"].as_str().unwrap(), "online").await;
    assert!(
        !online["addresses"].as_array().unwrap().is_empty(),
        "{online:#}"
    );
    assert_eq!(
        cloud.instances().await.len(),
        1,
        "one instance, however it went"
    );
    // The throttled RunInstances and its retry (same token): two asks at most, one
    // instance (a background read may take the throttle instead).
    let asked = cloud.seen("RunInstances").await - runs;
    assert!((1..=2).contains(&asked), "{asked}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_a_tampered_request_and_a_skewed_clock_are_refused_once() {
    let cloud = EcsCloud::start();
    let berth = berth();
    let refused = |out: &Value| out["detail"].as_str().unwrap_or_default().to_string();

    // A wrong secret: ECS refuses the signature; the create is refused as an auth failure
    // after one request, not a retry storm.
    ecs_cluster(&berth, "ecs-wrong", &cloud.url, "not-the-secret", json!({})).await;
    let before = requests(&cloud).await;
    let (status, out) = create(&berth, "ecs-wrong", None).await;
    assert_eq!(status, 502, "{out}");
    let detail = refused(&out);
    assert!(
        detail.contains("auth:") && detail.contains("SignatureDoesNotMatch"),
        "{detail}"
    );
    assert_eq!(requests(&cloud).await, before + 1, "one refused request");

    // A request changed on its way (the region in its query), after berth signed it.
    let tampering = TamperingProxy::start(&cloud.address, "cn-hangzhou", "cn-shanghai").await;
    ecs_cluster(
        &berth,
        "ecs-tampered",
        &format!("http://{}", tampering.addr),
        SECRET,
        json!({}),
    )
    .await;
    let before = requests(&cloud).await;
    let (status, out) = create(&berth, "ecs-tampered", None).await;
    assert_eq!(status, 502, "{out}");
    let detail = refused(&out);
    assert!(
        detail.contains("auth:") && detail.contains("SignatureDoesNotMatch"),
        "{detail}"
    );
    // DescribeRegions names no region and goes through untouched; DescribeZones, the
    // first request that does, is refused, and nothing is tried again.
    assert_eq!(requests(&cloud).await, before + 2);
    assert!(detail.contains("DescribeZones"), "{detail}");

    // berth's clock 20 minutes from ECS's: refused, saying what to fix.
    cloud.faults(json!({"clock_offset_secs": 1200})).await;
    ecs_cluster(&berth, "ecs-skewed", &cloud.url, SECRET, json!({})).await;
    let before = requests(&cloud).await;
    let (status, out) = create(&berth, "ecs-skewed", None).await;
    assert_eq!(status, 502, "{out}");
    let detail = refused(&out);
    assert!(
        detail.contains("auth:")
            && detail.contains("InvalidTimeStamp.Expired")
            && detail.contains("clock"),
        "{detail}"
    );
    assert_eq!(requests(&cloud).await, before + 1);

    // A region ECS does not offer: said plainly, with the ones it does.
    cloud.faults(json!({"clock_offset_secs": 0})).await;
    let (status, out) = super::call(
        &client(),
        &berth,
        Method::POST,
        "/api/v1/clusters",
        Some(json!({
            "name": "ecs-nowhere", "provider": "aliyun-ecs", "regions": ["cn-nowhere"],
            "endpoint": cloud.url,
            "credentials": {"access-key-id": ACCESS_KEY_ID, "access-key-secret": SECRET},
            "settings": {"vswitch": "vsw-hz-h"}, "projects": ["team"], "probe": {"kind": "none"},
        })),
    )
    .await;
    assert_eq!(status, 201, "{out}");
    let (status, out) = create(&berth, "ecs-nowhere", None).await;
    assert_eq!(status, 502, "{out}");
    let detail = refused(&out);
    assert!(
        detail.contains("no region cn-nowhere") && detail.contains("cn-hangzhou"),
        "{detail}"
    );

    // Within ECS's 15 minutes, the same cluster works.
    cloud.faults(json!({"clock_offset_secs": 600})).await;
    let (status, out) = create(&berth, "ecs-skewed", None).await;
    assert_eq!(status, 202, "{out}");
    machine_in(&berth, out["id"].as_str().unwrap(), "online").await;
}

/// berth dies between ECS's answer to `RunInstances` and its own record of it: after the
/// restart the instance is found by its tag (and the retried `RunInstances`, with the
/// same client token, answers the same instance), and the machine goes online with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_run_instances_and_its_record_leaves_one_instance() {
    let cloud = EcsCloud::start();
    let mut berth = Berth::start_configured(
        &[],
        &[
            ("BERTH_SCHEDULING__JOB_LEASE_SECS", "2"),
            ("BERTH_FAULT_CRASH_AFTER_PROVIDER_CREATE", "1"),
        ],
    );
    ecs_cluster(&berth, "ecs", &cloud.url, SECRET, json!({})).await;
    let (_, created) = create(&berth, "ecs", None).await;
    let id = created["id"].as_str().unwrap().to_string();
    berth.wait_for_exit(std::time::Duration::from_secs(30));
    assert_eq!(cloud.instances().await.len(), 1);

    berth.set_env("BERTH_FAULT_CRASH_AFTER_PROVIDER_CREATE", None);
    berth.start_again();
    let online = machine_in(&berth, &id, "online").await;
    let instances = cloud.instances().await;
    assert_eq!(instances.len(), 1, "no second instance: {instances:?}");
    assert_eq!(online["provider_id"], instances[0]["InstanceId"]);
    assert_eq!(
        super::moves(&berth, &id).await,
        ["requested", "provisioning", "initializing", "online"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prices_come_from_describe_price_and_reconciliation_pages_through_ecs() {
    let cloud = EcsCloud::start();
    let berth = Berth::start_configured(
        &[],
        &[
            ("BERTH_SCHEDULING__JOB_LEASE_SECS", "2"),
            ("BERTH_SCHEDULING__RECONCILE_INTERVAL_SECS", "1"),
            // Six machines and an orphan take two pages of DescribeInstances.
            ("BERTH_SCHEDULING__RECONCILE_PAGE_SIZE", "5"),
        ],
    );
    ecs_cluster(&berth, "ecs", &cloud.url, SECRET, json!({})).await;
    let request = |clusters: Value| {
        json!({"project": "team", "count": 2, "cpus": 2, "memory_mib": 2048,
               "image": DEBIAN, "constraints": {"clusters": clusters, "spread": "zones"}})
    };

    // ECS prices every type (DescribePrice, in CNY): the cheapest that fits is the burstable
    // one, exactly as ECS wrote its price, one in each zone.
    let plan = api(
        &berth,
        Method::POST,
        "/api/v1/machines/plan",
        Some(request(json!(["ecs"]))),
    )
    .await;
    let placements = plan["placements"].as_array().unwrap();
    let mut zones = std::collections::BTreeSet::new();
    for placement in placements {
        assert_eq!(placement["machine_type"], "ecs.t6-c1m1.large", "{plan:#}");
        assert_eq!(placement["micros_per_hour"], 102_000);
        zones.insert(placement["zone"].as_str().unwrap().to_string());
    }
    assert_eq!(zones.len(), 2, "{plan:#}");
    assert_eq!(plan["micros_per_hour"]["CNY"], 204_000, "{plan:#}");

    // An endpoint without DescribePrice: the cluster's sheet, in its currency.
    cloud.faults(json!({"describe_price": false})).await;
    ecs_cluster(
        &berth,
        "ecs-sheet",
        &cloud.url,
        SECRET,
        json!({"prices": {"ecs.c7.large": "0.4"}, "currency": "USD"}),
    )
    .await;
    let plan = api(
        &berth,
        Method::POST,
        "/api/v1/machines/plan",
        Some(request(json!(["ecs-sheet"]))),
    )
    .await;
    assert_eq!(
        plan["placements"][0]["machine_type"], "ecs.c7.large",
        "{plan:#}"
    );
    assert_eq!(plan["micros_per_hour"]["USD"], 800_000, "{plan:#}");
    cloud.faults(json!({"describe_price": true})).await;

    // Placed for real: one machine in each zone, through each zone's vSwitch.
    let placed = api(
        &berth,
        Method::POST,
        "/api/v1/machines/place",
        Some(request(json!(["ecs"]))),
    )
    .await;
    let mut ids = Vec::new();
    let mut zones = std::collections::BTreeSet::new();
    for machine in placed["machines"].as_array().unwrap() {
        let id = machine["id"].as_str().unwrap().to_string();
        let online = machine_in(&berth, &id, "online").await;
        zones.insert(online["zone"].as_str().unwrap().to_string());
        ids.push(id);
    }
    assert_eq!(zones.len(), 2, "{placed:#}");
    for _ in 0..4 {
        let (_, created) = create(&berth, "ecs", None).await;
        let id = created["id"].as_str().unwrap().to_string();
        machine_in(&berth, &id, "online").await;
        ids.push(id);
    }

    // One released behind berth's back; one made behind it, tagged for this cluster.
    let gone = api(
        &berth,
        Method::GET,
        &format!("/api/v1/machines/{}", ids[0]),
        None,
    )
    .await;
    cloud
        .release_behind_the_back(gone["provider_id"].as_str().unwrap())
        .await;
    let stray = cloud
        .make_behind_the_back("cn-hangzhou", json!({"berth:cluster": "ecs"}))
        .await;
    super::reconciled_behind_the_back(&berth, "ecs", &ids, &stray).await;
}
