//! Tables of cost accounting (`host/src/cost/`): `price_sheets` (each cluster's price
//! sheet, one row per version by the time it takes effect), `machine_rates` (each
//! machine's price from a moment on), `cost_entries` (the ledger: append-only pieces of
//! machines' time, each charged once), `cost_daily` (the entries' sums per day, project,
//! cluster and currency, kept by the backend as it appends, which reports and budgets
//! read instead of a month of entries) and `accrual_cursors` (how far each machine is
//! accrued), `budgets` (a project's monthly budget per currency) and `budget_alerts`
//! (each threshold crossed, once per month), and `exchange_rates` (an administrator's,
//! used only where a report asks to convert). A cursor moves in the transaction that appends the entries it covers, so a
//! crash never charges twice and a restart loses nothing. Sheets and rates are documents
//! that `cost` reads whole (its own types, as JSON); entries are columns, since reports
//! sum and group them.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::storage::store::StoreResult;

/// One version of a cluster's price sheet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SheetVersion {
    pub cluster: String,
    /// When it takes effect (ms since the epoch).
    pub effective_from: u64,
    /// The sheet (`cost::sheet::Sheet`).
    #[schema(value_type = Object)]
    pub sheet: serde_json::Value,
    /// Who set it, and when.
    pub set_by: String,
    pub set_at: u64,
}

/// A machine's price from a moment on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineRate {
    pub machine: String,
    /// ms since the epoch.
    pub effective_from: u64,
    /// The rate (`cost::rate::Rate`); none when the machine is unpriced from then on.
    #[serde(default)]
    pub rate: Option<serde_json::Value>,
}

/// How a ledger entry's time was billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BilledPhase {
    /// At the running (or, for a pool host, allocated) price.
    Running,
    /// At the stopped (disk) price.
    Stopped,
}

impl BilledPhase {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            BilledPhase::Running => "running",
            BilledPhase::Stopped => "stopped",
        }
    }

    /// From the stored name.
    pub fn parse(s: &str) -> Option<BilledPhase> {
        match s {
            "running" => Some(BilledPhase::Running),
            "stopped" => Some(BilledPhase::Stopped),
            _ => None,
        }
    }
}

/// One entry of the ledger: a piece of one machine's time within one UTC day, at one price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostEntry {
    /// Its number, given by the store when appended (ascending; there may be gaps).
    pub seq: u64,
    pub machine: String,
    /// The project charged.
    pub project: String,
    pub cluster: String,
    /// The piece of time, ms since the epoch: `[from, to)`.
    pub from: u64,
    pub to: u64,
    pub phase: BilledPhase,
    /// The currency; none for billed time without a price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// The charge, exact as the ledger rounded it (a correction may be negative).
    pub amount: Decimal,
    /// When the rate charged took effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_from: Option<u64>,
    /// Why, for a correction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Which entries a read returns: those whose piece starts in `[from, to)`, narrowed by
/// every field given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EntryFilter {
    pub from: u64,
    pub to: u64,
    pub project: Option<String>,
    pub cluster: Option<String>,
    pub machine: Option<String>,
}

/// The sum of the entries that start in one UTC day and charge one project in one
/// cluster, in one currency (or none: billed time without a price).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DailyTotal {
    /// The day's midnight (ms since the epoch).
    pub day: u64,
    pub project: String,
    pub cluster: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// The exact sum of the entries' amounts.
    pub amount: Decimal,
    /// Their time without a price, in ms.
    pub unpriced_ms: u64,
    /// How many entries.
    pub entries: u64,
}

impl DailyTotal {
    /// The total `entry` starts (empty).
    pub fn of(entry: &CostEntry) -> DailyTotal {
        DailyTotal {
            day: entry.from / MS_PER_DAY * MS_PER_DAY,
            project: entry.project.clone(),
            cluster: entry.cluster.clone(),
            currency: entry.currency.clone(),
            amount: Decimal::ZERO,
            unpriced_ms: 0,
            entries: 0,
        }
    }

    /// Adds `entry`, which must be of this total's day, project, cluster and currency.
    pub fn add(&mut self, entry: &CostEntry) {
        self.amount += entry.amount;
        if entry.currency.is_none() {
            self.unpriced_ms += entry.to - entry.from;
        }
        self.entries += 1;
    }
}

const MS_PER_DAY: u64 = 86_400_000;

/// Which daily totals a read returns: days in `[from, to)`, narrowed by every field given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TotalsFilter {
    pub from: u64,
    pub to: u64,
    pub project: Option<String>,
    pub cluster: Option<String>,
}

/// A project's monthly budget in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Budget {
    pub project: String,
    /// ISO 4217.
    pub currency: String,
    /// What a calendar month (UTC) may cost.
    #[schema(value_type = String, example = "1500.00")]
    pub monthly: Decimal,
    /// Percentages of `monthly` at which a warning goes out, ascending.
    pub thresholds: Vec<u32>,
    /// Whether a create that would take the month past `monthly` is refused.
    pub enforce: bool,
    pub set_by: String,
    pub set_at: u64,
}

/// A budget threshold crossed: recorded once per project, currency, month and threshold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BudgetAlert {
    pub project: String,
    pub currency: String,
    /// `YYYY-MM`.
    pub month: String,
    /// The percentage crossed.
    pub threshold: u32,
    /// The month's cost when it was seen crossed.
    #[schema(value_type = String)]
    pub spent: Decimal,
    /// The budget then.
    #[schema(value_type = String)]
    pub monthly: Decimal,
    /// When (ms since the epoch).
    pub at: u64,
}

/// An exchange rate an administrator set: one unit of `from` is `rate` units of `to`,
/// from `effective_from` on. Used only where a report asks for a conversion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExchangeRate {
    pub from: String,
    pub to: String,
    /// ms since the epoch.
    pub effective_from: u64,
    #[schema(value_type = String, example = "1.0834")]
    pub rate: Decimal,
    pub set_by: String,
    pub set_at: u64,
}

/// Reads of cost accounting's tables.
pub trait CostRead {
    /// Cluster `cluster`'s price sheet versions, oldest first.
    fn sheet_versions(&self, cluster: &str) -> StoreResult<Vec<SheetVersion>>;
    /// Machine `machine`'s rates, oldest first.
    fn machine_rates(&self, machine: &str) -> StoreResult<Vec<MachineRate>>;
    /// How far machine `machine` is accrued (ms since the epoch), if it ever was.
    fn accrued_to(&self, machine: &str) -> StoreResult<Option<u64>>;
    /// How far every machine ever accrued is, by machine: one read where a report
    /// would otherwise ask once per machine.
    fn accrual_cursors(&self) -> StoreResult<std::collections::BTreeMap<String, u64>>;
    /// The entries `filter` selects, by start time, then number.
    fn entries(&self, filter: &EntryFilter) -> StoreResult<Vec<CostEntry>>;
    /// The daily totals `filter` selects, by day, project, cluster and currency.
    fn daily_totals(&self, filter: &TotalsFilter) -> StoreResult<Vec<DailyTotal>>;
    /// Project `project`'s budgets (every project's if none), by project and currency.
    fn budgets(&self, project: Option<&str>) -> StoreResult<Vec<Budget>>;
    /// The alerts of project `project` in month `month` (`YYYY-MM`), by currency and
    /// threshold.
    fn budget_alerts(&self, project: &str, month: &str) -> StoreResult<Vec<BudgetAlert>>;
    /// Every exchange rate, by `from`, `to` and effective time.
    fn exchange_rates(&self) -> StoreResult<Vec<ExchangeRate>>;
}

/// Writes of cost accounting's tables. Entries are only ever appended.
pub trait CostWrite: CostRead {
    /// Stores a sheet version, replacing one of the same cluster and effective time.
    fn put_sheet_version(&self, version: &SheetVersion) -> StoreResult<()>;
    /// Stores a machine's rate, replacing one of the same machine and effective time.
    fn put_machine_rate(&self, rate: &MachineRate) -> StoreResult<()>;
    /// Appends `entries` (their `seq` is ignored), adds them to their daily totals, and
    /// returns the numbers given, in order.
    fn append_entries(&self, entries: &[CostEntry]) -> StoreResult<Vec<u64>>;
    /// Sets how far machine `machine` is accrued.
    fn set_accrued_to(&self, machine: &str, at: u64) -> StoreResult<()>;
    /// Stores a budget, replacing the project's budget in the same currency.
    fn put_budget(&self, budget: &Budget) -> StoreResult<()>;
    /// Removes project `project`'s budget in `currency`; whether there was one.
    fn delete_budget(&self, project: &str, currency: &str) -> StoreResult<bool>;
    /// Records an alert unless one of the same project, currency, month and threshold
    /// is recorded: whether this one is new.
    fn add_budget_alert(&self, alert: &BudgetAlert) -> StoreResult<bool>;
    /// Stores an exchange rate, replacing one of the same pair and effective time.
    fn put_exchange_rate(&self, rate: &ExchangeRate) -> StoreResult<()>;
}
