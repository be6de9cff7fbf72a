//! Machines on AWS EC2 through the built-in `aws-ec2` plugin, against moto in server mode
//! with signature checking and instance-type and AMI validation on, behind a proxy that
//! adds what moto does not emulate (throttling, capacity, NotFound right after a create,
//! `ClientToken` idempotency). boto3, AWS's own SDK, reads what berth did.

use reqwest::Method;
use serde_json::{Value, json};

use super::{machine_in, quick_berth as berth};
use crate::replication::api;
use crate::support::*;

/// An EC2 cluster `name` of `project` on `endpoint`, signing with `secret`.
async fn ec2_cluster(berth: &Berth, moto: &Moto, name: &str, endpoint: &str, secret: &str) {
    let (status, out) = super::call(
        &client(),
        berth,
        Method::POST,
        "/api/v1/clusters",
        Some(json!({
            "name": name, "provider": "aws-ec2", "regions": ["us-east-1"],
            "endpoint": endpoint,
            "credentials": {"access-key-id": moto.access_key_id, "secret-access-key": secret},
            "settings": {"machine-types": "t3.micro,t3.small", "prices": {"t3.micro": "0.0104"}},
            "projects": ["team"], "probe": {"kind": "none"},
        })),
    )
    .await;
    assert_eq!(status, 201, "{out}");
}

async fn create(berth: &Berth, cluster: &str, image: &str, token: Option<&str>) -> Value {
    api(
        berth,
        Method::POST,
        "/api/v1/machines",
        Some(
            json!({"project": "team", "cluster": cluster, "client_token": token,
                    "spec": {"machine_type": "t3.micro", "image": image}}),
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ec2_machine_survives_throttling_and_eventual_consistency_goes_online_and_retires() {
    let moto = Moto::start();
    let proxy = Ec2Proxy::start(&moto.url).await;
    {
        let mut faults = proxy.faults.lock().unwrap();
        faults.throttle_runs = 1;
        faults.not_found_after_run = 2;
    }
    let berth = berth();
    ec2_cluster(&berth, &moto, "aws", &proxy.url, &moto.secret_access_key).await;

    let created = create(&berth, "aws", &moto.image, Some("deploy-1")).await;
    // The size of t3.micro as EC2 describes it, which the quota counts.
    assert_eq!(created["spec"]["cpus"], 2, "{created:#}");
    assert_eq!(created["spec"]["memory_mib"], 1024);
    let id = created["id"].as_str().unwrap().to_string();
    let online = machine_in(&berth, &id, "online").await;
    let instance = online["provider_id"].as_str().unwrap().to_string();
    assert!(instance.starts_with("i-"), "{online:#}");
    assert_eq!(online["region"], "us-east-1");
    assert!(
        online["zone"].as_str().unwrap().starts_with("us-east-1"),
        "{online:#}"
    );
    assert!(
        !online["addresses"].as_array().unwrap().is_empty(),
        "{online:#}"
    );
    // Throttled once, then made once: the retry followed EC2's answer, and nothing more.
    assert_eq!(proxy.seen("RunInstances"), 2);

    // EC2 (as boto3 reads it) has exactly one instance with berth's tags.
    let tagged = moto.instances_tagged("berth:machine-id", &id);
    assert_eq!(tagged.len(), 1, "{tagged:?}");
    assert_eq!(tagged[0]["id"], instance.as_str());
    assert_eq!(tagged[0]["state"], "running");
    assert_eq!(tagged[0]["tags"]["berth:project"], "team");
    assert_eq!(tagged[0]["tags"]["berth:cluster"], "aws");

    // The same client token again is the same machine, and EC2 is not asked again.
    let again = create(&berth, "aws", &moto.image, Some("deploy-1")).await;
    assert_eq!(again["id"], id.as_str());
    assert_eq!(proxy.seen("RunInstances"), 2);

    // Retire: terminated at EC2, retired in berth; retiring it again is done already,
    // without reaching EC2.
    api(
        &berth,
        Method::POST,
        &format!("/api/v1/machines/{id}/retire"),
        Some(json!({})),
    )
    .await;
    machine_in(&berth, &id, "retired").await;
    let tagged = moto.instances_tagged("berth:machine-id", &id);
    assert_eq!(tagged[0]["state"], "terminated", "{tagged:?}");
    let terminations = proxy.seen("TerminateInstances");
    let (status, _) = super::call(
        &client(),
        &berth,
        Method::POST,
        &format!("/api/v1/machines/{id}/retire"),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 202);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(proxy.seen("TerminateInstances"), terminations);
}

/// Creates waiting for their instances to run read them together: a burst of creates in
/// one cluster costs EC2 a DescribeInstances or two, not one per instance per second (EC2
/// meters reads per account), and every instance is still read and goes online.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_creates_reads_its_instances_together() {
    const BURST: usize = 12;
    let moto = Moto::start();
    let proxy = Ec2Proxy::start(&moto.url).await;
    // Nothing else reads instances while the burst runs.
    let berth = Berth::start_configured(
        &[],
        &[
            ("BERTH_SCHEDULING__JOB_LEASE_SECS", "2"),
            ("BERTH_SCHEDULING__INITIALIZE_TIMEOUT_SECS", "60"),
            ("BERTH_SCHEDULING__RECONCILE_INTERVAL_SECS", "3600"),
            ("BERTH_SCHEDULING__HEALTH_INTERVAL_SECS", "3600"),
        ],
    );
    ec2_cluster(&berth, &moto, "aws", &proxy.url, &moto.secret_access_key).await;

    let tokens: Vec<String> = (0..BURST).map(|i| format!("burst-{i}")).collect();
    let created = futures::future::join_all(
        tokens
            .iter()
            .map(|token| create(&berth, "aws", &moto.image, Some(token))),
    )
    .await;
    let mut instances = std::collections::BTreeSet::new();
    for machine in &created {
        let online = machine_in(&berth, machine["id"].as_str().unwrap(), "online").await;
        instances.insert(online["provider_id"].as_str().unwrap().to_string());
    }
    assert_eq!(instances.len(), BURST, "{instances:?}");
    assert_eq!(proxy.seen("RunInstances"), BURST as u32);
    let reads = proxy.seen("DescribeInstances");
    assert!(
        (1..=3).contains(&reads),
        "{BURST} creates read their instances in {reads} DescribeInstances calls"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_wrong_secrets_and_tampered_requests_fail_once_and_release_the_quota() {
    let moto = Moto::start();
    let proxy = Ec2Proxy::start(&moto.url).await;
    let berth = berth();
    ec2_cluster(&berth, &moto, "aws", &proxy.url, &moto.secret_access_key).await;
    api(
        &berth,
        Method::PUT,
        "/api/v1/projects/team/quota",
        Some(json!({"machines": 1})),
    )
    .await;

    // No capacity: failed with EC2's reason, not retried, nothing left at EC2, and the
    // quota's one machine is free again.
    proxy.faults.lock().unwrap().no_capacity = 1;
    let first = create(&berth, "aws", &moto.image, None).await;
    let first_id = first["id"].as_str().unwrap().to_string();
    let failed = machine_in(&berth, &first_id, "failed").await;
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.contains("capacity") && reason.contains("InsufficientInstanceCapacity"),
        "{reason}"
    );
    assert_eq!(proxy.seen("RunInstances"), 1);
    assert!(
        moto.instances_tagged("berth:machine-id", &first_id)
            .is_empty()
    );
    let quota = api(&berth, Method::GET, "/api/v1/projects/team/quota", None).await;
    assert_eq!(quota["usage"]["machines"], 0, "{quota:#}");
    let second = create(&berth, "aws", &moto.image, None).await;
    machine_in(&berth, second["id"].as_str().unwrap(), "online").await;

    // A wrong secret: moto refuses the signature; berth fails the machine with the typed
    // reason after one request, not a retry storm.
    api(
        &berth,
        Method::PUT,
        "/api/v1/projects/team/quota",
        Some(json!({"machines": 10})),
    )
    .await;
    let wrong_proxy = Ec2Proxy::start(&moto.url).await;
    ec2_cluster(
        &berth,
        &moto,
        "aws-wrong",
        &wrong_proxy.url,
        "not the secret",
    )
    .await;
    // The machine type's size is asked first; a refused describe refuses the create.
    let (status, out) = super::call(
        &client(),
        &berth,
        Method::POST,
        "/api/v1/machines",
        Some(json!({"project": "team", "cluster": "aws-wrong",
                    "spec": {"machine_type": "t3.micro", "image": moto.image}})),
    )
    .await;
    assert_eq!(status, 502, "{out}");
    let detail = out["detail"].as_str().unwrap();
    assert!(detail.contains("auth:"), "{detail}");
    let seen: u32 = wrong_proxy.faults.lock().unwrap().seen.values().sum();
    assert_eq!(seen, 1, "one refused request, no retries");

    // A request changed after it was signed: refused the same way.
    let tampering = Ec2Proxy::start(&moto.url).await;
    tampering.faults.lock().unwrap().tamper = true;
    ec2_cluster(
        &berth,
        &moto,
        "aws-tampered",
        &tampering.url,
        &moto.secret_access_key,
    )
    .await;
    let (status, out) = super::call(
        &client(),
        &berth,
        Method::POST,
        "/api/v1/machines",
        Some(json!({"project": "team", "cluster": "aws-tampered",
                    "spec": {"machine_type": "t3.micro", "image": moto.image}})),
    )
    .await;
    assert_eq!(status, 502, "{out}");
    assert!(out["detail"].as_str().unwrap().contains("auth:"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_the_ec2_create_and_its_record_leaves_one_instance() {
    // No proxy: moto itself makes a new instance for a repeated ClientToken, so only the
    // tag lookup can keep the create from making a second one.
    let moto = Moto::start();
    let mut berth = Berth::start_configured(
        &[],
        &[
            ("BERTH_SCHEDULING__JOB_LEASE_SECS", "2"),
            ("BERTH_FAULT_CRASH_AFTER_PROVIDER_CREATE", "1"),
        ],
    );
    ec2_cluster(&berth, &moto, "aws", &moto.url, &moto.secret_access_key).await;
    let created = create(&berth, "aws", &moto.image, None).await;
    let id = created["id"].as_str().unwrap().to_string();
    // berth dies right after EC2 answered; the instance is there, berth's record is not.
    berth.wait_for_exit(std::time::Duration::from_secs(30));
    assert_eq!(moto.instances_tagged("berth:machine-id", &id).len(), 1);

    berth.set_env("BERTH_FAULT_CRASH_AFTER_PROVIDER_CREATE", None);
    berth.start_again();
    let online = machine_in(&berth, &id, "online").await;
    let tagged = moto.instances_tagged("berth:machine-id", &id);
    assert_eq!(tagged.len(), 1, "no second instance: {tagged:?}");
    assert_eq!(online["provider_id"], tagged[0]["id"]);
    let history = api(
        &berth,
        Method::GET,
        &format!("/api/v1/machines/{id}/history"),
        None,
    )
    .await;
    let states: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["to"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        ["requested", "provisioning", "initializing", "online"],
        "{history:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ec2_prices_come_exactly_from_the_clusters_sheet() {
    let berth = Berth::start();
    let cluster = |prices: &str| {
        json!({"name": "aws", "regions": ["us-east-1"], "credentials": [],
               "settings": [["prices", prices]]})
    };
    let price = |prices: &'static str, machine_type: &'static str, option: &'static str| {
        let (berth_url, body) = (
            berth.url.clone(),
            json!({"cluster": cluster(prices), "region": "us-east-1",
                   "machine-type": machine_type, "purchase-option": option}),
        );
        async move {
            crate::plugins::invoke(&client(), &berth_url, "aws-ec2", "price", body)
                .await
                .1
        }
    };
    let out = price(
        r#"{"t3.micro": "0.0104", "m5.large": 0.096}"#,
        "t3.micro",
        "on-demand",
    )
    .await;
    assert_eq!(
        out["ok"],
        json!({"currency": "USD", "micros-per-hour": 10400, "purchase-option": "on-demand",
               "granularity-secs": 1, "minimum-secs": 60, "effective-from": null}),
        "{out}"
    );
    let out = price(r#"{"m5.large": 0.096}"#, "m5.large", "on-demand").await;
    assert_eq!(out["ok"]["micros-per-hour"], 96000, "{out}");
    let out = price(r#"{"t3.micro": "0.00000001"}"#, "t3.micro", "on-demand").await;
    assert_eq!(out["error"]["kind"], "invalid", "{out}");
    let out = price(r#"{"t3.micro": "0.0104"}"#, "t3.nano", "on-demand").await;
    assert_eq!(out["error"]["kind"], "not-found", "{out}");
    let out = price(r#"{"t3.micro": "0.0104"}"#, "t3.micro", "spot").await;
    assert_eq!(out["error"]["kind"], "unsupported", "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_retires_out_of_band_deletes_and_finds_orphans_past_the_first_page() {
    let moto = Moto::start();
    let berth = Berth::start_configured(
        &[],
        &[
            ("BERTH_SCHEDULING__JOB_LEASE_SECS", "2"),
            ("BERTH_SCHEDULING__RECONCILE_INTERVAL_SECS", "1"),
            // EC2's smallest page: seven machines and two orphans take two pages.
            ("BERTH_SCHEDULING__RECONCILE_PAGE_SIZE", "5"),
        ],
    );
    ec2_cluster(&berth, &moto, "aws", &moto.url, &moto.secret_access_key).await;
    let mut ids = Vec::new();
    for _ in 0..7 {
        ids.push(
            create(&berth, "aws", &moto.image, None).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let mut instances = Vec::new();
    for id in &ids {
        let online = machine_in(&berth, id, "online").await;
        instances.push(online["provider_id"].as_str().unwrap().to_string());
    }

    // Two terminated behind berth's back (boto3, as an operator's console would).
    moto.boto3(&format!(
        "ec2.terminate_instances(InstanceIds=['{}', '{}'])\nprint('{{}}')",
        instances[0], instances[1]
    ));
    for id in &ids[..2] {
        let retired = machine_in(&berth, id, "retired").await;
        assert!(
            retired["reason"].as_str().unwrap().contains("out of band"),
            "{retired:#}"
        );
    }

    // Two instances tagged for this cluster that berth never made (a lost record), and
    // one of another cluster, which is not this cluster's business.
    let made = moto.boto3(&format!(
        "r = ec2.run_instances(ImageId='{}', InstanceType='t3.micro', MinCount=1, MaxCount=1, TagSpecifications=[{{'ResourceType': 'instance', 'Tags': [{{'Key': 'berth:cluster', 'Value': 'aws'}}, {{'Key': 'berth:machine-id', 'Value': 'm-lost'}}]}}])\n\
         s = ec2.run_instances(ImageId='{0}', InstanceType='t3.micro', MinCount=1, MaxCount=1, TagSpecifications=[{{'ResourceType': 'instance', 'Tags': [{{'Key': 'berth:cluster', 'Value': 'aws'}}]}}])\n\
         ec2.run_instances(ImageId='{0}', InstanceType='t3.micro', MinCount=1, MaxCount=1, TagSpecifications=[{{'ResourceType': 'instance', 'Tags': [{{'Key': 'berth:cluster', 'Value': 'elsewhere'}}]}}])\n\
         print(json.dumps([r['Instances'][0]['InstanceId'], s['Instances'][0]['InstanceId']]))",
        moto.image
    ));
    let (lost, stray) = (
        made[0].as_str().unwrap().to_string(),
        made[1].as_str().unwrap().to_string(),
    );
    let orphans = api(&berth, Method::GET, "/api/v1/clusters/aws/orphans", None).await;
    let mut found: Vec<&str> = orphans
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["provider_id"].as_str().unwrap())
        .collect();
    found.sort_unstable();
    let mut expected = vec![lost.as_str(), stray.as_str()];
    expected.sort_unstable();
    assert_eq!(found, expected, "{orphans:#}");
    let tagged = orphans
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["provider_id"] == lost.as_str())
        .unwrap();
    assert_eq!(tagged["machine_id"], "m-lost");

    // Adopted into a project: a machine like any other, online.
    let adopted = api(
        &berth,
        Method::POST,
        &format!("/api/v1/clusters/aws/orphans/{lost}/adopt"),
        Some(json!({"project": "team"})),
    )
    .await;
    let adopted = machine_in(&berth, adopted["id"].as_str().unwrap(), "online").await;
    assert_eq!(adopted["provider_id"], lost.as_str());
    assert_eq!(adopted["spec"]["cpus"], 2);
    // Deleted at the provider.
    let (status, _) = super::call(
        &client(),
        &berth,
        Method::POST,
        &format!("/api/v1/clusters/aws/orphans/{stray}/delete"),
        None,
    )
    .await;
    assert_eq!(status, 202);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let state = moto.boto3(&format!(
            "print(json.dumps(ec2.describe_instances(InstanceIds=['{stray}'])['Reservations'][0]['Instances'][0]['State']['Name']))"
        ));
        if state == "terminated" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{stray} is {state}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let orphans = api(&berth, Method::GET, "/api/v1/clusters/aws/orphans", None).await;
    assert_eq!(orphans, json!([]));
    // The five left alone are still online.
    for id in &ids[2..] {
        let machine = api(&berth, Method::GET, &format!("/api/v1/machines/{id}"), None).await;
        assert_eq!(machine["state"], "online", "{machine:#}");
    }
}

/// An administrator's reconcile-now answers what the round found, acts once, and is
/// refused to anyone else and for a physical pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_now_reports_what_it_retired_once_and_only_to_administrators() {
    let moto = Moto::start();
    // No background round: what is retired is retired by the call.
    let berth = Berth::start_configured(
        &[],
        &[("BERTH_SCHEDULING__RECONCILE_INTERVAL_SECS", "3600")],
    );
    ec2_cluster(&berth, &moto, "aws", &moto.url, &moto.secret_access_key).await;
    let mut machines = Vec::new();
    for _ in 0..3 {
        let id = create(&berth, "aws", &moto.image, None).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let online = machine_in(&berth, &id, "online").await;
        machines.push((id, online["provider_id"].as_str().unwrap().to_string()));
    }
    moto.boto3(&format!(
        "ec2.terminate_instances(InstanceIds=['{}'])\nprint('{{}}')",
        machines[0].1
    ));

    let report = api(&berth, Method::POST, "/api/v1/clusters/aws/reconcile", None).await;
    assert_eq!(report["cluster"], "aws");
    assert_eq!(report["records"], 3, "{report:#}");
    assert_eq!(report["retired"], json!([machines[0].0]), "{report:#}");
    assert_eq!(
        (report["failed"].clone(), report["orphans"].clone()),
        (json!([]), json!(0))
    );
    let retired = machine_in(&berth, &machines[0].0, "retired").await;
    assert!(
        retired["reason"].as_str().unwrap().contains("out of band"),
        "{retired:#}"
    );
    // Once: a second round finds nothing more to do, and the others stay online.
    let again = api(&berth, Method::POST, "/api/v1/clusters/aws/reconcile", None).await;
    assert_eq!(again["retired"], json!([]), "{again:#}");
    for (id, _) in &machines[1..] {
        let machine = api(&berth, Method::GET, &format!("/api/v1/machines/{id}"), None).await;
        assert_eq!(machine["state"], "online", "{machine:#}");
    }
    let audit = api(
        &berth,
        Method::GET,
        "/api/v1/audit?action=cluster.reconcile",
        None,
    )
    .await;
    assert_eq!(audit.as_array().unwrap().len(), 2, "{audit:#}");

    // Nobody else may, and a pool has nothing to reconcile.
    api(
        &berth,
        Method::POST,
        "/api/v1/users",
        Some(json!({"username": "ada", "password": "ada's long password"})),
    )
    .await;
    let (status, _) = super::call(
        &client_as("ada", "ada's long password"),
        &berth,
        Method::POST,
        "/api/v1/clusters/aws/reconcile",
        None,
    )
    .await;
    assert_eq!(status, 403);
    api(
        &berth,
        Method::POST,
        "/api/v1/clusters",
        Some(json!({"name": "rack", "provider": "static-pool", "projects": ["team"]})),
    )
    .await;
    let (status, problem) = super::call(
        &client(),
        &berth,
        Method::POST,
        "/api/v1/clusters/rack/reconcile",
        None,
    )
    .await;
    assert_eq!(status, 400, "{problem}");
    let (status, _) = super::call(
        &client(),
        &berth,
        Method::POST,
        "/api/v1/clusters/nowhere/reconcile",
        None,
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_takes_pool_hosts_first_then_the_cheapest_type_spread_over_zones() {
    let moto = Moto::start();
    let berth = berth();
    ec2_cluster(&berth, &moto, "aws", &moto.url, &moto.secret_access_key).await;
    let port = super::answering_port();
    api(
        &berth,
        Method::POST,
        "/api/v1/clusters",
        Some(json!({"name": "rack", "provider": "static-pool", "projects": ["team"]})),
    )
    .await;
    api(
        &berth,
        Method::POST,
        "/api/v1/clusters/rack/hosts",
        Some(json!([super::host("h1", port, 2, 1024)])),
    )
    .await;
    let request = |count: u32, constraints: Value| {
        json!({"project": "team", "count": count, "cpus": 2, "memory_mib": 1024,
               "image": moto.image, "constraints": constraints})
    };

    // The dry run: the pool's free host, then t3.micro (priced) dealt over three zones;
    // t3.small has no price, so it would come only after every priced option.
    let plan = api(
        &berth,
        Method::POST,
        "/api/v1/machines/plan",
        Some(request(4, json!({"spread": "zones"}))),
    )
    .await;
    let placements = plan["placements"].as_array().unwrap();
    assert_eq!(placements[0]["host"], "h1", "{plan:#}");
    let zones: std::collections::BTreeSet<&str> = placements[1..]
        .iter()
        .map(|p| {
            assert_eq!(p["machine_type"], "t3.micro", "{plan:#}");
            assert_eq!(p["micros_per_hour"], 10400);
            p["zone"].as_str().unwrap()
        })
        .collect();
    assert_eq!(zones.len(), 3, "three zones: {plan:#}");
    assert_eq!(plan["micros_per_hour"]["USD"], 31200, "{plan:#}");
    // It created nothing.
    let listed = api(&berth, Method::GET, "/api/v1/machines?project=team", None).await;
    assert_eq!(listed, json!([]));
    let (ok, out, err) = crate::plugins::cli(
        &berth,
        &[
            "machine",
            "create",
            "--project",
            "team",
            "--count",
            "2",
            "--dry-run",
            "--type",
            "t3.micro",
            "--image",
            &moto.image,
            "--cluster",
            "aws",
            "--spread",
            "zones",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("t3.micro") && out.contains("10400"), "{out}");

    // Nothing is that cheap: refused, saying what was left out.
    let (status, out) = super::call(
        &client(),
        &berth,
        Method::POST,
        "/api/v1/machines/plan",
        Some(request(
            2,
            json!({"clusters": ["aws"], "max_micros_per_hour": 1000}),
        )),
    )
    .await;
    assert_eq!(status, 409, "{out}");
    assert!(
        out["detail"].as_str().unwrap().contains("only 0 of 2"),
        "{out}"
    );

    // Placed for real: three machines on EC2, one per zone, online.
    let placed = api(
        &berth,
        Method::POST,
        "/api/v1/machines/place",
        Some(request(
            3,
            json!({"clusters": ["aws"], "spread": "zones", "max_micros_per_hour": 20000}),
        )),
    )
    .await;
    let mut zones = std::collections::BTreeSet::new();
    for machine in placed["machines"].as_array().unwrap() {
        let online = machine_in(&berth, machine["id"].as_str().unwrap(), "online").await;
        assert_eq!(online["spec"]["machine_type"], "t3.micro");
        zones.insert(online["zone"].as_str().unwrap().to_string());
    }
    assert_eq!(zones.len(), 3, "{placed:#}");
}
