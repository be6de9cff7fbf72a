//! Where scheduling meets cost accounting (`crate::cost`): a provider machine's price
//! snapshotted when it is created (from its provider, unless its cluster has a price
//! sheet), clusters' price sheets, the hourly accrual round (run by the one node holding
//! the lease of the never-ending `cost-accrual` job), and reports.

use rust_decimal::Decimal;

use berth_plugin_runtime::provider as wire;

use super::ledger::{CostError, Ledger, Round, report};
use super::provider::ClusterProvider;
use super::{ClusterRecord, Scheduling, SchedulingError, SchedulingResult};
use crate::cost::money::Currency;
use crate::cost::rate::{Basis, Rate};
use crate::cost::report::{By, Report, ReportError};
use crate::cost::sheet::Sheet;
use crate::storage::store::now_millis;
use crate::storage::tables::cost::{EntryFilter, ExchangeRate, SheetVersion};

/// The kind of the never-ending job whose lease says which node accrues.
pub const ACCRUAL: &str = "cost-accrual";

const HOUR_MS: u64 = 3_600_000;

impl From<CostError> for SchedulingError {
    fn from(e: CostError) -> SchedulingError {
        match e {
            CostError::Store(e) => SchedulingError::Store(e),
            other => SchedulingError::Conflict(other.to_string()),
        }
    }
}

impl From<ReportError> for SchedulingError {
    fn from(e: ReportError) -> SchedulingError {
        match e {
            ReportError::Store(e) => SchedulingError::Store(e),
            other => SchedulingError::Invalid(other.to_string()),
        }
    }
}

/// A provider's on-demand price as a rate.
fn rate_of(price: &wire::Price, plugin: &str, region: &str, machine_type: &str) -> Option<Rate> {
    let currency = Currency::parse(&price.currency).ok()?;
    Some(Rate {
        currency,
        basis: Basis::Hour,
        running: Decimal::from_i128_with_scale(i128::from(price.micros_per_hour), 6),
        stopped: None,
        source: format!("provider {plugin}: {machine_type} in {region}"),
    })
}

impl Scheduling {
    /// What to snapshot as the price of a machine of `machine_type` in `region` of
    /// provider cluster `cluster`: `None` when the cluster's price sheet prices it (no
    /// snapshot), else its provider's on-demand price, or `Some(None)` when the provider
    /// cannot price it (the machine is then unpriced, and its time reported as such).
    pub(super) async fn price_snapshot(
        &self,
        cluster: &ClusterRecord,
        provider: &ClusterProvider<'_>,
        region: &str,
        machine_type: Option<&str>,
    ) -> Option<Option<Rate>> {
        let name = cluster.name.clone();
        let priced_by_sheet = self
            .store
            .read(move |tx| tx.cost().sheet_versions(&name))
            .await
            .map(|v| !v.is_empty())
            .unwrap_or(false);
        if priced_by_sheet {
            return None;
        }
        let Some(machine_type) = machine_type else {
            return Some(None);
        };
        let wanted = [(region.to_string(), machine_type.to_string())];
        let prices = self.prices(cluster, provider, &wanted).await;
        let rate = prices.get(&wanted[0]).and_then(|price| {
            let rate = rate_of(price, provider.plugin_name(), region, machine_type);
            if rate.is_none() {
                tracing::warn!(cluster = %cluster.name, currency = %berth_plugin_runtime::log::escape(&price.currency), "cost: the provider priced a machine in a currency that is not an ISO 4217 code; it is unpriced");
            }
            rate
        });
        Some(rate)
    }

    /// Sets a version of cluster `cluster`'s price sheet, effective from `from` (now if
    /// not given). A price change applies from its effective time, never to time before
    /// it: an effective time in the past is refused.
    pub async fn set_price_sheet(
        &self,
        cluster: &str,
        sheet: Sheet,
        from: Option<u64>,
        actor: &str,
    ) -> SchedulingResult<SheetVersion> {
        sheet
            .validate()
            .map_err(|e| SchedulingError::Invalid(e.to_string()))?;
        let now = now_millis();
        let effective_from = from.unwrap_or(now);
        // A minute's grace for clocks and typing; earlier would reprice accrued time.
        if effective_from + 60_000 < now {
            return Err(SchedulingError::Invalid(format!(
                "a price sheet takes effect from now or later; {effective_from} is in the past \
                 (accrued time keeps the price it had)"
            )));
        }
        let record = self.cluster_record(cluster).await?;
        let pool = record.provider == crate::storage::tables::scheduling::POOL_PROVIDER;
        match (&sheet, pool) {
            (Sheet::Pool { .. }, true) | (Sheet::Flavors { .. }, false) => {}
            (Sheet::Pool { .. }, false) => {
                return Err(SchedulingError::Invalid(format!(
                    "cluster {cluster} is not a physical pool: price it by flavor (\"kind\": \"flavors\")"
                )));
            }
            (Sheet::Flavors { .. }, true) => {
                return Err(SchedulingError::Invalid(format!(
                    "cluster {cluster} is a physical pool: price its hosts (\"kind\": \"pool\")"
                )));
            }
        }
        let version = SheetVersion {
            cluster: cluster.to_string(),
            effective_from,
            sheet: serde_json::to_value(&sheet).expect("a sheet serialises"),
            set_by: actor.to_string(),
            set_at: now,
        };
        let stored = version.clone();
        self.store
            .write(move |tx| tx.cost().put_sheet_version(&stored))
            .await?;
        Ok(version)
    }

    /// Cluster `cluster`'s price sheet versions, oldest first.
    pub async fn price_sheets(&self, cluster: &str) -> SchedulingResult<Vec<SheetVersion>> {
        self.cluster_record(cluster).await?;
        let name = cluster.to_string();
        Ok(self
            .store
            .read(move |tx| tx.cost().sheet_versions(&name))
            .await?)
    }

    /// Accrues every machine up to `until` (the last whole hour if not given; never past
    /// now), if this node holds (or now takes) the accrual lease; `None` when another node
    /// accrues.
    pub async fn accrue_costs(&self, until: Option<u64>) -> SchedulingResult<Option<Round>> {
        let now = now_millis();
        let until = until.unwrap_or(now / HOUR_MS * HOUR_MS);
        if until > now {
            return Err(SchedulingError::Invalid(
                "costs are accrued up to now at the latest, never ahead".into(),
            ));
        }
        // No machine, nothing to charge: no lease taken and no job made (as health does).
        let ledger = Ledger::new(self.store.clone());
        let ids = ledger.machines().await?;
        if ids.is_empty() {
            return Ok(Some(Round::default()));
        }
        if !self.holds_standing_lease(ACCRUAL, 2 * HOUR_MS).await? {
            return Ok(None);
        }
        let round = ledger.accrue_machines(ids, until).await?;
        self.check_budget_alerts(now).await?;
        Ok(Some(round))
    }

    /// Starts an accrual round on its own task once per hour (a new hour since the last
    /// round this node ran or found another node running); a failed round is tried again
    /// on a later pass of the engine.
    pub(super) fn start_accrual(self: &std::sync::Arc<Self>) {
        use std::sync::atomic::Ordering;
        let hour = now_millis() / HOUR_MS * HOUR_MS;
        let last = self.accrued_hour.load(Ordering::Acquire);
        if hour <= last
            || self
                .accrued_hour
                .compare_exchange(last, hour, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            match this.accrue_costs(None).await {
                Ok(Some(round)) => tracing::info!(
                    machines = round.machines,
                    entries = round.entries,
                    "cost: accrued up to the hour"
                ),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(error = %e, "cost: accrual failed; trying again shortly");
                    // Not done: let a later pass (a minute on) try again.
                    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                    let _ = this.accrued_hour.compare_exchange(
                        hour,
                        last,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                }
            }
        });
    }

    /// The report of the ledger's entries `filter` selects, grouped `by`.
    pub async fn cost_report(
        &self,
        filter: EntryFilter,
        by: By,
        convert_to: Option<&str>,
    ) -> SchedulingResult<Report> {
        let convert_to = convert_to
            .map(|c| Currency::parse(&c.to_ascii_uppercase()))
            .transpose()
            .map_err(|e| SchedulingError::Invalid(format!("convert_to: {e}")))?;
        Ok(super::ledger::report_in(&self.store, filter, by, now_millis(), convert_to).await?)
    }

    /// Sets the exchange rate from `from` to `to` (one unit of `from` is `rate` of
    /// `to`) from `effective_from` (now if not given; an earlier time records a past
    /// rate, which conversions of that time then use). Used only where a report asks.
    pub async fn set_exchange_rate(
        &self,
        from: &str,
        to: &str,
        rate: &str,
        effective_from: Option<u64>,
        actor: &str,
    ) -> SchedulingResult<ExchangeRate> {
        let invalid = |e: crate::cost::money::MoneyError| SchedulingError::Invalid(e.to_string());
        let from = Currency::parse(&from.to_ascii_uppercase()).map_err(invalid)?;
        let to = Currency::parse(&to.to_ascii_uppercase()).map_err(invalid)?;
        if from == to {
            return Err(SchedulingError::Invalid(
                "an exchange rate is between two currencies".into(),
            ));
        }
        let rate = crate::cost::money::Money::parse(rate, to.code())
            .map_err(|e| SchedulingError::Invalid(format!("rate: {e}")))?
            .amount;
        if rate <= Decimal::ZERO {
            return Err(SchedulingError::Invalid(
                "an exchange rate is more than zero".into(),
            ));
        }
        let now = now_millis();
        let record = ExchangeRate {
            from: from.code().to_string(),
            to: to.code().to_string(),
            effective_from: effective_from.unwrap_or(now),
            rate,
            set_by: actor.to_string(),
            set_at: now,
        };
        let stored = record.clone();
        self.store
            .write(move |tx| tx.cost().put_exchange_rate(&stored))
            .await?;
        Ok(record)
    }

    /// Every exchange rate.
    pub async fn exchange_rates(&self) -> SchedulingResult<Vec<ExchangeRate>> {
        Ok(self.store.read(|tx| tx.cost().exchange_rates()).await?)
    }

    /// The chart of month `month`'s daily cost per project (of `project` alone if
    /// given), in `currency`: needed when the month has costs in more than one.
    pub async fn cost_chart(
        &self,
        month: &str,
        project: Option<String>,
        currency: Option<String>,
    ) -> SchedulingResult<String> {
        use std::collections::BTreeMap;
        let (from, to) = crate::cost::report::month(month)?;
        let filter = EntryFilter {
            from,
            to,
            project,
            ..EntryFilter::default()
        };
        let report = report(&self.store, filter, By::ProjectDay, now_millis()).await?;
        let mut currencies: Vec<Currency> =
            report.totals.iter().map(|m| m.currency.clone()).collect();
        currencies.dedup();
        let currency = match currency {
            Some(code) => Currency::parse(&code.to_ascii_uppercase())
                .map_err(|e| SchedulingError::Invalid(e.to_string()))?,
            None => match currencies.as_slice() {
                [] => Currency::parse("XXX").expect("ISO 4217's code for no currency"),
                [one] => one.clone(),
                many => {
                    let codes: Vec<&str> = many.iter().map(|c| c.code()).collect();
                    return Err(SchedulingError::Invalid(format!(
                        "{month} has costs in {}: name one (currency=…); currencies are never added together",
                        codes.join(", ")
                    )));
                }
            },
        };
        let days: Vec<String> = (from..to)
            .step_by(86_400_000)
            .map(crate::cost::report::day)
            .collect();
        let mut series: BTreeMap<String, Vec<Decimal>> = BTreeMap::new();
        for row in &report.rows {
            let Some((project, day)) = row.key.split_once(crate::cost::report::PAIR) else {
                continue;
            };
            let Some(i) = days.iter().position(|d| d == day) else {
                continue;
            };
            let amount = row
                .totals
                .iter()
                .find(|m| m.currency == currency)
                .map(|m| m.amount)
                .unwrap_or_default();
            series
                .entry(project.to_string())
                .or_insert_with(|| vec![Decimal::ZERO; days.len()])[i] += amount;
        }
        series.retain(|_, v| v.iter().any(|a| !a.is_zero()));
        let title = format!("Daily cost per project, {month} ({})", currency.code());
        Ok(crate::cost::chart::daily_by_project(
            &title, &currency, &days, &series,
        ))
    }

    async fn cluster_record(&self, cluster: &str) -> SchedulingResult<ClusterRecord> {
        let name = cluster.to_string();
        self.store
            .read(move |tx| tx.scheduling().cluster(&name))
            .await?
            .ok_or_else(|| SchedulingError::NotFound(format!("no cluster {cluster}")))
    }
}
