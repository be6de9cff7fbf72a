//! `berth cost …`: reports of what machines cost, clusters' price sheets, projects'
//! budgets, and an accrual run now, over the admin API.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{Client, Output, segment};
use crate::cost::money::Money;

/// `berth cost …`
#[derive(Debug, Subcommand)]
pub enum CostCommand {
    /// What machines cost over a month (or a window), per currency, broken down by
    /// project, cluster, machine, label or day. Tables round to the currency's minor unit
    /// (half to even); `--output json` and `--output csv` give the exact amounts.
    Report {
        /// The month, YYYY-MM (UTC); the current month if neither it nor --from is given.
        #[arg(long, conflicts_with_all = ["from", "to"])]
        month: Option<String>,
        /// Start of a window, RFC 3339 (with --to).
        #[arg(long, requires = "to")]
        from: Option<String>,
        /// End of the window (exclusive), RFC 3339.
        #[arg(long, requires = "from")]
        to: Option<String>,
        /// The project (required unless you are a system administrator).
        #[arg(long)]
        project: Option<String>,
        /// Only this cluster.
        #[arg(long)]
        cluster: Option<String>,
        /// Only this machine.
        #[arg(long)]
        machine: Option<String>,
        /// Rows by project, cluster, machine, day or label:KEY.
        #[arg(long, default_value = "project")]
        by: String,
        /// Also show every figure converted to this currency at the administrators'
        /// exchange rates (the exact per-currency figures stay).
        #[arg(long)]
        convert_to: Option<String>,
    },
    /// Exchange rates, which reports use only when asked to convert.
    Rate {
        #[command(subcommand)]
        command: RateCommand,
    },
    /// A cluster's price sheet: what its machines cost where no provider prices them.
    Sheet {
        #[command(subcommand)]
        command: SheetCommand,
    },
    /// A project's monthly budgets, per currency.
    Budget {
        #[command(subcommand)]
        command: BudgetCommand,
    },
    /// Accrue every machine now (system administrators): up to the last whole hour, or
    /// to --until.
    Accrue {
        /// Up to when, RFC 3339 (`now` for this moment), no later than now.
        #[arg(long)]
        until: Option<String>,
    },
}

/// `berth cost sheet …`
#[derive(Debug, Subcommand)]
pub enum SheetCommand {
    /// Every version of a cluster's price sheet.
    Show {
        /// The cluster.
        cluster: String,
    },
    /// Set a new version, from now or from --from (never earlier).
    Set {
        /// The cluster.
        cluster: String,
        /// The sheet, a JSON file (`-` reads standard input); see the README.
        #[arg(long)]
        file: PathBuf,
        /// When it takes effect, RFC 3339.
        #[arg(long)]
        from: Option<String>,
    },
}

/// `berth cost rate …`
#[derive(Debug, Subcommand)]
pub enum RateCommand {
    /// Every exchange rate.
    List,
    /// Set the rate from one currency to another (system administrators): one FROM is
    /// RATE TOs.
    Set {
        from: String,
        to: String,
        rate: String,
        /// From when, RFC 3339 (now if not given).
        #[arg(long)]
        from_time: Option<String>,
    },
}

/// `berth cost budget …`
#[derive(Debug, Subcommand)]
pub enum BudgetCommand {
    /// A project's budgets, and this month's figures against each.
    Show {
        /// The project.
        project: String,
    },
    /// Set a project's monthly budget in a currency (system administrators).
    Set {
        /// The project.
        project: String,
        /// The currency, ISO 4217 (USD, EUR, CNY…).
        currency: String,
        /// What a calendar month (UTC) may cost, a decimal (`1500.00`).
        #[arg(long)]
        monthly: String,
        /// Percentages at which a warning goes out (default 50,80,100).
        #[arg(long, value_delimiter = ',')]
        thresholds: Option<Vec<u32>>,
        /// Refuse a create that would take the month past the budget.
        #[arg(long)]
        enforce: bool,
    },
    /// Remove a project's budget in a currency (system administrators).
    Remove {
        /// The project.
        project: String,
        /// The currency.
        currency: String,
    },
}

pub fn cost(c: &Client, command: CostCommand) -> anyhow::Result<ExitCode> {
    match command {
        CostCommand::Report {
            month,
            from,
            to,
            project,
            cluster,
            machine,
            by,
            convert_to,
        } => {
            let month = match (&month, &from) {
                (None, None) => Some(chrono::Utc::now().format("%Y-%m").to_string()),
                _ => month,
            };
            let mut query = form_urlencoded::Serializer::new(String::new());
            for (key, value) in [
                ("month", &month),
                ("from", &from),
                ("to", &to),
                ("project", &project),
                ("cluster", &cluster),
                ("machine", &machine),
                ("convert_to", &convert_to),
            ] {
                if let Some(value) = value {
                    query.append_pair(key, value);
                }
            }
            query.append_pair("by", &by);
            if c.output == Output::Csv {
                query.append_pair("format", "csv");
            }
            let report = c.call(
                Method::GET,
                &format!("/api/v1/costs?{}", query.finish()),
                None,
            )?;
            match c.output {
                Output::Json => c.print(&report, &[]),
                Output::Csv => print!("{}", report.as_str().unwrap_or_default()),
                Output::Table => print_report(c, &report),
            }
        }
        CostCommand::Sheet {
            command: SheetCommand::Show { cluster },
        } => c.print(
            &c.call(
                Method::GET,
                &format!("/api/v1/clusters/{}/price-sheet", segment(&cluster)),
                None,
            )?,
            &["effective_from", "set_by", "sheet"],
        ),
        CostCommand::Sheet {
            command:
                SheetCommand::Set {
                    cluster,
                    file,
                    from,
                },
        } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())
                    .context("reading the sheet from standard input")?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            let sheet: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            let mut body = json!({ "sheet": sheet });
            if let Some(from) = from {
                body["effective_from"] = json!(from);
            }
            c.print(
                &c.call(
                    Method::PUT,
                    &format!("/api/v1/clusters/{}/price-sheet", segment(&cluster)),
                    Some(body),
                )?,
                &["cluster", "effective_from", "set_by"],
            );
        }
        CostCommand::Rate {
            command: RateCommand::List,
        } => c.print(
            &c.call(Method::GET, "/api/v1/costs/exchange-rates", None)?,
            &["from", "to", "rate", "effective_from", "set_by"],
        ),
        CostCommand::Rate {
            command:
                RateCommand::Set {
                    from,
                    to,
                    rate,
                    from_time,
                },
        } => {
            let mut body = json!({ "rate": rate });
            if let Some(t) = from_time {
                body["effective_from"] = json!(t);
            }
            c.print(
                &c.call(
                    Method::PUT,
                    &format!(
                        "/api/v1/costs/exchange-rates/{}/{}",
                        segment(&from),
                        segment(&to)
                    ),
                    Some(body),
                )?,
                &["from", "to", "rate", "effective_from"],
            );
        }
        CostCommand::Budget {
            command: BudgetCommand::Show { project },
        } => {
            let budgets = c.call(
                Method::GET,
                &format!("/api/v1/projects/{}/budgets", segment(&project)),
                None,
            )?;
            if c.output == Output::Table {
                let rows: Vec<Value> = budgets
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|b| {
                        let currency = b["budget"]["currency"].as_str().unwrap_or_default();
                        let shown = |v: &Value| {
                            Money::parse(v.as_str().unwrap_or_default(), currency)
                                .map(|m| m.display())
                                .unwrap_or_else(|_| v.to_string())
                        };
                        let crossed: Vec<String> = b["alerts"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                            .iter()
                            .map(|a| format!("{}%", a["threshold"]))
                            .collect();
                        json!({
                            "currency": currency,
                            "month": b["month"],
                            "budget": shown(&b["budget"]["monthly"]),
                            "spent": shown(&b["spent"]),
                            "committed": shown(&b["committed"]),
                            "remaining": shown(&b["remaining"]),
                            "enforced": b["budget"]["enforce"],
                            "crossed": crossed.join(" "),
                        })
                    })
                    .collect();
                c.print(
                    &Value::Array(rows),
                    &[
                        "currency",
                        "month",
                        "budget",
                        "spent",
                        "committed",
                        "remaining",
                        "enforced",
                        "crossed",
                    ],
                );
            } else {
                c.print(&budgets, &[]);
            }
        }
        CostCommand::Budget {
            command:
                BudgetCommand::Set {
                    project,
                    currency,
                    monthly,
                    thresholds,
                    enforce,
                },
        } => {
            let mut body = json!({ "monthly": monthly, "enforce": enforce });
            if let Some(thresholds) = thresholds {
                body["thresholds"] = json!(thresholds);
            }
            c.print(
                &c.call(
                    Method::PUT,
                    &format!(
                        "/api/v1/projects/{}/budgets/{}",
                        segment(&project),
                        segment(&currency)
                    ),
                    Some(body),
                )?,
                &["project", "currency", "monthly", "thresholds", "enforce"],
            );
        }
        CostCommand::Budget {
            command: BudgetCommand::Remove { project, currency },
        } => {
            c.call(
                Method::DELETE,
                &format!(
                    "/api/v1/projects/{}/budgets/{}",
                    segment(&project),
                    segment(&currency)
                ),
                None,
            )?;
            println!("removed the {currency} budget of project {project}");
        }
        CostCommand::Accrue { until } => {
            let path = match until.as_deref() {
                None => "/api/v1/costs/accrue".to_string(),
                Some(until) => {
                    let until = if until == "now" {
                        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                    } else {
                        until.to_string()
                    };
                    format!(
                        "/api/v1/costs/accrue?{}",
                        form_urlencoded::Serializer::new(String::new())
                            .append_pair("until", &until)
                            .finish()
                    )
                }
            };
            c.print(
                &c.call(Method::POST, &path, None)?,
                &["ran", "machines", "entries"],
            )
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A report as a table: a line per row and currency, amounts rounded for reading, and the
/// total.
fn print_report(c: &Client, report: &Value) {
    let shown = |money: &Value| -> String {
        serde_json::from_value::<Money>(money.clone())
            .map(|m| m.display())
            .unwrap_or_else(|_| money.to_string())
    };
    let mut lines = Vec::new();
    let rows = report["rows"].as_array().cloned().unwrap_or_default();
    let total = json!({"key": "(total)", "totals": report["totals"], "unpriced_seconds": report["unpriced_seconds"]});
    // The part of the total still open (today's time): shown, so no one mistakes it
    // for closed.
    let provisional = report["provisional"]
        .as_array()
        .filter(|p| !p.is_empty())
        .map(|p| json!({"key": "(of which provisional)", "totals": p, "unpriced_seconds": 0}));
    // Pools' idle capacity: no project's, so after the total, not in it.
    let idle: Vec<Value> = report["idle"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|row| json!({"key": format!("(idle) {}", row["key"].as_str().unwrap_or_default()), "totals": row["totals"], "unpriced_seconds": row["unpriced_seconds"]}))
        .collect();
    for row in rows
        .iter()
        .chain(std::iter::once(&total))
        .chain(provisional.as_ref())
        .chain(idle.iter())
    {
        let totals = row["totals"].as_array().cloned().unwrap_or_default();
        let amounts: Vec<String> = if totals.is_empty() {
            vec!["-".into()]
        } else {
            totals.iter().map(shown).collect()
        };
        for amount in amounts {
            lines.push(json!({
                "key": row["key"],
                "cost": amount,
                "unpriced_hours": format!("{:.2}", row["unpriced_seconds"].as_u64().unwrap_or(0) as f64 / 3600.0),
            }));
        }
    }
    // Converted figures, when asked for: after the exact ones, marked.
    let conversion = &report["conversion"];
    if let Some(to) = conversion["to"].as_str() {
        let total = json!({"key": "(total)", "totals": conversion["totals"]});
        for row in conversion["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(std::iter::once(&total))
        {
            for money in row["totals"].as_array().into_iter().flatten() {
                lines.push(json!({
                    "key": format!("(in {to}) {}", row["key"].as_str().unwrap_or_default()),
                    "cost": shown(money),
                    "unpriced_hours": "",
                }));
            }
        }
    }
    c.print(&Value::Array(lines), &["key", "cost", "unpriced_hours"]);
    if let Some(note) = conversion["note"].as_str() {
        println!("{note}");
    }
}
