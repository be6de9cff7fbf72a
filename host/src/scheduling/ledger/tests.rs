//! The ledger against both backends: machines written with their histories at chosen
//! times, accrued, and reported.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use super::{Ledger, report};
use crate::cost::money::Currency;
use crate::cost::rate::{Basis, Rate};
use crate::cost::report::{By, month};
use crate::cost::sheet::{HostCost, Sheet};
use crate::cost::testing::at;
use crate::storage::store::{Durability, Store, StoreError, WriteTx};
use crate::storage::tables::cost::{EntryFilter, SheetVersion};
use crate::storage::tables::scheduling::{
    ClusterRecord, MachineRecord, MachineSpec, MachineState, Probe, TransitionRecord,
};

const HOUR: u64 = 3_600_000;

fn write(store: &Store, f: impl FnMut(&dyn WriteTx) -> Result<(), StoreError>) {
    store.write_blocking(Durability::Immediate, f).unwrap();
}

fn cluster(name: &str, provider: &str) -> ClusterRecord {
    ClusterRecord {
        name: name.into(),
        provider: provider.into(),
        regions: vec![],
        endpoint: None,
        settings: serde_json::Value::Null,
        sealed_credentials: None,
        labels: BTreeMap::new(),
        projects: vec!["web".into(), "data".into()],
        probe: Probe::None,
        enabled: true,
        created_by: "admin".into(),
        created_at: 0,
        updated_at: 0,
    }
}

/// A machine of `cluster` for `project` that went through `history` (state, time); its
/// record shows the last state.
fn machine(
    tx: &dyn WriteTx,
    id: &str,
    cluster: &str,
    project: &str,
    host: Option<&str>,
    history: &[(MachineState, u64)],
) -> Result<(), StoreError> {
    let record = MachineRecord {
        id: id.into(),
        cluster: cluster.into(),
        project: project.into(),
        provider_id: host.map(str::to_string),
        region: None,
        zone: None,
        client_token: format!("token-{id}"),
        spec: MachineSpec {
            machine_type: Some("m1.small".into()),
            ..MachineSpec::default()
        },
        addresses: vec![],
        labels: BTreeMap::from([("team".to_string(), format!("team-{}", id.len() % 2))]),
        state: history.last().unwrap().0,
        reason: None,
        host_key_fingerprint: None,
        billing_started_at: None,
        created_by: "alice".into(),
        created_at: history[0].1,
        updated_at: history.last().unwrap().1,
    };
    tx.scheduling().put_machine(&record)?;
    for (i, (state, time)) in history.iter().enumerate() {
        tx.scheduling().add_transition(&TransitionRecord {
            machine: id.into(),
            seq: i as u64 + 1,
            from: i.checked_sub(1).map(|j| history[j].0),
            to: *state,
            actor: "alice".into(),
            reason: None,
            at: *time,
        })?;
    }
    Ok(())
}

fn hourly(price: &str) -> Rate {
    Rate {
        currency: Currency::parse("USD").unwrap(),
        basis: Basis::Hour,
        running: price.parse().unwrap(),
        stopped: None,
        source: "provider test: m1.small".into(),
    }
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// November 2026's report of every entry, grouped `by`.
async fn november(store: &Store, by: By) -> crate::cost::report::Report {
    let (from, to) = month("2026-11").unwrap();
    let filter = EntryFilter {
        from,
        to,
        ..Default::default()
    };
    report(store, filter, by, to).await.unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn total_usd(report: &crate::cost::report::Report) -> Decimal {
    report
        .totals
        .iter()
        .find(|m| m.currency.code() == "USD")
        .map(|m| m.amount)
        .unwrap_or_default()
}

pub(super) fn a_cloud_machine_is_charged_while_it_runs_and_every_breakdown_adds_up(store: Store) {
    use MachineState::*;
    let created = at("2026-11-14T09:00:00Z");
    let running = at("2026-11-14T09:01:00Z");
    let retired = at("2026-11-16T13:05:45Z");
    write(&store, |tx| {
        tx.scheduling().put_cluster(&cluster("aws", "aws-ec2"))?;
        machine(
            tx,
            "m-1",
            "aws",
            "web",
            None,
            &[
                (Requested, created),
                (Provisioning, created + 5_000),
                (Initializing, running),
                (Online, running + 120_000),
                (Offline, at("2026-11-15T20:00:00Z")),
                (Retiring, retired - 30_000),
                (Retired, retired),
            ],
        )?;
        Ledger::snapshot(tx, "m-1", created, Some(&hourly("0.10")))
    });
    let ledger = Ledger::new(store.clone());
    let (_, to) = month("2026-11").unwrap();
    rt().block_on(async {
        let round = ledger.accrue(to).await.unwrap();
        assert_eq!((round.machines, round.entries), (1, 3));
        // Accrued already: nothing more, however often asked.
        assert_eq!(ledger.accrue(to).await.unwrap().entries, 0);
        let whole = november(&store, By::Project).await;
        let seconds = (retired - running) / 1000;
        let exact = Decimal::from(seconds) * d("0.10") / Decimal::from(3600);
        assert!(
            (total_usd(&whole) - exact).abs() <= d("0.0000000015"),
            "{whole:?}"
        );
        for by in [By::Day, By::Machine, By::Cluster, By::Label("team".into())] {
            let parts = november(&store, by.clone()).await;
            let sum: Decimal = parts
                .rows
                .iter()
                .flat_map(|r| r.totals.iter().map(|m| m.amount))
                .sum();
            assert_eq!(sum, total_usd(&whole), "{by:?}");
            assert_eq!(parts.totals, whole.totals, "{by:?}");
        }
        let days = november(&store, By::Day).await;
        let keys: Vec<&str> = days.rows.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["2026-11-14", "2026-11-15", "2026-11-16"]);
    });
}

pub(super) fn accrual_resumes_where_it_stopped_and_never_charges_twice(store: Store) {
    use MachineState::*;
    let start = at("2026-11-02T03:00:00Z");
    write(&store, |tx| {
        tx.scheduling().put_cluster(&cluster("aws", "aws-ec2"))?;
        machine(
            tx,
            "m-1",
            "aws",
            "web",
            None,
            &[
                (Requested, start),
                (Initializing, start),
                (Online, start + 1),
            ],
        )?;
        Ledger::snapshot(tx, "m-1", start, Some(&hourly("0.0464")))
    });
    let ledger = Ledger::new(store.clone());
    let end = at("2026-11-09T17:30:00Z");
    rt().block_on(async {
        // Rounds at uneven times, as a process that restarts now and then would make.
        let mut cut = start + 5 * HOUR + 17_000;
        while cut < end {
            ledger.accrue(cut).await.unwrap();
            ledger.accrue(cut).await.unwrap();
            cut += 11 * HOUR + 3_001;
        }
        ledger.accrue(end).await.unwrap();
        let entries = store
            .read_blocking(|tx| {
                tx.cost().entries(&EntryFilter {
                    from: 0,
                    to: u64::MAX / 2,
                    ..Default::default()
                })
            })
            .unwrap();
        // Closed pieces tile the running time up to the last midnight: no gap, no
        // overlap, one entry a day however many rounds ran.
        let midnight = at("2026-11-09T00:00:00Z");
        assert_eq!(entries.first().unwrap().from, start);
        assert_eq!(entries.last().unwrap().to, midnight);
        assert_eq!(entries.len(), 7);
        for pair in entries.windows(2) {
            assert_eq!(pair[0].to, pair[1].from);
        }
        let sum: Decimal = entries.iter().map(|e| e.amount).sum();
        let exact = |to: u64| Decimal::from(to - start) * d("0.0464") / Decimal::from(HOUR);
        let bound = Decimal::new(entries.len() as i64 + 1, 9);
        assert!(
            (sum - exact(midnight)).abs() <= bound,
            "{sum} vs {exact}",
            exact = exact(midnight)
        );
        // The report adds the open piece, up to the time it is asked at.
        let (from, to) = month("2026-11").unwrap();
        let filter = EntryFilter {
            from,
            to,
            ..Default::default()
        };
        let r = report(&store, filter.clone(), By::Day, end).await.unwrap();
        assert!((total_usd(&r) - exact(end)).abs() <= bound);
        assert_eq!(r.as_of, end);
        assert_eq!(r.rows.last().unwrap().key, "2026-11-09");
        let open = Decimal::from(end - midnight) * d("0.0464") / Decimal::from(HOUR);
        assert_eq!(r.provisional.len(), 1);
        assert!((r.provisional[0].amount - open).abs() <= bound);
        // By machine (from entries, not daily totals), the same total.
        let m = report(&store, filter, By::Machine, end).await.unwrap();
        assert_eq!(m.totals, r.totals);
    });
}

pub(super) fn a_pool_host_is_charged_its_sheet_from_each_versions_time(store: Store) {
    use MachineState::*;
    let host_cost = |running: &str| HostCost {
        purchase: d("7200"),
        purchased: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        amortise_months: 36,
        running_monthly: running.parse().unwrap(),
    };
    let sheet = |running: &str| {
        serde_json::to_value(Sheet::Pool {
            currency: Currency::parse("EUR").unwrap(),
            default: Some(host_cost(running)),
            hosts: BTreeMap::new(),
        })
        .unwrap()
    };
    let allocated = at("2026-11-10T00:00:00Z");
    let change = at("2026-11-20T12:00:00Z");
    let released = at("2026-11-25T00:00:00Z");
    write(&store, |tx| {
        tx.scheduling()
            .put_cluster(&cluster("rack", "static-pool"))?;
        tx.cost().put_sheet_version(&SheetVersion {
            cluster: "rack".into(),
            effective_from: 0,
            sheet: sheet("100"),
            set_by: "admin".into(),
            set_at: 0,
        })?;
        tx.cost().put_sheet_version(&SheetVersion {
            cluster: "rack".into(),
            effective_from: change,
            sheet: sheet("400"),
            set_by: "admin".into(),
            set_at: change,
        })?;
        machine(
            tx,
            "m-pool",
            "rack",
            "data",
            Some("h1"),
            &[
                (Requested, allocated - 1_000),
                (Provisioning, allocated),
                (Online, allocated + 60_000),
                (Retired, released),
            ],
        )
    });
    rt().block_on(async {
        let (_, to) = month("2026-11").unwrap();
        Ledger::new(store.clone()).accrue(to).await.unwrap();
        let r = november(&store, By::Project).await;
        // 7200 / 36 = 200 a month of purchase; November has 30 days. 10.5 days at
        // 300 / 30 a day, then 4.5 days at 600 / 30.
        let expected = d("10.5") * d("10") + d("4.5") * d("20");
        assert_eq!(r.totals.len(), 1);
        assert_eq!(r.totals[0].currency.code(), "EUR");
        assert!(
            (r.totals[0].amount - expected).abs() <= d("0.00000002"),
            "{r:?}"
        );
        assert_eq!(r.rows[0].key, "data");
    });
}

/// A cloud machine stopped and started twice: its running time at the flavor's price,
/// its stopped time (from when the provider said stopped until it said running again) at
/// the disk price; a flavor without a disk price charges nothing while stopped; and a
/// pool host that is powered off stays charged, as it stays allocated.
pub(super) fn a_stopped_cloud_machine_pays_its_disks_and_a_stopped_pool_host_stays_charged(
    store: Store,
) {
    use MachineState::*;
    let flavors = serde_json::json!({
        "kind": "flavors", "currency": "USD",
        "flavors": {
            "m1.small": {"per_hour": "0.20", "stopped_per_hour": "0.02"},
            "m1.bare": {"per_hour": "0.30"},
        },
    });
    let pool = serde_json::json!({
        "kind": "pool", "currency": "USD",
        "default": {"purchase": "0", "purchased": "2026-01-01", "amortise_months": 1,
                    "running_monthly": "72"},
    });
    let t = |s: &str| at(&format!("2026-11-{s}Z"));
    // Online 3 h; stopping 90 s (still running); stopped over a midnight; starting
    // 45 s (still stopped); running again, then stopped out of band and retired stopped.
    let history = [
        (Requested, t("03T08:00:00")),
        (Provisioning, t("03T08:00:05")),
        (Initializing, t("03T08:01:00")),
        (Online, t("03T08:02:00")),
        (Stopping, t("03T11:01:00")),
        (Stopped, t("03T11:02:30")),
        (Starting, t("04T09:30:00")),
        (Initializing, t("04T09:30:45")),
        (Online, t("04T09:31:10")),
        (Stopped, t("05T00:00:00")),
        (Retiring, t("06T12:00:00")),
        (Retired, t("06T12:00:20")),
    ];
    write(&store, |tx| {
        tx.scheduling().put_cluster(&cluster("osp", "openstack"))?;
        tx.scheduling()
            .put_cluster(&cluster("rack", "static-pool"))?;
        for (name, sheet) in [("osp", &flavors), ("rack", &pool)] {
            tx.cost().put_sheet_version(&SheetVersion {
                cluster: name.into(),
                effective_from: 0,
                sheet: sheet.clone(),
                set_by: "admin".into(),
                set_at: 0,
            })?;
        }
        machine(tx, "m-disk", "osp", "web", None, &history)?;
        machine(tx, "m-nodisk", "osp", "data", None, &history)?;
        let mut bare = tx.scheduling().machine("m-nodisk")?.unwrap();
        bare.spec.machine_type = Some("m1.bare".into());
        tx.scheduling().put_machine(&bare)?;
        machine(
            tx,
            "m-host",
            "rack",
            "web",
            Some("h1"),
            &[
                (Requested, t("10T00:00:00")),
                (Provisioning, t("10T00:00:00")),
                (Initializing, t("10T00:00:10")),
                (Online, t("10T00:01:00")),
                (Stopping, t("10T06:00:00")),
                (Stopped, t("10T06:01:00")),
                (Starting, t("11T00:00:00")),
                (Initializing, t("11T00:02:00")),
                (Online, t("11T00:03:00")),
                (Retiring, t("12T00:00:00")),
                (Retired, t("12T00:00:00")),
            ],
        )
    });
    // The independent computation: seconds in each phase by hand.
    // Charged from initializing (the provider gave no billing start of its own);
    // retiring a stopped machine is still stopped time.
    let running_secs =
        (t("03T11:02:30") - t("03T08:01:00")) / 1000 + (t("05T00:00:00") - t("04T09:30:45")) / 1000;
    let stopped_secs =
        (t("04T09:30:45") - t("03T11:02:30")) / 1000 + (t("06T12:00:20") - t("05T00:00:00")) / 1000;
    let per_hour = |price: &str, secs: u64| Decimal::from(secs) * d(price) / Decimal::from(3600);
    let disk = per_hour("0.20", running_secs) + per_hour("0.02", stopped_secs);
    let no_disk = per_hour("0.30", running_secs);
    // The pool host: two days allocated at 72 / 30 days, its hours off included.
    let host = d("72") / d("30") * d("2");
    rt().block_on(async {
        let (_, to) = month("2026-11").unwrap();
        Ledger::new(store.clone()).accrue(to).await.unwrap();
        let by_machine = november(&store, By::Machine).await;
        let amount = |key: &str| -> Decimal {
            by_machine
                .rows
                .iter()
                .find(|r| r.key == key)
                .map(|r| r.totals.iter().map(|m| m.amount).sum())
                .unwrap_or_default()
        };
        let near = |a: Decimal, b: Decimal| (a - b).abs() <= d("0.00000001");
        assert!(
            near(amount("m-disk"), disk),
            "{} vs {disk}",
            amount("m-disk")
        );
        assert!(
            near(amount("m-nodisk"), no_disk),
            "{} vs {no_disk}",
            amount("m-nodisk")
        );
        assert!(
            near(amount("m-host"), host),
            "{} vs {host}",
            amount("m-host")
        );
        // The disk time is in the ledger as stopped entries, and the running time as
        // running ones; they add up to the machine's total.
        let entries = store
            .read_blocking(|tx| {
                tx.cost().entries(&EntryFilter {
                    from: 0,
                    to: u64::MAX / 2,
                    machine: Some("m-disk".into()),
                    ..Default::default()
                })
            })
            .unwrap();
        let phase_sum = |phase| -> Decimal {
            entries
                .iter()
                .filter(|e| e.phase == phase)
                .map(|e| e.amount)
                .sum()
        };
        use crate::storage::tables::cost::BilledPhase;
        assert!(near(
            phase_sum(BilledPhase::Stopped),
            per_hour("0.02", stopped_secs)
        ));
        assert!(near(
            phase_sum(BilledPhase::Running),
            per_hour("0.20", running_secs)
        ));
        let whole = november(&store, By::Project).await;
        assert!(near(total_usd(&whole), disk + no_disk + host), "{whole:?}");
    });
}

pub(super) fn many_machines_over_a_month_sum_to_the_cent(store: Store, machines: u64) {
    use MachineState::*;
    let (from, to) = month("2026-11").unwrap();
    // Deterministic spread of start, end and price per machine.
    let plan: Vec<(String, u64, u64, Decimal)> = (0..machines)
        .map(|i| {
            let start = from + (i * 7_919_993) % (20 * 86_400_000);
            let end =
                (start + 3_600_000 + (i * 104_729_017) % (15 * 86_400_000)).min(to + 86_400_000);
            let price = Decimal::new(100 + (i as i64 * 37) % 4_900, 4);
            (format!("m-{i:05}"), start, end, price)
        })
        .collect();
    let chunks: Vec<_> = plan.chunks(100).map(|c| c.to_vec()).collect();
    write(&store, |tx| {
        tx.scheduling().put_cluster(&cluster("aws", "aws-ec2"))
    });
    for chunk in chunks {
        write(&store, |tx| {
            for (id, start, end, price) in &chunk {
                machine(
                    tx,
                    id,
                    "aws",
                    if id.ends_with('7') { "data" } else { "web" },
                    None,
                    &[
                        (Requested, *start),
                        (Initializing, *start),
                        (Online, *start + 1),
                        (Retired, *end),
                    ],
                )?;
                Ledger::snapshot(tx, id, *start, Some(&hourly(&price.to_string())))?;
            }
            Ok(())
        });
    }
    let ledger = Ledger::new(store.clone());
    rt().block_on(async {
        // A round every 29 hours, then the month's end.
        let mut cut = from + 29 * HOUR;
        while cut < to {
            ledger.accrue(cut).await.unwrap();
            cut += 29 * HOUR;
        }
        ledger.accrue(to).await.unwrap();
        let r = november(&store, By::Project).await;
        // Independently: each machine's running time within the month at its price.
        let exact: Decimal = plan
            .iter()
            .map(|(_, start, end, price)| {
                let ms = (*end).min(to) - *start;
                Decimal::from(ms) * price / Decimal::from(HOUR)
            })
            .sum();
        let entries: u64 = r.rows.iter().map(|row| row.entries).sum();
        assert!((total_usd(&r) - exact).abs() <= Decimal::new(entries as i64, 9));
        assert_eq!(total_usd(&r).round_dp(2), exact.round_dp(2));
        let parts: Decimal = r
            .rows
            .iter()
            .flat_map(|row| row.totals.iter().map(|m| m.amount))
            .sum();
        assert_eq!(parts, total_usd(&r));
        assert_eq!(r.rows.len(), 2);
        assert!(r.provisional.is_empty());
        // Daily totals (by project and day) and entries (by machine) agree exactly.
        for by in [By::Day, By::Machine, By::Cluster] {
            let other = november(&store, by.clone()).await;
            assert_eq!(other.totals, r.totals, "{by:?}");
            let n: u64 = other.rows.iter().map(|row| row.entries).sum();
            assert_eq!(n, entries, "{by:?}");
        }
    });
}

pub(super) fn a_pools_unallocated_hosts_are_its_idle_cost_not_a_projects(store: Store) {
    use crate::storage::tables::scheduling::PoolHostRecord;
    use MachineState::*;
    let sheet = Sheet::Pool {
        currency: Currency::parse("EUR").unwrap(),
        default: Some(HostCost {
            purchase: d("7200"),
            purchased: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            amortise_months: 36,
            running_monthly: d("100"),
        }),
        hosts: BTreeMap::new(),
    };
    let allocated = at("2026-11-10T00:00:00Z");
    let released = at("2026-11-25T00:00:00Z");
    write(&store, |tx| {
        tx.scheduling()
            .put_cluster(&cluster("rack", "static-pool"))?;
        tx.cost().put_sheet_version(&SheetVersion {
            cluster: "rack".into(),
            effective_from: 0,
            sheet: serde_json::to_value(&sheet).unwrap(),
            set_by: "admin".into(),
            set_at: 0,
        })?;
        for name in ["h1", "h2"] {
            tx.scheduling().put_pool_host(&PoolHostRecord {
                cluster: "rack".into(),
                name: name.into(),
                address: "127.0.0.1".into(),
                ssh_port: 22,
                cpus: 8,
                memory_mib: 8192,
                disks_gib: vec![],
                labels: BTreeMap::new(),
                rack: None,
                zone: None,
                power: None,
                machine: None,
                needs_init: false,
            })?;
        }
        machine(
            tx,
            "m-pool",
            "rack",
            "data",
            Some("h1"),
            &[
                (Requested, allocated - 1_000),
                (Provisioning, allocated),
                (Online, allocated + 60_000),
                (Retired, released),
            ],
        )
    });
    rt().block_on(async {
        let (_, to) = month("2026-11").unwrap();
        Ledger::new(store.clone()).accrue(to).await.unwrap();
        // 300 EUR a host-month, 10 a day: data held h1 for 15 days; h1's other 15 days
        // and all 30 of h2's are the pool's.
        let r = november(&store, By::Project).await;
        assert!(
            (r.totals[0].amount - d("150")).abs() <= d("0.0000001"),
            "{r:?}"
        );
        assert_eq!(r.idle.len(), 1, "{r:?}");
        assert_eq!(r.idle[0].key, "rack");
        let idle = r.idle[0].totals[0].amount;
        assert!((idle - d("450")).abs() <= d("0.0000001"), "{idle}");
        // Idle is no project's: a project's report has none.
        let (from, to) = month("2026-11").unwrap();
        let data = report(
            &store,
            EntryFilter {
                from,
                to,
                project: Some("data".into()),
                ..Default::default()
            },
            By::Day,
            to,
        )
        .await
        .unwrap();
        assert!(data.idle.is_empty());
        assert_eq!(data.totals, r.totals);
    });
}

pub(super) fn a_report_converts_only_where_asked_at_each_days_rate(store: Store) {
    use crate::storage::tables::cost::ExchangeRate;
    use MachineState::*;
    let eur = |monthly: &str| Rate {
        currency: Currency::parse("EUR").unwrap(),
        basis: Basis::Hour,
        running: monthly.parse().unwrap(),
        stopped: None,
        source: "provider test".into(),
    };
    let day3 = at("2026-11-03T00:00:00Z");
    let day4 = at("2026-11-04T00:00:00Z");
    write(&store, |tx| {
        tx.scheduling().put_cluster(&cluster("aws", "aws-ec2"))?;
        tx.scheduling().put_cluster(&cluster("ovh", "openstack"))?;
        machine(
            tx,
            "m-usd",
            "aws",
            "web",
            None,
            &[
                (Requested, day3),
                (Initializing, day3),
                (Retired, day3 + 10 * HOUR),
            ],
        )?;
        Ledger::snapshot(tx, "m-usd", day3, Some(&hourly("0.10")))?;
        // Two hours on the 3rd, two on the 4th, at 1 EUR an hour.
        machine(
            tx,
            "m-eur",
            "ovh",
            "web",
            None,
            &[
                (Requested, day4 - 2 * HOUR),
                (Initializing, day4 - 2 * HOUR),
                (Retired, day4 + 2 * HOUR),
            ],
        )?;
        Ledger::snapshot(tx, "m-eur", day4 - 2 * HOUR, Some(&eur("1")))?;
        for (from, rate) in [(0, "1.10"), (day4, "1.20")] {
            tx.cost().put_exchange_rate(&ExchangeRate {
                from: "EUR".into(),
                to: "USD".into(),
                effective_from: from,
                rate: d(rate),
                set_by: "admin".into(),
                set_at: 0,
            })?;
        }
        Ok(())
    });
    rt().block_on(async {
        let (from, to) = month("2026-11").unwrap();
        Ledger::new(store.clone()).accrue(to).await.unwrap();
        let filter = EntryFilter {
            from,
            to,
            ..Default::default()
        };
        // Not asked: two currencies, never added together.
        let plain = november(&store, By::Project).await;
        assert_eq!(plain.totals.len(), 2, "{plain:?}");
        assert!(plain.conversion.is_none());
        let usd = Currency::parse("USD").unwrap();
        let r = super::report_in(&store, filter.clone(), By::Day, to, Some(usd.clone()))
            .await
            .unwrap();
        // Asked: the exact figures unchanged, and beside them 1 USD + 2 × 1.10 + 2 × 1.20.
        assert_eq!(r.totals, plain.totals);
        let c = r.conversion.unwrap();
        assert_eq!(c.to, "USD");
        assert_eq!(c.totals.len(), 1);
        assert_eq!(c.totals[0].amount, d("5.6"), "{c:?}");
        assert_eq!(c.rates.len(), 2);
        assert!(c.note.contains("exact"));
        // No rate for a currency on a day: refused, saying which.
        let cny = Currency::parse("CNY").unwrap();
        let refused = super::report_in(&store, filter, By::Day, to, Some(cny)).await;
        assert!(matches!(
            refused,
            Err(crate::cost::report::ReportError::NoExchangeRate { .. })
        ));
    });
}

macro_rules! both_backends {
    ($($case:ident $(, $arg:expr)?);* $(;)?) => {
        mod redb {
            $(#[test] fn $case() { let (store, _dir) = crate::storage::testing::redb_store(); super::$case(store $(, $arg)?) })*
        }
        mod postgres {
            $(#[test] fn $case() { super::$case(crate::storage::testing::postgres_store() $(, $arg)?) })*
        }
    };
}

both_backends!(
    a_cloud_machine_is_charged_while_it_runs_and_every_breakdown_adds_up;
    accrual_resumes_where_it_stopped_and_never_charges_twice;
    a_pool_host_is_charged_its_sheet_from_each_versions_time;
    a_pools_unallocated_hosts_are_its_idle_cost_not_a_projects;
    a_report_converts_only_where_asked_at_each_days_rate;
    a_stopped_cloud_machine_pays_its_disks_and_a_stopped_pool_host_stays_charged;
    many_machines_over_a_month_sum_to_the_cent, 1000;
);
