//! Budgets: a project's monthly budget per currency, the warnings at its thresholds and
//! the check a create passes. What the month has cost is the ledger's daily totals for
//! the month plus each machine's open piece up to now; what it is committed to is every
//! machine the project holds, at its rates, from now to the month's end (a machine not
//! yet given a pool host at the dearest host's). Months are UTC calendar months.
//!
//! The check runs in the transaction that records the machine (as quotas do): redb has
//! one writer, PostgreSQL runs writes serializable, so concurrent creates never add up
//! past an enforced budget. A warning is recorded once per project, currency, month and
//! threshold, with an event on the feed (the webhook posts `budget.threshold`) in the same
//! transaction, and audited.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::ledger::{Clusters, CostError, cluster, open_pieces, rates};
use super::lifecycle::holds_resources;
use super::{Scheduling, SchedulingError, SchedulingResult};
use crate::cost::accrual::accrue;
use crate::cost::money::{Currency, Money};
use crate::cost::rate::{Phase, Rate};
use crate::cost::report::{day, month};
use crate::cost::sheet::{dearest_host_rates, flavor_rates, host_rates};
use crate::storage::store::{ReadTx, now_millis};
use crate::storage::tables::cost::{Budget, BudgetAlert, TotalsFilter};
use crate::storage::tables::scheduling::{
    ClusterRecord, MachineFilter, MachineState, POOL_PROVIDER,
};

/// Warnings go out at these percentages unless the budget names others.
pub const DEFAULT_THRESHOLDS: [u32; 3] = [50, 80, 100];

/// The highest threshold accepted (a warning at ten times the budget).
const MAX_THRESHOLD: u32 = 1_000;

/// `PUT /api/v1/projects/{project}/budgets/{currency}`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBudget {
    /// What a calendar month (UTC) may cost: a decimal string.
    #[schema(example = "1500.00")]
    pub monthly: String,
    /// Percentages of it at which a warning goes out (default 50, 80, 100).
    #[serde(default)]
    pub thresholds: Option<Vec<u32>>,
    /// Refuse a create that would take the month past the budget (default false).
    #[serde(default)]
    pub enforce: bool,
}

/// A budget and where its month stands.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BudgetStatus {
    pub budget: Budget,
    /// The month, `YYYY-MM`.
    pub month: String,
    /// What the month has cost so far, exact.
    #[schema(value_type = String)]
    pub spent: Decimal,
    /// What the project's machines will cost from now to the month's end, as they are.
    #[schema(value_type = String)]
    pub committed: Decimal,
    /// The budget less what is spent (negative when over).
    #[schema(value_type = String)]
    pub remaining: Decimal,
    /// The thresholds crossed this month.
    pub alerts: Vec<BudgetAlert>,
}

/// Why an enforced budget refuses a create, with the figures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "project {project} would exceed its budget of {budget} for {month}: {spent} spent so far, \
     {committed} more for its machines until the month ends, and this machine would cost \
     {adding} until then ({total} in all)"
)]
pub struct BudgetExceeded {
    pub project: String,
    pub month: String,
    pub budget: String,
    pub spent: String,
    pub committed: String,
    pub adding: String,
    pub total: String,
}

/// The month `now` falls in: its name and `[from, to)`.
fn month_of(now: u64) -> (String, u64, u64) {
    let name = day(now)[..7].to_string();
    let (from, to) = month(&name).expect("a day's month is a month");
    (name, from, to)
}

fn add(sums: &mut BTreeMap<String, Decimal>, currency: &str, amount: Decimal) {
    *sums.entry(currency.to_string()).or_default() += amount;
}

/// What project `project`'s month `[from, ..)` has cost up to `now`, per currency.
fn spent(
    read: &dyn ReadTx,
    clusters: &mut Clusters,
    project: &str,
    (from, to): (u64, u64),
    now: u64,
) -> Result<BTreeMap<String, Decimal>, CostError> {
    let mut sums = BTreeMap::new();
    let totals = read.cost().daily_totals(&TotalsFilter {
        from,
        to,
        project: Some(project.to_string()),
        cluster: None,
    })?;
    for t in totals {
        if let Some(currency) = &t.currency {
            add(&mut sums, currency, t.amount);
        }
    }
    let machines = read.scheduling().machines(&MachineFilter {
        project: Some(project.to_string()),
        ..MachineFilter::default()
    })?;
    for m in &machines {
        for p in open_pieces(read, clusters, m, now.min(to))? {
            if let (true, Some(currency)) = (p.from >= from, &p.currency) {
                add(&mut sums, currency.code(), p.amount);
            }
        }
    }
    Ok(sums)
}

/// What the machines project `project` holds will cost from `now` to `until`, per
/// currency, if they hold on as they are.
fn committed(
    read: &dyn ReadTx,
    clusters: &mut Clusters,
    project: &str,
    now: u64,
    until: u64,
) -> Result<BTreeMap<String, Decimal>, CostError> {
    let holding: Vec<MachineState> = MachineState::ALL
        .into_iter()
        .filter(|s| holds_resources(*s))
        .collect();
    let machines = read.scheduling().machines(&MachineFilter {
        project: Some(project.to_string()),
        states: holding,
        ..MachineFilter::default()
    })?;
    let mut sums = BTreeMap::new();
    for m in &machines {
        let Some((cluster, sheets)) = cluster(read, clusters, &m.cluster)? else {
            continue;
        };
        let timeline = rates(read, cluster, sheets, m)?;
        for p in accrue(&[(now, Phase::Running)], &timeline, now, until) {
            if let Some(currency) = &p.currency {
                add(&mut sums, currency.code(), p.amount);
            }
        }
    }
    Ok(sums)
}

/// The rates a new machine of `cluster` would be charged at: its cluster's sheet's (for
/// `host`, or the dearest host where the pool has not chosen one; for `machine_type` on a
/// private cloud), else its provider's `price`.
fn new_machine_rates(
    read: &dyn ReadTx,
    clusters: &mut Clusters,
    cluster: &ClusterRecord,
    machine_type: Option<&str>,
    host: Option<&str>,
    price: Option<&Rate>,
    now: u64,
) -> Result<Vec<(u64, Option<Rate>)>, CostError> {
    let Some((_, sheets)) = super::ledger::cluster(read, clusters, &cluster.name)? else {
        return Ok(Vec::new());
    };
    if sheets.is_empty() {
        return Ok(vec![(now, price.cloned())]);
    }
    Ok(if cluster.provider == POOL_PROVIDER {
        match host {
            Some(host) => host_rates(sheets, host, now),
            None => dearest_host_rates(sheets, now),
        }
    } else {
        flavor_rates(sheets, machine_type.unwrap_or_default(), now)
    })
}

fn shown(amount: Decimal, currency: &str) -> String {
    match Currency::parse(currency) {
        Ok(currency) => Money { amount, currency }.display(),
        Err(_) => format!("{amount} {currency}"),
    }
}

/// Checks a new machine against project `project`'s enforced budgets, in the caller's
/// transaction (which then records it). A machine whose price is unknown passes: what
/// it costs is reported as unpriced time.
pub fn check(
    read: &dyn ReadTx,
    project: &str,
    cluster: &ClusterRecord,
    machine_type: Option<&str>,
    host: Option<&str>,
    price: Option<&Rate>,
    now: u64,
) -> Result<Result<(), BudgetExceeded>, CostError> {
    let budgets: Vec<Budget> = read
        .cost()
        .budgets(Some(project))?
        .into_iter()
        .filter(|b| b.enforce)
        .collect();
    if budgets.is_empty() {
        return Ok(Ok(()));
    }
    let mut clusters = Clusters::new();
    let timeline = new_machine_rates(read, &mut clusters, cluster, machine_type, host, price, now)?;
    let (month, from, to) = month_of(now);
    let mut adding = BTreeMap::new();
    for p in accrue(&[(now, Phase::Running)], &timeline, now, to) {
        if let Some(currency) = &p.currency {
            add(&mut adding, currency.code(), p.amount);
        }
    }
    if budgets.iter().all(|b| !adding.contains_key(&b.currency)) {
        return Ok(Ok(()));
    }
    let spent = spent(read, &mut clusters, project, (from, to), now)?;
    let committed = committed(read, &mut clusters, project, now, to)?;
    for b in &budgets {
        let Some(&new) = adding.get(&b.currency) else {
            continue;
        };
        let figure =
            |sums: &BTreeMap<String, Decimal>| sums.get(&b.currency).copied().unwrap_or_default();
        let total = figure(&spent) + figure(&committed) + new;
        if total > b.monthly {
            return Ok(Err(BudgetExceeded {
                project: project.to_string(),
                month,
                budget: shown(b.monthly, &b.currency),
                spent: shown(figure(&spent), &b.currency),
                committed: shown(figure(&committed), &b.currency),
                adding: shown(new, &b.currency),
                total: shown(total, &b.currency),
            }));
        }
    }
    Ok(Ok(()))
}

/// Where project `project`'s budgets stand at `now`.
fn statuses(read: &dyn ReadTx, project: &str, now: u64) -> Result<Vec<BudgetStatus>, CostError> {
    let budgets = read.cost().budgets(Some(project))?;
    if budgets.is_empty() {
        return Ok(Vec::new());
    }
    let (month, from, to) = month_of(now);
    let mut clusters = Clusters::new();
    let spent = spent(read, &mut clusters, project, (from, to), now)?;
    let committed = committed(read, &mut clusters, project, now, to)?;
    let alerts = read.cost().budget_alerts(project, &month)?;
    Ok(budgets
        .into_iter()
        .map(|budget| {
            let figure = |sums: &BTreeMap<String, Decimal>| {
                sums.get(&budget.currency).copied().unwrap_or_default()
            };
            BudgetStatus {
                month: month.clone(),
                spent: figure(&spent),
                committed: figure(&committed),
                remaining: budget.monthly - figure(&spent),
                alerts: alerts
                    .iter()
                    .filter(|a| a.currency == budget.currency)
                    .cloned()
                    .collect(),
                budget,
            }
        })
        .collect())
}

fn from_cost(e: CostError) -> SchedulingError {
    e.into()
}

impl Scheduling {
    /// Sets project `project`'s monthly budget in `currency`.
    pub async fn set_budget(
        &self,
        project: &str,
        currency: &str,
        new: NewBudget,
        actor: &str,
    ) -> SchedulingResult<Budget> {
        let currency = Currency::parse(&currency.to_ascii_uppercase())
            .map_err(|e| SchedulingError::Invalid(e.to_string()))?;
        let monthly = Money::parse(&new.monthly, currency.code())
            .map_err(|e| SchedulingError::Invalid(format!("monthly: {e}")))?
            .amount;
        if monthly <= Decimal::ZERO {
            return Err(SchedulingError::Invalid(
                "a monthly budget is more than zero".into(),
            ));
        }
        let mut thresholds = new
            .thresholds
            .unwrap_or_else(|| DEFAULT_THRESHOLDS.to_vec());
        thresholds.sort_unstable();
        thresholds.dedup();
        if thresholds.iter().any(|t| *t == 0 || *t > MAX_THRESHOLD) {
            return Err(SchedulingError::Invalid(format!(
                "thresholds are percentages from 1 to {MAX_THRESHOLD}"
            )));
        }
        let budget = Budget {
            project: project.to_string(),
            currency: currency.code().to_string(),
            monthly,
            thresholds,
            enforce: new.enforce,
            set_by: actor.to_string(),
            set_at: now_millis(),
        };
        let stored = budget.clone();
        self.store
            .write(move |tx| -> SchedulingResult<()> {
                super::clusters::project_exists(tx.read(), &stored.project)?;
                Ok(tx.cost().put_budget(&stored)?)
            })
            .await?;
        Ok(budget)
    }

    /// Removes project `project`'s budget in `currency`.
    pub async fn remove_budget(&self, project: &str, currency: &str) -> SchedulingResult<()> {
        let (p, c) = (project.to_string(), currency.to_ascii_uppercase());
        if !self
            .store
            .write(move |tx| tx.cost().delete_budget(&p, &c))
            .await?
        {
            return Err(SchedulingError::NotFound(format!(
                "project {project} has no budget in {currency}"
            )));
        }
        Ok(())
    }

    /// Where project `project`'s budgets stand now.
    pub async fn budgets(&self, project: &str) -> SchedulingResult<Vec<BudgetStatus>> {
        let project = project.to_string();
        let now = now_millis();
        self.store
            .read(move |tx| {
                super::clusters::project_exists(tx, &project)?;
                statuses(tx, &project, now).map_err(from_cost)
            })
            .await
    }

    /// Records (once a month each) and announces the thresholds every budget's month has
    /// crossed by `now`: returns the new alerts, which the caller has audited.
    pub async fn check_budget_alerts(&self, now: u64) -> SchedulingResult<Vec<BudgetAlert>> {
        let budgets = self.store.read(|tx| tx.cost().budgets(None)).await?;
        let mut projects: Vec<String> = budgets.iter().map(|b| b.project.clone()).collect();
        projects.dedup();
        let mut raised = Vec::new();
        for project in projects {
            let new = self
                .store
                .write(move |tx| -> SchedulingResult<Vec<BudgetAlert>> {
                    let read = tx.read();
                    let (month, from, to) = month_of(now);
                    let mut clusters = Clusters::new();
                    let spent =
                        spent(read, &mut clusters, &project, (from, to), now).map_err(from_cost)?;
                    let mut new = Vec::new();
                    for b in read.cost().budgets(Some(&project))? {
                        let spent = spent.get(&b.currency).copied().unwrap_or_default();
                        for &t in &b.thresholds {
                            if spent * Decimal::from(100) < b.monthly * Decimal::from(t) {
                                break;
                            }
                            let alert = BudgetAlert {
                                project: project.clone(),
                                currency: b.currency.clone(),
                                month: month.clone(),
                                threshold: t,
                                spent,
                                monthly: b.monthly,
                                at: now,
                            };
                            if tx.cost().add_budget_alert(&alert)? {
                                crate::events::publish(
                                    tx,
                                    crate::storage::tables::events::Event::Budget(alert.clone()),
                                )?;
                                new.push(alert);
                            }
                        }
                    }
                    Ok(new)
                })
                .await?;
            raised.extend(new);
        }
        for alert in &raised {
            tracing::warn!(
                project = %alert.project,
                currency = %alert.currency,
                threshold = alert.threshold,
                spent = %alert.spent,
                budget = %alert.monthly,
                "cost: a project's month crossed a budget threshold"
            );
            let mut record = crate::auth::audit::AuditRecord::new(
                super::engine::BERTH,
                "",
                "budget.threshold",
                &alert.project,
                "success",
            );
            record.detail = Some(format!(
                "{}% of {} {} for {}: {} spent",
                alert.threshold, alert.monthly, alert.currency, alert.month, alert.spent
            ));
            self.auth.audit.record(record).await;
        }
        if !raised.is_empty() {
            self.wake.notify_one();
        }
        Ok(raised)
    }
}
