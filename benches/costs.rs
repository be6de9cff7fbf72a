//! Cost accounting figures (issue 16): a month of hourly accrual for 10,000 machines, and
//! the monthly report read from outside a release `berth`.
//!
//! - **Seeding**: 10,000 machines written straight into a data directory's metadata
//!   (through berth's storage interface, as its services write them): 8,000 in an EC2
//!   cluster, each with its own snapshotted hourly price, and 2,000 hosts of a physical
//!   pool priced by a sheet (EUR), over 20 projects; started between 28 October and
//!   10 November, a tenth retired mid-month, a twentieth taken offline and back.
//! - **Accrual**: 720 hourly rounds through November (each takes every machine from its
//!   cursor to the hour, as the `cost-accrual` job does), then the month's end: the
//!   time per round and the ledger's entries and size on disk (the metadata file's
//!   growth).
//! - **Reports**: berth started on that directory; `GET /api/v1/costs?month=2026-11`
//!   by project, by day, by cluster and by machine, from outside, one at a time and 4 at
//!   once, and again while two processes keep both cores busy.
//!
//! - **PostgreSQL**: the same machines in a throw-away PostgreSQL database, accrued in
//!   daily rounds (the ledger holds closed pieces only, so it is the same ledger), and
//!   the same reports from a berth whose metadata is there.
//!
//! Target: the monthly report by project and by day under 1 s.
//!
//! Run: `cargo bench --bench costs`.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use berth::cost::money::Currency;
use berth::cost::rate::{Basis, Rate};
use berth::cost::sheet::{HostCost, Sheet};
use berth::scheduling::ledger::Ledger;
use berth::storage::store::{Durability, Store};
use berth::storage::tables::cost::SheetVersion;
use berth::storage::tables::scheduling::{
    ClusterRecord, MachineRecord, MachineSpec, MachineState, Probe, TransitionRecord,
};
use rust_decimal::Decimal;

const MACHINES: usize = 10_000;
const POOL_HOSTS: usize = 2_000;
const PROJECTS: usize = 20;
const HOUR: u64 = 3_600_000;
const DAY: u64 = 24 * HOUR;

fn at(rfc3339: &str) -> u64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis() as u64
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
        projects: vec![],
        probe: Probe::None,
        // Disabled: berth neither places on nor reconciles them; their machines are
        // still accrued and reported.
        enabled: false,
        created_by: "admin".into(),
        created_at: 0,
        updated_at: 0,
    }
}

/// Machine `i`'s history: (state, time) from its request on.
fn history(i: usize, start: u64, end: u64) -> Vec<(MachineState, u64)> {
    use MachineState::*;
    let mut h = vec![
        (Requested, start),
        (Provisioning, start + 2_000),
        (Initializing, start + 40_000),
        (Online, start + 95_000),
    ];
    if i % 20 == 3 {
        let off = start + 3 * DAY + (i as u64 % 17) * HOUR;
        h.push((Offline, off));
        h.push((Online, off + 5 * HOUR));
    }
    if i % 10 == 7 {
        h.push((Retiring, end - 60_000));
        h.push((Retired, end));
    }
    h
}

fn seed(store: &Store, november: u64) {
    let pool_sheet = Sheet::Pool {
        currency: Currency::parse("EUR").unwrap(),
        default: Some(HostCost {
            purchase: Decimal::from(9_000),
            purchased: chrono::NaiveDate::from_ymd_opt(2026, 6, 1).unwrap(),
            amortise_months: 36,
            running_monthly: Decimal::from(40),
        }),
        hosts: BTreeMap::new(),
    };
    store
        .write_blocking(Durability::Immediate, |tx| {
            tx.scheduling().put_cluster(&cluster("ec2", "aws-ec2"))?;
            tx.scheduling()
                .put_cluster(&cluster("rack", "static-pool"))?;
            tx.cost().put_sheet_version(&SheetVersion {
                cluster: "rack".into(),
                effective_from: 0,
                sheet: serde_json::to_value(&pool_sheet).unwrap(),
                set_by: "admin".into(),
                set_at: 0,
            })
        })
        .unwrap();
    let ids: Vec<usize> = (0..MACHINES).collect();
    for chunk in ids.chunks(500) {
        store
            .write_blocking(Durability::Immediate, |tx| {
                for &i in chunk {
                    let pool = i < POOL_HOSTS;
                    let start = november - 3 * DAY + (i as u64 * 7_919_993) % (13 * DAY);
                    let end = november + 12 * DAY + (i as u64 * 104_729_017) % (15 * DAY);
                    let history = history(i, start, end);
                    let id = format!("m-{i:032x}");
                    tx.scheduling().put_machine(&MachineRecord {
                        id: id.clone(),
                        cluster: if pool { "rack" } else { "ec2" }.into(),
                        project: format!("project-{:02}", i % PROJECTS),
                        provider_id: Some(format!("host-{i}")),
                        region: None,
                        zone: None,
                        client_token: format!("token-{i}"),
                        spec: MachineSpec {
                            machine_type: Some("m5.large".into()),
                            ..MachineSpec::default()
                        },
                        addresses: vec![],
                        labels: BTreeMap::from([("team".into(), format!("team-{}", i % 7))]),
                        state: history.last().unwrap().0,
                        reason: None,
                        host_key_fingerprint: None,
                        billing_started_at: None,
                        created_by: "bench".into(),
                        created_at: start,
                        updated_at: history.last().unwrap().1,
                    })?;
                    for (n, (state, time)) in history.iter().enumerate() {
                        tx.scheduling().add_transition(&TransitionRecord {
                            machine: id.clone(),
                            seq: n as u64 + 1,
                            from: n.checked_sub(1).map(|j| history[j].0),
                            to: *state,
                            actor: "bench".into(),
                            reason: None,
                            at: *time,
                        })?;
                    }
                    if !pool {
                        let rate = Rate {
                            currency: Currency::parse("USD").unwrap(),
                            basis: Basis::Hour,
                            running: Decimal::new(400 + (i as i64 * 37) % 9_000, 4),
                            stopped: None,
                            source: "provider aws-ec2: m5.large in eu-west-1".into(),
                        };
                        Ledger::snapshot(tx, &id, start, Some(&rate))?;
                    }
                }
                Ok::<_, berth::storage::store::StoreError>(())
            })
            .unwrap();
    }
}

fn file_mib(path: &std::path::Path) -> f64 {
    std::fs::metadata(path).unwrap().len() as f64 / (1024.0 * 1024.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// `runs` reports by `by`, `concurrency` at a time: (p50, max, rows).
async fn reports(
    base: &str,
    auth: &str,
    by: &str,
    runs: usize,
    concurrency: usize,
) -> (Duration, Duration, usize) {
    let http = reqwest::Client::new();
    let url = format!("{base}/api/v1/costs?month=2026-11&by={by}");
    let mut times = Vec::new();
    let mut rows = 0;
    for _ in 0..runs.div_ceil(concurrency) {
        let calls = (0..concurrency).map(|_| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let start = Instant::now();
                let response = http
                    .get(&url)
                    .header("Authorization", auth)
                    .send()
                    .await
                    .unwrap();
                assert!(response.status().is_success(), "{}", response.status());
                let body: serde_json::Value = response.json().await.unwrap();
                (start.elapsed(), body["rows"].as_array().unwrap().len())
            }
        });
        for (took, n) in futures::future::join_all(calls).await {
            times.push(took);
            rows = n;
        }
    }
    times.sort();
    (percentile(&times, 0.5), *times.last().unwrap(), rows)
}

/// Two processes spinning, one per core, until dropped.
struct Busy(Vec<std::process::Child>);

impl Busy {
    fn start() -> Busy {
        Busy(
            (0..2)
                .map(|_| {
                    std::process::Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .spawn()
                        .unwrap()
                })
                .collect(),
        )
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (november, december) = (at("2026-11-01T00:00:00Z"), at("2026-12-01T00:00:00Z"));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let db = data.join("berth.redb");
    {
        let store = Store::redb_at(&db).unwrap();
        let started = Instant::now();
        seed(&store, november);
        println!(
            "seeded {MACHINES} machines ({POOL_HOSTS} pool hosts) in {:.1} s; metadata {:.1} MiB",
            started.elapsed().as_secs_f64(),
            file_mib(&db)
        );
        let before = file_mib(&db);
        let ledger = Ledger::new(store.clone());
        // Machines started before November: accrued up to its start, as a running berth
        // would have.
        ledger.accrue(november).await.unwrap();
        let mut rounds = Vec::new();
        let mut entries = 0;
        let mut hour = november + HOUR;
        while hour <= december {
            let start = Instant::now();
            let round = ledger.accrue(hour).await.unwrap();
            rounds.push(start.elapsed());
            entries += round.entries;
            hour += HOUR;
        }
        let midnights: Vec<Duration> = rounds.iter().skip(23).step_by(24).copied().collect();
        rounds.sort();
        let total: Duration = rounds.iter().sum();
        println!(
            "accrual: {} hourly rounds over {MACHINES} machines in {:.1} s: p50 {:.0} ms, \
             midnight rounds p50 {:.0} ms, max {:.0} ms",
            rounds.len(),
            total.as_secs_f64(),
            percentile(&rounds, 0.5).as_secs_f64() * 1e3,
            {
                let mut m = midnights.clone();
                m.sort();
                percentile(&m, 0.5).as_secs_f64() * 1e3
            },
            rounds.last().unwrap().as_secs_f64() * 1e3,
        );
        println!(
            "ledger: {entries} entries for November; metadata grew {:.1} MiB ({:.0} bytes an entry)",
            file_mib(&db) - before,
            (file_mib(&db) - before) * 1024.0 * 1024.0 / entries as f64
        );
    }
    let server = support::start_berth_node(&data, &[]);
    report_table(&server).await;
    drop(server);

    // The same on PostgreSQL (a throw-away server of Debian's `postgresql`, fsync on).
    // Accrued in daily rounds: the ledger holds closed pieces only, so it is the same
    // ledger as hourly rounds make, and 720 rounds of 10,000 machines' reads over a
    // socket would take most of an hour.
    {
        let database = std::thread::spawn(berth_test_postgres::durable_database)
            .join()
            .unwrap();
        // The PostgreSQL store's client blocks: made, seeded and dropped off the
        // runtime's threads.
        let url = database.clone();
        let store = tokio::task::spawn_blocking(move || {
            let store = Store::postgres(&url, 4).unwrap();
            seed(&store, november);
            store
        })
        .await
        .unwrap();
        let ledger = Ledger::new(store.clone());
        ledger.accrue(november).await.unwrap();
        let mut rounds = Vec::new();
        let mut entries = 0;
        let mut day = november + DAY;
        while day <= december {
            let start = Instant::now();
            entries += ledger.accrue(day).await.unwrap().entries;
            rounds.push(start.elapsed());
            day += DAY;
        }
        rounds.sort();
        println!(
            "PostgreSQL: {} daily rounds, p50 {:.0} ms; {entries} entries",
            rounds.len(),
            percentile(&rounds, 0.5).as_secs_f64() * 1e3
        );
        tokio::task::spawn_blocking(move || drop(store))
            .await
            .unwrap();
        let pg_data = dir.path().join("pg-data");
        let server = support::start_berth_node(
            &pg_data,
            &[
                ("BERTH_METADATA__BACKEND", "postgres"),
                ("BERTH_METADATA__URL", database.as_str()),
                ("BERTH_SERVER__NODE_ID", "bench-1"),
            ],
        );
        report_table(&server).await;
    }
}

/// The month's report by each breakdown, from outside `server`.
async fn report_table(server: &support::Server) {
    let auth = server.auth.clone().unwrap();
    // berth accrues on start (up to now, past November's end): wait for that round, so
    // it does not run beside the reports.
    for _ in 0..2 {
        let response = reqwest::Client::new()
            .post(format!("{}/api/v1/costs/accrue", server.base))
            .header("Authorization", &auth)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }
    // Warm up (the first read pages the file in).
    reports(&server.base, &auth, "project", 1, 1).await;
    println!(
        "| report of November 2026 | rows | p50 | max | p50, 4 at once | p50, both cores busy |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for by in ["project", "day", "cluster", "machine", "label:team"] {
        let (p50, max, rows) = reports(&server.base, &auth, by, 10, 1).await;
        let (p50_4, _, _) = reports(&server.base, &auth, by, 12, 4).await;
        let busy = Busy::start();
        let (p50_busy, _, _) = reports(&server.base, &auth, by, 6, 1).await;
        drop(busy);
        println!(
            "| by {by} | {rows} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms |",
            p50.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3,
            p50_4.as_secs_f64() * 1e3,
            p50_busy.as_secs_f64() * 1e3,
        );
    }
}
