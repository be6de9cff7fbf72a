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
        let (status, problem) = call(
            &admin,
            &berth,
            Method::PUT,
            "/api/v1/clusters/rack/price-sheet",
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 400, "{body}: {problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains(why),
            "{body}: {problem}"
        );
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
    assert!(round["entries"].as_u64().unwrap() >= 1, "{round}");
    let elapsed_ms = started.elapsed().unwrap().as_millis() as u64;
    // Accrued already: a second run charges nothing more.
    let (ok, out, _) = cli(
        &berth,
        &["cost", "accrue", "--until", "now", "--output", "json"],
    );
    assert!(ok);
    let again: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(again["machines"].as_u64(), Some(1), "{again}");

    let month = chrono::Utc::now().format("%Y-%m").to_string();
    let (status, report) = call(
        &admin,
        &berth,
        Method::GET,
        &format!("/api/v1/costs?month={month}&project=web&by=machine"),
        None,
    )
    .await;
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
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with(&format!("(total),EUR,{amount},")),
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
