//! One project on all four kinds of cluster at once, driven through the command line as an
//! operator would: a physical pool, OpenStack (its emulator), AWS EC2 (moto) and Alibaba
//! Cloud ECS (its emulator). Machines are made on each, the cloud ones stopped and started,
//! two taken offline, all retired;
//! then the audit log and each machine's history tell the whole story, and no cloud holds
//! anything berth made.

use reqwest::Method;
use serde_json::{Value, json};

use crate::replication::api;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_runs_machines_on_four_kinds_of_cluster_and_the_record_tells_the_story() {
    let moto = Moto::start();
    let openstack = OpenStackCloud::start();
    let ecs = EcsCloud::start();
    let berth = super::quick_berth();
    let ssh = super::answering_port();
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
    let file = |name: &str, content: Value| {
        let path = dir.join(name);
        std::fs::write(&path, content.to_string()).unwrap();
        path.to_str().unwrap().to_string()
    };

    // The four clusters.
    run(&[
        "cluster",
        "add",
        "rack",
        "--provider",
        "static-pool",
        "--project",
        "team",
    ]);
    let hosts = file("hosts.json", json!([super::host("h1", ssh, 4, 8192)]));
    run(&["cluster", "hosts", "rack", "--file", &hosts]);
    let rack_sheet = file(
        "rack-sheet.json",
        json!({"kind": "pool", "currency": "EUR", "default": {"purchase": "9000",
               "purchased": "2026-06-01", "amortise_months": 36, "running_monthly": "40"}}),
    );
    run(&["cost", "sheet", "set", "rack", "--file", &rack_sheet]);
    let clouds = [
        (
            "os",
            "openstack",
            "RegionOne",
            format!("{}/identity/v3", openstack.url),
            json!({"username": "berth", "project": "team",
                   "service-endpoints": format!("{}/", openstack.url)}),
            json!({"password": "berth-secret"}),
        ),
        (
            "aws",
            "aws-ec2",
            "us-east-1",
            moto.url.clone(),
            json!({"machine-types": "t3.micro", "prices": r#"{"t3.micro": "0.0104"}"#}),
            json!({"access-key-id": moto.access_key_id, "secret-access-key": moto.secret_access_key}),
        ),
        (
            "ecs",
            "aliyun-ecs",
            "cn-hangzhou",
            ecs.url.clone(),
            json!({"vswitch": "vsw-hz-h", "security-group": "sg-hz-web"}),
            json!({"access-key-id": "LTAI5tBerthTeam", "access-key-secret": "berth-ecs-secret"}),
        ),
    ];
    for (name, provider, region, endpoint, settings, credentials_json) in &clouds {
        let credentials = file(&format!("{name}.json"), credentials_json.clone());
        let out = run(&[
            "cluster",
            "add",
            name,
            "--provider",
            provider,
            "--region",
            region,
            "--endpoint",
            endpoint,
            "--settings",
            &settings.to_string(),
            "--credentials-file",
            &credentials,
            "--project",
            "team",
            "--probe",
            "none",
        ]);
        assert!(out.contains(provider), "{out}");
        for value in credentials_values(credentials_json) {
            assert!(!out.contains(&value), "credentials are never shown: {out}");
        }
    }
    // The private cloud is priced by flavor; the public clouds price their own machines.
    let os_sheet = file(
        "os-sheet.json",
        json!({"kind": "flavors", "currency": "USD",
               "flavors": {"m1.small": {"per_hour": "0.02", "stopped_per_hour": "0.001"}}}),
    );
    run(&["cost", "sheet", "set", "os", "--file", &os_sheet]);

    // One machine on each, from the command line.
    let made = [
        ("rack", vec!["--cpus", "2", "--memory-mib", "2048"]),
        (
            "os",
            vec![
                "--type",
                "m1.small",
                "--image",
                "9b2b0ef6-0f4e-4c43-9d33-7e1f8a6b0001",
            ],
        ),
        ("aws", vec!["--type", "t3.micro", "--image", &moto.image]),
        (
            "ecs",
            vec![
                "--type",
                "ecs.g7.large",
                "--image",
                "debian_12_6_x64_20G_alibase_20240823.vhd",
            ],
        ),
    ];
    let mut machines = Vec::new();
    for (cluster, spec) in &made {
        let mut args = vec![
            "machine",
            "create",
            "--project",
            "team",
            "--cluster",
            cluster,
            "--output",
            "json",
        ];
        args.extend(spec.iter().copied());
        let created: Value = serde_json::from_str(&run(&args)).unwrap();
        machines.push((
            cluster.to_string(),
            created["id"].as_str().unwrap().to_string(),
        ));
    }
    for (cluster, id) in &machines {
        let online = super::machine_in(&berth, id, "online").await;
        assert_eq!(online["cluster"], cluster.as_str(), "{online:#}");
    }
    let listed = run(&["machine", "list", "--project", "team"]);
    for (_, id) in &machines {
        assert!(listed.contains(id), "{listed}");
    }

    // What each costs, from its sheet or its provider's price, in its own currency: three
    // currencies in one project, never added together.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    run(&["cost", "accrue", "--until", "now"]);
    let report: Value = serde_json::from_str(&run(&[
        "cost",
        "report",
        "--project",
        "team",
        "--by",
        "cluster",
        "--output",
        "json",
    ]))
    .unwrap();
    let currency_of = |cluster: &str| {
        let row = report["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == cluster)
            .unwrap_or_else(|| panic!("no {cluster} in {report:#}"));
        assert_eq!(row["totals"].as_array().unwrap().len(), 1, "{row}");
        let amount: rust_decimal::Decimal = row["totals"][0]["amount"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(amount > rust_decimal::Decimal::ZERO, "{row}");
        row["totals"][0]["currency"].as_str().unwrap().to_string()
    };
    assert_eq!(
        ["rack", "os", "aws", "ecs"].map(currency_of),
        ["EUR", "USD", "USD", "CNY"]
    );
    assert_eq!(report["totals"].as_array().unwrap().len(), 3, "{report:#}");
    assert_eq!(report["unpriced_seconds"], 0, "{report:#}");

    // The cloud machines stopped and started from the command line, each through its
    // provider's own API; the pool's host has no power control, so its machine cannot be.
    let (ok, _, err) = crate::cli::berth_cli(dir, &[], None, &["machine", "stop", &machines[0].1]);
    assert!(!ok && err.contains("no power control"), "{err}");
    for (_, id) in &machines[1..] {
        run(&["machine", "stop", id, "--reason", "night"]);
    }
    let mut provider_ids = Vec::new();
    for (_, id) in &machines[1..] {
        let stopped = super::machine_in(&berth, id, "stopped").await;
        provider_ids.push(stopped["provider_id"].as_str().unwrap().to_string());
    }
    let server = openstack
        .servers()
        .await
        .into_iter()
        .find(|s| s["id"] == provider_ids[0].as_str())
        .unwrap();
    assert_eq!(server["status"], "SHUTOFF", "{server}");
    for instance in moto.instances_tagged("berth:machine-id", &machines[2].1) {
        assert_eq!(instance["state"], "stopped", "{instance}");
    }
    let instance = ecs
        .instances()
        .await
        .into_iter()
        .find(|i| i["InstanceId"] == provider_ids[2].as_str())
        .unwrap();
    assert_eq!(instance["Status"], "Stopped", "{instance}");
    for (_, id) in &machines[1..] {
        run(&["machine", "start", id]);
    }
    for (_, id) in &machines[1..] {
        super::machine_in(&berth, id, "online").await;
    }

    // Two taken offline for maintenance.
    for (_, id) in [&machines[1], &machines[3]] {
        let out = run(&[
            "machine",
            "offline",
            id,
            "--force",
            "--reason",
            "kernel update",
        ]);
        assert!(out.contains("offline"), "{out}");
    }

    // All retired.
    for (_, id) in &machines {
        run(&["machine", "retire", id]);
    }
    for (_, id) in &machines {
        super::machine_in(&berth, id, "retired").await;
    }

    // Each history, from the command line and the API, tells its machine's story.
    for (n, (cluster, id)) in machines.iter().enumerate() {
        let moves = super::moves(&berth, id).await;
        let mut expected = vec!["requested", "provisioning", "initializing", "online"];
        if n > 0 {
            expected.extend(["stopping", "stopped", "starting", "initializing", "online"]);
        }
        if n == 1 || n == 3 {
            expected.push("offline");
        }
        expected.extend(["retiring", "retired"]);
        assert_eq!(moves, expected, "{cluster}");
        let out = run(&["machine", "history", id]);
        if n == 1 || n == 3 {
            assert!(out.contains("kernel update"), "{out}");
        }
    }
    // And the audit log holds who asked for what, and every move berth made.
    for (n, (cluster, id)) in machines.iter().enumerate() {
        let audit = api(
            &berth,
            Method::GET,
            &format!("/api/v1/audit?resource={id}"),
            None,
        )
        .await;
        let actions: Vec<(&str, &str)> = audit
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["actor"].as_str().unwrap(), e["action"].as_str().unwrap()))
            .collect();
        let mut asked = vec!["machine.retire"];
        if n > 0 {
            asked.extend(["machine.stop", "machine.start"]);
        }
        if n == 1 || n == 3 {
            asked.push("machine.offline");
        }
        for action in asked {
            assert!(
                actions.contains(&("admin", action)),
                "{cluster}: {action} not audited: {audit:#}"
            );
        }
        let moved = actions
            .iter()
            .filter(|(actor, action)| *actor == "berth" && *action == "machine.transition")
            .count();
        assert!(moved >= 4, "{cluster}: berth's moves: {audit:#}");
    }
    let created = api(
        &berth,
        Method::GET,
        "/api/v1/audit?action=machine.create",
        None,
    )
    .await;
    assert_eq!(created.as_array().unwrap().len(), 4, "{created:#}");

    // No cloud holds anything berth made, and the pool's host is free again.
    assert!(openstack.servers().await.is_empty());
    assert!(ecs.instances().await.is_empty());
    let aws = &machines[2].1;
    for instance in moto.instances_tagged("berth:machine-id", aws) {
        assert_eq!(instance["state"], "terminated", "{instance}");
    }
    let hosts = api(&berth, Method::GET, "/api/v1/clusters/rack/hosts", None).await;
    assert!(hosts[0]["machine"].is_null(), "{hosts:#}");
}

/// The values of a credentials object.
fn credentials_values(credentials: &Value) -> Vec<String> {
    credentials
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}
