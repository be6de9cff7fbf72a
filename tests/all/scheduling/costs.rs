//! Cost accounting as a platform team meets it: a physical pool priced by its sheet, a
//! machine on it accrued and reported through the API and the command line (JSON, CSV,
//! a table), who may read which report, and sheets refused with their reasons.

use reqwest::Method;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::{answering_port, call, create_machine, host, machine_in, pool_for, quick_berth};
use crate::plugins::cli;
use crate::replication::api;
use crate::support::*;

fn pool_sheet(running_monthly: &str) -> Value {
    json!({"kind": "pool", "currency": "EUR", "default": {
        "purchase": "7200", "purchased": "2026-01-01", "amortise_months": 36,
        "running_monthly": running_monthly}})
}

/// PUTs `body` to `path` and expects a 400 whose detail says `why`.
async fn put_refused(admin: &reqwest::Client, berth: &Berth, path: &str, body: Value, why: &str) {
    let (status, problem) = call(admin, berth, Method::PUT, path, Some(body.clone())).await;
    assert_eq!(status, 400, "{body}: {problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains(why),
        "{body}: {problem}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_machine_is_charged_its_sheet_and_reported_to_its_project() {
    let berth = quick_berth();
    let port = answering_port();
    pool_for(
        &berth,
        "web",
        "rack",
        json!([host("h1", port, 8, 16384), host("h2", port, 8, 16384)]),
    )
    .await;
    let admin = client();
    let (status, version) = call(
        &admin,
        &berth,
        Method::PUT,
        "/api/v1/clusters/rack/price-sheet",
        Some(json!({"sheet": pool_sheet("100")})),
    )
    .await;
    assert_eq!(status, 201, "{version}");

    // Sheets that would price wrongly are refused, saying why.
    for (body, why) in [
        (
            json!({"sheet": pool_sheet("100"), "effective_from": "2020-01-01T00:00:00Z"}),
            "in the past",
        ),
        (json!({"sheet": pool_sheet("-5")}), "negative"),
        (
            json!({"sheet": {"kind": "flavors", "currency": "EUR", "flavors": {}}}),
            "physical pool",
        ),
        (
            json!({"sheet": {"kind": "pool", "currency": "euro", "default": null}}),
            "currency",
        ),
        (json!({"sheet": pool_sheet("1"), "extra": 1}), "extra"),
    ] {
        put_refused(
            &admin,
            &berth,
            "/api/v1/clusters/rack/price-sheet",
            body,
            why,
        )
        .await;
    }
    let (status, _) = call(
        &admin,
        &berth,
        Method::PUT,
        "/api/v1/clusters/nope/price-sheet",
        Some(json!({"sheet": pool_sheet("1")})),
    )
    .await;
    assert_eq!(status, 404);

    let started = std::time::SystemTime::now();
    let id = create_machine(&berth, "web", "rack", 4, 8192, None).await;
    machine_in(&berth, &id, "online").await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (ok, out, err) = cli(
        &berth,
        &["cost", "accrue", "--until", "now", "--output", "json"],
    );
    assert!(ok, "{err}");
    let round: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(round["ran"], true, "{round}");
    // The machine's piece is still open (no midnight or change of price since it was
    // allocated): it stays out of the ledger until it closes, and a second run closes
    // nothing more.
    let (ok, out, _) = cli(
        &berth,
        &["cost", "accrue", "--until", "now", "--output", "json"],
    );
    assert!(ok);
    let again: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(again["entries"].as_u64(), Some(0), "{again}");

    let month = chrono::Utc::now().format("%Y-%m").to_string();
    let (status, report) = call(
        &admin,
        &berth,
        Method::GET,
        &format!("/api/v1/costs?month={month}&project=web&by=machine"),
        None,
    )
    .await;
    // The report counts up to when it is made.
    let elapsed_ms = started.elapsed().unwrap().as_millis() as u64;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["rows"][0]["key"], id.as_str(), "{report}");
    let money = &report["totals"][0];
    assert_eq!(money["currency"], "EUR");
    let amount: Decimal = money["amount"].as_str().unwrap().parse().unwrap();
    // 7200 over 36 months plus 100 is 300 a month; at most that share of the time the
    // test ran, and more than nothing.
    let (from, to) = (
        report["from"].as_u64().unwrap(),
        report["to"].as_u64().unwrap(),
    );
    let ceiling = Decimal::from(300) * Decimal::from(elapsed_ms) / Decimal::from(to - from);
    assert!(
        amount > Decimal::ZERO && amount <= ceiling,
        "{amount} vs {ceiling}"
    );
    assert_eq!(report["unpriced_seconds"], 0);
    // Reported as provisional until it closes.
    let provisional: Decimal = report["provisional"][0]["amount"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        provisional > Decimal::ZERO && provisional <= amount,
        "{report}"
    );

    // The same as CSV (exact) and as a table (rounded to the cent).
    let (ok, csv, err) = cli(
        &berth,
        &[
            "cost",
            "report",
            "--project",
            "web",
            "--by",
            "day",
            "--output",
            "csv",
        ],
    );
    assert!(ok, "{err}");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "key,currency,amount,unpriced_seconds,entries");
    // Exact, and later than the JSON report: at least its amount, as the open piece
    // has grown since.
    let total: Decimal = lines
        .iter()
        .find_map(|l| l.strip_prefix("(total),EUR,"))
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("{csv}"))
        .parse()
        .unwrap();
    assert!(total >= amount, "{csv}");
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with("(of which provisional),EUR,"),
        "{csv}"
    );
    let (ok, table, err) = cli(&berth, &["cost", "report", "--project", "web"]);
    assert!(ok, "{err}");
    assert!(table.contains("web") && table.contains(" EUR"), "{table}");

    // A stranger reads no project's costs; a report across projects is the admins'.
    api(
        &berth,
        Method::POST,
        "/api/v1/users",
        Some(json!({"username": "eve", "password": "eve's long password"})),
    )
    .await;
    let eve = client_as("eve", "eve's long password");
    let (status, _) = call(
        &eve,
        &berth,
        Method::GET,
        &format!("/api/v1/costs?month={month}&project=web"),
        None,
    )
    .await;
    assert!(status == 403 || status == 404, "{status}");
    let (status, problem) = call(
        &eve,
        &berth,
        Method::GET,
        &format!("/api/v1/costs?month={month}"),
        None,
    )
    .await;
    assert_eq!(status, 400, "{problem}");
    for bad in [
        "month=2026-13",
        "month=2026-11&by=week",
        "from=yesterday&to=today",
        "month=2026-11&format=xml",
    ] {
        let (status, problem) = call(
            &admin,
            &berth,
            Method::GET,
            &format!("/api/v1/costs?{bad}"),
            None,
        )
        .await;
        assert_eq!(status, 400, "{bad}: {problem}");
    }
    // Accrual never runs ahead of the clock.
    let (status, problem) = call(
        &admin,
        &berth,
        Method::POST,
        "/api/v1/costs/accrue?until=2999-01-01T00:00:00Z",
        None,
    )
    .await;
    assert_eq!(status, 400, "{problem}");
}

/// A webhook receiver that records what it is sent.
async fn receiver() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>,
) {
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let keep = keep.clone();
                async move {
                    let kind = headers["x-berth-event"].to_str().unwrap().to_string();
                    keep.lock()
                        .unwrap()
                        .push((kind, serde_json::from_slice(&body).unwrap()));
                    axum::http::StatusCode::NO_CONTENT
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

/// Budgets as a team lead meets them: an enforced budget refuses the create that would
/// take the month past it (four at once: exactly the ones that fit are made), with the
/// figures; a budget's thresholds each warn once a month, audited and posted to the
/// webhook; and only admins set budgets, while members read them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_warn_at_their_thresholds_and_refuse_what_would_exceed_them() {
    let (hook, received) = receiver().await;
    let berth = Berth::start_configured(
        &[],
        &[
            ("BERTH_SCHEDULING__JOB_LEASE_SECS", "2"),
            ("BERTH_SCHEDULING__WEBHOOK_URL", hook.as_str()),
        ],
    );
    let port = answering_port();
    let hosts = |prefix: &str| {
        json!(
            (0..4)
                .map(|i| host(&format!("{prefix}{i}"), port, 4, 4096))
                .collect::<Vec<_>>()
        )
    };
    pool_for(&berth, "web", "rack", hosts("r")).await;
    pool_for(&berth, "data", "gold", hosts("g")).await;
    let admin = client();
    // rack: 300 EUR a month a host. gold: about 1,000 EUR a second.
    for (pool, running) in [("rack", "100"), ("gold", "2678400000")] {
        let (status, body) = call(
            &admin,
            &berth,
            Method::PUT,
            &format!("/api/v1/clusters/{pool}/price-sheet"),
            Some(json!({"sheet": pool_sheet(running)})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }

    // Enforced: room for two hosts until the month ends, not three.
    let now = chrono::Utc::now();
    let month = now.format("%Y-%m").to_string();
    let first = chrono::NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").unwrap();
    let next = first.checked_add_months(chrono::Months::new(1)).unwrap();
    let ms = |d: chrono::NaiveDate| d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_millis();
    let (start, end) = (ms(first), ms(next));
    let left = Decimal::from(end - now.timestamp_millis()) / Decimal::from(end - start);
    let budget = (Decimal::from(300) * left * Decimal::new(25, 1)).round_dp(2);
    let (ok, out, err) = cli(
        &berth,
        &[
            "cost",
            "budget",
            "set",
            "web",
            "eur",
            "--monthly",
            &budget.to_string(),
            "--enforce",
            "--output",
            "json",
        ],
    );
    assert!(ok, "{err}");
    let set: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (set["currency"].as_str(), set["enforce"].as_bool()),
        (Some("EUR"), Some(true))
    );
    assert_eq!(set["thresholds"], json!([50, 80, 100]));
    let creates = (0..4).map(|i| {
        let (admin, url) = (admin.clone(), berth.url.clone());
        async move {
            let r = admin
                .post(format!("{url}/api/v1/machines"))
                .json(&json!({"project": "web", "cluster": "rack",
                              "spec": {"cpus": 1, "memory_mib": 512},
                              "client_token": format!("budget-{i}")}))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    });
    let outcomes = futures::future::join_all(creates).await;
    let made = outcomes
        .iter()
        .filter(|(s, _)| *s == 201 || *s == 202)
        .count();
    let refused: Vec<&Value> = outcomes
        .iter()
        .filter(|(s, _)| *s == 409)
        .map(|(_, b)| b)
        .collect();
    assert_eq!((made, refused.len()), (2, 2), "{outcomes:?}");
    let why = refused[0]["detail"].as_str().unwrap();
    assert!(
        why.contains(&format!(
            "would exceed its budget of {budget:.2} EUR for {month}"
        )) && why.contains("spent so far")
            && why.contains("this machine would cost"),
        "{why}"
    );

    // Warnings: data's month on gold crosses 50, 100 and 200 % of 1,000 EUR within
    // seconds; each is recorded once, audited and posted.
    let (ok, _, err) = cli(
        &berth,
        &[
            "cost",
            "budget",
            "set",
            "data",
            "EUR",
            "--monthly",
            "1000",
            "--thresholds",
            "200,50,100",
        ],
    );
    assert!(ok, "{err}");
    let id = create_machine(&berth, "data", "gold", 1, 512, None).await;
    machine_in(&berth, &id, "online").await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    for _ in 0..2 {
        let (ok, _, err) = cli(&berth, &["cost", "accrue", "--until", "now"]);
        assert!(ok, "{err}");
    }
    let (status, budgets) = call(
        &admin,
        &berth,
        Method::GET,
        "/api/v1/projects/data/budgets",
        None,
    )
    .await;
    assert_eq!(status, 200, "{budgets}");
    let alerts: Vec<u64> = budgets[0]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["threshold"].as_u64().unwrap())
        .collect();
    assert_eq!(alerts, [50, 100, 200], "{budgets}");
    let spent: Decimal = budgets[0]["spent"].as_str().unwrap().parse().unwrap();
    assert!(spent > Decimal::from(2000), "{budgets}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let posted = loop {
        let posted: Vec<Value> = received
            .lock()
            .unwrap()
            .iter()
            .filter(|(kind, _)| kind == "budget.threshold")
            .map(|(_, body)| body.clone())
            .collect();
        if posted.len() >= 3 || std::time::Instant::now() > deadline {
            break posted;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let thresholds: Vec<u64> = posted
        .iter()
        .map(|p| p["threshold_percent"].as_u64().unwrap())
        .collect();
    assert_eq!(thresholds, [50, 100, 200], "{posted:?}");
    assert_eq!(posted[0]["project"], "data");
    assert_eq!(posted[0]["month"], month.as_str());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let audit = api(
            &berth,
            Method::GET,
            "/api/v1/audit?action=budget.threshold",
            None,
        )
        .await;
        let entries = audit.as_array().unwrap().len();
        if entries == 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{audit}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (ok, table, err) = cli(&berth, &["cost", "budget", "show", "data"]);
    assert!(ok, "{err}");
    assert!(
        table.contains("50% 100% 200%") && table.contains("1000.00 EUR"),
        "{table}"
    );

    // The month's chart: data's bars, an SVG with no script.
    let chart = admin
        .get(format!(
            "{}/api/v1/costs/chart.svg?month={month}&project=data",
            berth.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(chart.status(), 200);
    assert_eq!(
        chart.headers()["content-type"],
        "image/svg+xml; charset=utf-8"
    );
    assert!(
        chart.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("default-src 'none'")
    );
    let svg = chart.text().await.unwrap();
    let today = now.format("%Y-%m-%d").to_string();
    assert!(
        svg.starts_with("<svg ") && svg.contains(&format!("data on {today}: ")),
        "{svg}"
    );
    assert!(svg.contains(&format!("Daily cost per project, {month} (EUR)")));
    assert!(!svg.contains("<script"));
    let (status, _) = call(
        &admin,
        &berth,
        Method::GET,
        &format!("/api/v1/costs/chart.svg?month={month}&currency=usd"),
        None,
    )
    .await;
    assert_eq!(status, 200);

    // Converted only where asked, at the administrators' rate, beside the exact figures.
    let (ok, _, err) = cli(
        &berth,
        &[
            "cost",
            "rate",
            "set",
            "eur",
            "usd",
            "1.10",
            "--from-time",
            "2020-01-01T00:00:00Z",
        ],
    );
    assert!(ok, "{err}");
    let (ok, out, err) = cli(
        &berth,
        &[
            "cost",
            "report",
            "--project",
            "data",
            "--convert-to",
            "USD",
            "--output",
            "json",
        ],
    );
    assert!(ok, "{err}");
    let converted: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(converted["totals"][0]["currency"], "EUR", "{converted}");
    let c = &converted["conversion"];
    assert_eq!(c["to"], "USD", "{converted}");
    assert_eq!(c["rates"][0]["rate"], "1.10", "{converted}");
    let (ok, table, err) = cli(
        &berth,
        &["cost", "report", "--project", "data", "--convert-to", "USD"],
    );
    assert!(ok, "{err}");
    assert!(
        table.contains("(in USD) (total)") && table.contains("exact"),
        "{table}"
    );
    let (ok, _, err) = cli(
        &berth,
        &["cost", "report", "--project", "data", "--convert-to", "JPY"],
    );
    assert!(
        !ok && err.contains("no exchange rate from EUR to JPY"),
        "{err}"
    );

    // Members read a budget and their project's chart; only admins set or remove one.
    api(
        &berth,
        Method::POST,
        "/api/v1/users",
        Some(json!({"username": "dev", "password": "dev's long password"})),
    )
    .await;
    api(
        &berth,
        Method::POST,
        "/api/v1/projects/web/members",
        Some(json!({"username": "dev", "role": "developer"})),
    )
    .await;
    let dev = client_as("dev", "dev's long password");
    let (status, _) = call(
        &dev,
        &berth,
        Method::GET,
        "/api/v1/projects/web/budgets",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(
        &dev,
        &berth,
        Method::GET,
        "/api/v1/projects/data/budgets",
        None,
    )
    .await;
    assert!(status == 403 || status == 404, "{status}");
    for path in [
        format!("/api/v1/costs/chart.svg?month={month}&project=data"),
        format!("/api/v1/costs/chart.svg?month={month}"),
    ] {
        let (status, _) = call(&dev, &berth, Method::GET, &path, None).await;
        assert!(matches!(status, 400 | 403 | 404), "{path}: {status}");
    }
    let r = dev
        .get(format!(
            "{}/api/v1/costs/chart.svg?month={month}&project=web",
            berth.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (status, _) = call(
        &dev,
        &berth,
        Method::PUT,
        "/api/v1/costs/exchange-rates/EUR/USD",
        Some(json!({"rate": "9"})),
    )
    .await;
    assert_eq!(status, 403);
    let (status, rates) = call(
        &dev,
        &berth,
        Method::GET,
        "/api/v1/costs/exchange-rates",
        None,
    )
    .await;
    assert_eq!(
        (status, rates[0]["rate"].as_str()),
        (200, Some("1.10")),
        "{rates}"
    );
    let (status, _) = call(
        &dev,
        &berth,
        Method::PUT,
        "/api/v1/projects/web/budgets/EUR",
        Some(json!({"monthly": "1000000"})),
    )
    .await;
    assert_eq!(status, 403);
    for (body, why) in [
        (json!({"monthly": "0"}), "more than zero"),
        (json!({"monthly": "1e6"}), "monthly"),
        (json!({"monthly": "10", "thresholds": [0]}), "percentages"),
        (json!({"monthly": "10", "limit": 1}), "limit"),
    ] {
        put_refused(
            &admin,
            &berth,
            "/api/v1/projects/web/budgets/EUR",
            body,
            why,
        )
        .await;
    }
    let (status, _) = call(
        &admin,
        &berth,
        Method::PUT,
        "/api/v1/projects/nope/budgets/EUR",
        Some(json!({"monthly": "10"})),
    )
    .await;
    assert_eq!(status, 404);
    let (ok, _, err) = cli(&berth, &["cost", "budget", "remove", "web", "EUR"]);
    assert!(ok, "{err}");
    let (status, _) = call(
        &admin,
        &berth,
        Method::DELETE,
        "/api/v1/projects/web/budgets/EUR",
        None,
    )
    .await;
    assert_eq!(status, 404);
}
