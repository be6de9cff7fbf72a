//! Stop and start of cloud machines against moto's EC2: asked through the API, made out of
//! band with boto3 (as an operator's console would) and found by reconciliation, refused
//! by EC2, cut by `kill -9` at every step, and charged as they happened: running time at
//! the flavor's price, stopped time at its disk price, checked against an independent
//! computation from the machine's own history.

use reqwest::Method;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::{call, machine_in, moves};
use crate::replication::api;
use crate::support::*;

/// An EC2 cluster `aws` on moto for project `team` that probes nothing, priced by a sheet:
/// a t3.micro costs 1 USD a second running and 0.01 USD a second stopped, so that a test
/// lasting seconds charges amounts worth comparing.
async fn priced_ec2_cluster(berth: &Berth, moto: &Moto, endpoint: &str) {
    let (status, out) = call(
        &client(),
        berth,
        Method::POST,
        "/api/v1/clusters",
        Some(json!({
            "name": "aws", "provider": "aws-ec2", "regions": ["us-east-1"],
            "endpoint": endpoint,
            "credentials": {"access-key-id": moto.access_key_id,
                            "secret-access-key": moto.secret_access_key},
            "settings": {"machine-types": "t3.micro"},
            "projects": ["team"], "probe": {"kind": "none"},
        })),
    )
    .await;
    assert_eq!(status, 201, "{out}");
    let (status, out) = call(
        &client(),
        berth,
        Method::PUT,
        "/api/v1/clusters/aws/price-sheet",
        Some(json!({"sheet": {"kind": "flavors", "currency": "USD",
                    "flavors": {"t3.micro": {"per_hour": "3600", "stopped_per_hour": "36"}}}})),
    )
    .await;
    assert_eq!(status, 201, "{out}");
}

async fn create(berth: &Berth, moto: &Moto) -> String {
    let created = api(
        berth,
        Method::POST,
        "/api/v1/machines",
        Some(json!({"project": "team", "cluster": "aws",
                    "spec": {"machine_type": "t3.micro", "image": moto.image}})),
    )
    .await;
    created["id"].as_str().unwrap().to_string()
}

/// berth with quick leases, reconciling every `secs` seconds.
fn berth_reconciling_every(secs: u32) -> Berth {
    Berth::start_configured(
        &[],
        &[
            ("BERTH_SCHEDULING__JOB_LEASE_SECS", "2"),
            (
                "BERTH_SCHEDULING__RECONCILE_INTERVAL_SECS",
                &secs.to_string(),
            ),
        ],
    )
}

/// `POST /api/v1/machines/{id}/{action}` as the admin: status and answer.
async fn act(berth: &Berth, id: &str, action: &str, body: Option<Value>) -> (u16, Value) {
    call(
        &client(),
        berth,
        Method::POST,
        &format!("/api/v1/machines/{id}/{action}"),
        body,
    )
    .await
}

/// The EC2 state of the instance tagged with machine `id`, as boto3 reads it.
fn ec2_state(moto: &Moto, id: &str) -> String {
    let tagged = moto.instances_tagged("berth:machine-id", id);
    assert_eq!(tagged.len(), 1, "{tagged:?}");
    tagged[0]["state"].as_str().unwrap().to_string()
}

/// What machine `id` should have cost up to `as_of`, computed from its history alone: a
/// cloud machine is charged from `initializing` on, at the running price until its
/// provider is seen to stop it (`stopped`), at the disk price until its provider is seen
/// to run it again (`starting` ends), and nothing once retired.
async fn expected_cost(berth: &Berth, id: &str, as_of: u64) -> Decimal {
    let history = api(
        berth,
        Method::GET,
        &format!("/api/v1/machines/{id}/history"),
        None,
    )
    .await;
    let moves: Vec<(&str, u64)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["to"].as_str().unwrap(), t["at"].as_u64().unwrap()))
        .collect();
    let mut total = Decimal::ZERO;
    for (i, (state, at)) in moves.iter().enumerate() {
        let until = moves.get(i + 1).map_or(as_of, |(_, next)| *next).min(as_of);
        let per_ms = match *state {
            "initializing" | "online" | "draining" | "drained" | "offline" | "stopping" => {
                Decimal::new(1, 3)
            }
            "stopped" | "starting" => Decimal::new(1, 5),
            _ => Decimal::ZERO,
        };
        total += per_ms * Decimal::from(until.saturating_sub(*at));
    }
    total
}

/// Closes every piece of the ledger that ended by now (the rest is reported open).
async fn accrue_until_now(berth: &Berth) {
    let until = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let (status, round) = call(
        &client(),
        berth,
        Method::POST,
        &format!("/api/v1/costs/accrue?until={until}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{round}");
}

/// The cost report's total for machine `id` this month, and the time it counts up to.
async fn reported_cost(berth: &Berth, id: &str) -> (Decimal, u64) {
    let month = chrono::Utc::now().format("%Y-%m").to_string();
    let report = api(
        berth,
        Method::GET,
        &format!("/api/v1/costs?month={month}&project=team&by=machine"),
        None,
    )
    .await;
    let row = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == id)
        .unwrap_or_else(|| panic!("no {id} in {report:#}"));
    assert_eq!(row["totals"][0]["currency"], "USD", "{row}");
    (
        row["totals"][0]["amount"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
        report["as_of"].as_u64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ec2_machine_stops_and_starts_and_its_stopped_time_costs_only_its_disks() {
    let moto = Moto::start();
    // No background reconciliation: every move here is the API's or its jobs'.
    let berth = berth_reconciling_every(3600);
    priced_ec2_cluster(&berth, &moto, &moto.url).await;
    let id = create(&berth, &moto).await;
    machine_in(&berth, &id, "online").await;

    // What cannot be stopped or started is refused, saying why; what is already so is
    // answered as it is.
    let (status, same) = act(&berth, &id, "start", None).await;
    assert_eq!((status, same["state"].as_str()), (202, Some("online")));
    let (status, refused) = act(&berth, "m-nope", "stop", Some(json!({}))).await;
    assert_eq!(status, 404, "{refused}");
    let (status, refused) = act(&berth, &id, "stop", Some(json!({"force": true}))).await;
    assert_eq!(status, 400, "unknown fields are refused: {refused}");

    let (status, stopping) = act(&berth, &id, "stop", Some(json!({"reason": "night"}))).await;
    assert_eq!(status, 202, "{stopping}");
    assert_eq!(stopping["state"], "stopping");
    let stopped = machine_in(&berth, &id, "stopped").await;
    assert!(
        stopped["reason"]
            .as_str()
            .unwrap()
            .contains("stopped at the provider"),
        "{stopped:#}"
    );
    assert_eq!(ec2_state(&moto, &id), "stopped");
    // A stopped machine takes no work and is not taken online: it is started.
    let (status, refused) = act(&berth, &id, "online", None).await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["detail"].as_str().unwrap().contains("stopped"),
        "{refused}"
    );
    let (status, same) = act(&berth, &id, "stop", Some(json!({}))).await;
    assert_eq!((status, same["state"].as_str()), (202, Some("stopped")));
    // Stopped for a while, so that its disk time is worth measuring.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;

    let (status, starting) = act(&berth, &id, "start", None).await;
    assert_eq!(status, 202, "{starting}");
    assert_eq!(starting["state"], "starting");
    let online = machine_in(&berth, &id, "online").await;
    assert!(
        !online["addresses"].as_array().unwrap().is_empty(),
        "{online:#}"
    );
    assert_eq!(ec2_state(&moto, &id), "running");
    assert_eq!(
        moves(&berth, &id).await,
        [
            "requested",
            "provisioning",
            "initializing",
            "online",
            "stopping",
            "stopped",
            "starting",
            "initializing",
            "online"
        ]
    );
    // Who asked is audited, and each move berth made.
    let audit = api(
        &berth,
        Method::GET,
        &format!("/api/v1/audit?resource={id}"),
        None,
    )
    .await;
    for action in ["machine.stop", "machine.start"] {
        assert!(
            audit
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["actor"] == "admin" && e["action"] == action),
            "{action}: {audit:#}"
        );
    }

    // What it cost: the ledger (closed pieces) and the open piece together equal the
    // computation from its history, to the ledger's rounding.
    accrue_until_now(&berth).await;
    let (reported, as_of) = reported_cost(&berth, &id).await;
    let expected = expected_cost(&berth, &id, as_of).await;
    assert!(
        (reported - expected).abs() <= Decimal::new(1, 8),
        "reported {reported}, expected {expected}"
    );
    // Stopped long enough that the disk price shows: charged at the running price, the
    // stopped time alone would add over 1 USD.
    let history = api(
        &berth,
        Method::GET,
        &format!("/api/v1/machines/{id}/history"),
        None,
    )
    .await;
    let at = |state: &str| {
        history
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["to"] == state)
            .unwrap()["at"]
            .as_u64()
            .unwrap()
    };
    assert!(at("starting") - at("stopped") >= 1500, "{history:#}");

    // Retired while stopped: deleted at EC2, charged nothing more.
    let (status, _) = act(&berth, &id, "stop", Some(json!({}))).await;
    assert_eq!(status, 202);
    machine_in(&berth, &id, "stopped").await;
    let (status, _) = act(&berth, &id, "retire", None).await;
    assert_eq!(status, 202);
    machine_in(&berth, &id, "retired").await;
    assert_eq!(ec2_state(&moto, &id), "terminated");
    let (status, refused) = act(&berth, &id, "start", None).await;
    assert_eq!(status, 409, "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_records_stops_and_starts_made_out_of_band() {
    let moto = Moto::start();
    let berth = berth_reconciling_every(1);
    priced_ec2_cluster(&berth, &moto, &moto.url).await;
    let (first, second) = (create(&berth, &moto).await, create(&berth, &moto).await);
    let mut instances = Vec::new();
    for id in [&first, &second] {
        let online = machine_in(&berth, id, "online").await;
        instances.push(online["provider_id"].as_str().unwrap().to_string());
    }

    // Stopped from the console: berth records it stopped (its cost is its disks' now),
    // and leaves the other alone.
    moto.boto3(&format!(
        "ec2.stop_instances(InstanceIds=['{}'])\nprint('{{}}')",
        instances[0]
    ));
    let stopped = machine_in(&berth, &first, "stopped").await;
    assert!(
        stopped["reason"].as_str().unwrap().contains("out of band"),
        "{stopped:#}"
    );
    let other = api(
        &berth,
        Method::GET,
        &format!("/api/v1/machines/{second}"),
        None,
    )
    .await;
    assert_eq!(other["state"], "online", "{other:#}");

    // Started from the console: berth brings it back online through a start of its own.
    moto.boto3(&format!(
        "ec2.start_instances(InstanceIds=['{}'])\nprint('{{}}')",
        instances[0]
    ));
    machine_in(&berth, &first, "online").await;
    let history = api(
        &berth,
        Method::GET,
        &format!("/api/v1/machines/{first}/history"),
        None,
    )
    .await;
    let tail: Vec<(&str, &str)> = history.as_array().unwrap()[4..]
        .iter()
        .map(|t| {
            (
                t["to"].as_str().unwrap(),
                t["reason"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        tail.iter().map(|(to, _)| *to).collect::<Vec<_>>(),
        ["stopped", "starting", "initializing", "online"],
        "{history:#}"
    );
    assert!(tail[1].1.contains("started at the provider out of band"));

    // A stop berth asked for is its own job's, never reconciliation's: the move to
    // stopped carries the job's reason.
    let (status, _) = act(&berth, &second, "stop", Some(json!({}))).await;
    assert_eq!(status, 202);
    let stopped = machine_in(&berth, &second, "stopped").await;
    assert!(
        !stopped["reason"].as_str().unwrap().contains("out of band"),
        "{stopped:#}"
    );

    // An administrator's round from the command line says what it stopped and started.
    let (ok, out, err) = crate::plugins::cli(&berth, &["cluster", "reconcile", "aws"]);
    assert!(ok, "{err}");
    let header = out.lines().next().unwrap_or_default().to_lowercase();
    for column in ["retired", "stopped", "started", "failed", "orphans"] {
        assert!(header.contains(column), "{out}");
    }

    // Cost, as the history says: both machines to the ledger's rounding.
    accrue_until_now(&berth).await;
    for id in [&first, &second] {
        let (reported, as_of) = reported_cost(&berth, id).await;
        let expected = expected_cost(&berth, id, as_of).await;
        assert!(
            (reported - expected).abs() <= Decimal::new(1, 8),
            "{id}: reported {reported}, expected {expected}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_say_why_and_a_kill_9_at_any_step_of_a_stop_or_start_loses_nothing() {
    let moto = Moto::start();
    let proxy = Ec2Proxy::start(&moto.url).await;
    let mut berth = berth_reconciling_every(3600);
    priced_ec2_cluster(&berth, &moto, &proxy.url).await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(create(&berth, &moto).await);
    }
    for id in &ids {
        machine_in(&berth, id, "online").await;
    }

    // EC2 refuses the stop (an IAM policy): the machine still runs, out of service, and
    // says why; asked again, it stops.
    proxy.faults.lock().unwrap().refuse_stops = 1;
    let (status, _) = act(&berth, &ids[0], "stop", Some(json!({}))).await;
    assert_eq!(status, 202);
    let offline = machine_in(&berth, &ids[0], "offline").await;
    let reason = offline["reason"].as_str().unwrap();
    assert!(
        reason.contains("the stop failed") && reason.contains("UnauthorizedOperation"),
        "{offline:#}"
    );
    assert_eq!(ec2_state(&moto, &ids[0]), "running");
    act(&berth, &ids[0], "stop", Some(json!({}))).await;
    machine_in(&berth, &ids[0], "stopped").await;
    // EC2 has no room to start it again: it stays stopped, saying why; asked again, it
    // starts.
    proxy.faults.lock().unwrap().refuse_starts = 1;
    let (status, starting) = act(&berth, &ids[0], "start", None).await;
    assert_eq!(
        (status, starting["state"].as_str()),
        (202, Some("starting"))
    );
    let stopped = machine_in(&berth, &ids[0], "stopped").await;
    let reason = stopped["reason"].as_str().unwrap();
    assert!(
        reason.contains("the start failed") && reason.contains("InsufficientInstanceCapacity"),
        "{stopped:#}"
    );
    act(&berth, &ids[0], "start", None).await;
    machine_in(&berth, &ids[0], "online").await;

    // A stop, then a start, of each machine cut by kill -9 at a different moment: before
    // its job is claimed, while EC2 is asked, while it is read, after it is recorded.
    // Each ends where it was asked to after the restart, with one instance per machine.
    let delays = [0, 150, 600, 2500];
    for (action, wanted, ec2) in [
        ("stop", "stopped", "stopped"),
        ("start", "online", "running"),
    ] {
        for (id, delay) in ids.iter().zip(delays) {
            let body = (action == "stop").then(|| json!({}));
            let (status, answer) = act(&berth, id, action, body).await;
            assert_eq!(status, 202, "{answer}");
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
            berth.restart();
        }
        for id in &ids {
            machine_in(&berth, id, wanted).await;
            assert_eq!(ec2_state(&moto, id), ec2, "{id}");
        }
    }
    for id in &ids {
        let moves = moves(&berth, id).await;
        let tail = &moves[moves.len() - 5..];
        assert_eq!(
            tail,
            ["stopping", "stopped", "starting", "initializing", "online"],
            "{id}: {moves:?}"
        );
    }
    // Each stop and start reached EC2 at least once, and none was lost.
    assert!(
        proxy.seen("StopInstances") >= 6,
        "{}",
        proxy.seen("StopInstances")
    );
    assert!(proxy.seen("StartInstances") >= 6);
    berth.kill9();
    let (clean, report) = berth.fsck(false);
    assert!(clean, "{report}");
}
