//! Cost accrual under `kill -9`: a round killed at varied moments, again and again,
//! loses no time and charges none twice.

use reqwest::Method;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::call;
use crate::support::*;

/// `kill -9` in the middle of accrual rounds, again and again: after the last restart
/// every machine is charged exactly its running time at its price, once. 3,000 machines
/// that ran through November are written into the data directory (through berth's
/// storage interface, as its services write them); berth accrues them on start, and is
/// killed at varied moments of that round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accrual_killed_midway_loses_nothing_and_charges_nothing_twice() {
    use berth::cost::money::Currency;
    use berth::cost::rate::{Basis, Rate};
    use berth::scheduling::ledger::Ledger;
    use berth::storage::store::{Durability, Store, StoreError};
    use berth::storage::tables::scheduling::{
        ClusterRecord, MachineRecord, MachineSpec, MachineState, Probe, TransitionRecord,
    };
    const MACHINES: u64 = 3_000;
    const HOUR: u64 = 3_600_000;
    let from = 1_793_491_200_000u64; // 2026-11-01

    let plan: Vec<(String, u64, u64, Decimal)> = (0..MACHINES)
        .map(|i| {
            let start = from + (i * 7_919_993) % (10 * 86_400_000);
            let end = start + HOUR + (i * 104_729_017) % (19 * 86_400_000);
            (
                format!("m-{i:032x}"),
                start,
                end,
                Decimal::new(100 + (i as i64 * 37) % 4_900, 4),
            )
        })
        .collect();

    let mut berth = Berth::start();
    berth.kill9();
    {
        let store = Store::redb_at(&berth.data_dir.join("berth.redb")).unwrap();
        store
            .write_blocking(Durability::Immediate, |tx| {
                tx.scheduling().put_cluster(&ClusterRecord {
                    name: "aws".into(),
                    provider: "aws-ec2".into(),
                    regions: vec![],
                    endpoint: None,
                    settings: Value::Null,
                    sealed_credentials: None,
                    labels: Default::default(),
                    projects: vec!["team".into()],
                    probe: Probe::None,
                    // Neither placed on nor reconciled: only accrued.
                    enabled: false,
                    created_by: "admin".into(),
                    created_at: 0,
                    updated_at: 0,
                })
            })
            .unwrap();
        for chunk in plan.chunks(500) {
            store
                .write_blocking(Durability::Immediate, |tx| {
                    use MachineState::*;
                    for (id, start, end, price) in chunk {
                        let history = [
                            (Requested, *start),
                            (Initializing, *start),
                            (Online, start + 1),
                            (Retired, *end),
                        ];
                        tx.scheduling().put_machine(&MachineRecord {
                            id: id.clone(),
                            cluster: "aws".into(),
                            project: "team".into(),
                            provider_id: None,
                            region: None,
                            zone: None,
                            client_token: id.clone(),
                            spec: MachineSpec::default(),
                            addresses: vec![],
                            labels: Default::default(),
                            state: Retired,
                            reason: None,
                            host_key_fingerprint: None,
                            billing_started_at: None,
                            created_by: "test".into(),
                            created_at: *start,
                            updated_at: *end,
                        })?;
                        for (n, (state, at)) in history.iter().enumerate() {
                            tx.scheduling().add_transition(&TransitionRecord {
                                machine: id.clone(),
                                seq: n as u64 + 1,
                                from: n.checked_sub(1).map(|j| history[j].0),
                                to: *state,
                                actor: "test".into(),
                                reason: None,
                                at: *at,
                            })?;
                        }
                        let rate = Rate {
                            currency: Currency::parse("USD").unwrap(),
                            basis: Basis::Hour,
                            running: *price,
                            stopped: None,
                            source: "test".into(),
                        };
                        Ledger::snapshot(tx, id, *start, Some(&rate))?;
                    }
                    Ok::<_, StoreError>(())
                })
                .unwrap();
        }
    }
    // berth accrues every machine when it starts: kill it at varied moments of that.
    let db = berth.data_dir.join("berth.redb");
    let accrued = |db: &std::path::Path| -> usize {
        let store = Store::redb_at(db).unwrap();
        store
            .read_blocking(|tx| {
                let mut n = 0;
                for (id, ..) in &plan {
                    n += usize::from(tx.cost().accrued_to(id)?.is_some());
                }
                Ok::<_, StoreError>(n)
            })
            .unwrap()
    };
    let mut seen = Vec::new();
    for delay_ms in [40, 120, 250, 400, 700, 1000, 1500, 2500, 4000] {
        berth.start_again();
        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
        berth.kill9();
        seen.push(accrued(&db));
    }
    // The kills fell inside rounds: some machines accrued, others not yet.
    assert!(
        seen.iter().any(|n| *n > 0 && *n < MACHINES as usize),
        "machines accrued at each kill: {seen:?}"
    );
    eprintln!("machines accrued at each kill: {seen:?}");
    berth.start_again();
    let admin = client();
    let (status, round) = call(&admin, &berth, Method::POST, "/api/v1/costs/accrue", None).await;
    assert_eq!(status, 200, "{round}");
    let (status, report) = call(
        &admin,
        &berth,
        Method::GET,
        "/api/v1/costs?month=2026-11&project=team&by=machine",
        None,
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["provisional"], json!([]), "November is closed");
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), MACHINES as usize);
    let charged: std::collections::BTreeMap<&str, (Decimal, u64)> = rows
        .iter()
        .map(|r| {
            let amount: Decimal = r["totals"][0]["amount"].as_str().unwrap().parse().unwrap();
            (
                r["key"].as_str().unwrap(),
                (amount, r["entries"].as_u64().unwrap()),
            )
        })
        .collect();
    for (id, start, end, price) in &plan {
        let exact = Decimal::from(end - start - 1) * price / Decimal::from(HOUR)
            + Decimal::from(1u64) * price / Decimal::from(HOUR);
        let (amount, entries) = charged[id.as_str()];
        // One entry a day it ran, each rounded once to nano-units: nothing lost, nothing
        // charged twice.
        let days = (end - 1) / 86_400_000 - start / 86_400_000 + 1;
        assert_eq!(entries, days, "{id}");
        assert!(
            (amount - exact).abs() <= Decimal::new(entries as i64, 9),
            "{id}: charged {amount}, ran for {exact}"
        );
    }
    berth.kill9();
    let (clean, out) = berth.fsck(false);
    assert!(clean, "{out}");
}
