//! Reports: the ledger's entries over a window, summed per currency and broken down by
//! project, cluster, machine, label or day. Every breakdown sums the same whole entries
//! (each lies in one day and belongs to one machine), so the parts of any breakdown add
//! up exactly to the report's total. Billed time without a price is reported as such,
//! never as free. Time not yet in the ledger (each machine's open piece, up to now) is
//! summed the same way and its share of the totals shown as provisional.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate, TimeZone, Utc};
use serde::Serialize;

use rust_decimal::Decimal;

use crate::storage::store::StoreError;

use super::money::{Currency, Money, Totals};

const MS_PER_DAY: u64 = 86_400_000;

/// What a report's rows are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum By {
    Project,
    Cluster,
    Machine,
    /// The UTC day (`2026-11-14`).
    Day,
    /// A machine label's value (`(none)` for machines without it).
    Label(String),
    /// Project and day together (`project` and `YYYY-MM-DD` joined by [`PAIR`]): what
    /// the chart draws; not offered by name.
    ProjectDay,
}

/// What joins the two halves of a [`By::ProjectDay`] key (no project name holds it).
pub const PAIR: char = '\u{1f}';

impl By {
    /// From its name in the CLI and the API: `project`, `cluster`, `machine`, `day` or
    /// `label:KEY`.
    pub fn parse(s: &str) -> Option<By> {
        Some(match s {
            "project" => By::Project,
            "cluster" => By::Cluster,
            "machine" => By::Machine,
            "day" => By::Day,
            _ => By::Label(
                s.strip_prefix("label:")
                    .filter(|k| !k.is_empty())?
                    .to_string(),
            ),
        })
    }
}

/// One row: a group's sums.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Row {
    /// The project, cluster, machine, day or label value.
    pub key: String,
    /// Per currency, exact.
    pub totals: Vec<Money>,
    /// Billed time that had no price, in seconds.
    pub unpriced_seconds: u64,
    /// Ledger entries (and open pieces) summed.
    pub entries: u64,
}

/// A report over `[from, to)`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Report {
    /// Start (ms since the epoch).
    pub from: u64,
    /// End, exclusive.
    pub to: u64,
    pub rows: Vec<Row>,
    /// The whole, per currency: the sum of every row.
    pub totals: Vec<Money>,
    pub unpriced_seconds: u64,
    /// The part of `totals` not yet in the ledger: machines' time since their last
    /// closed piece (a day's end or a price change), up to `as_of`. It closes with the
    /// same amount unless the machine changes state or price meanwhile.
    pub provisional: Vec<Money>,
    /// The time the report counts up to: its end, or now if that is earlier.
    pub as_of: u64,
    /// Physical pools' idle capacity, a row per pool: what their hosts cost while no
    /// project held them (up to `as_of`). Not part of `totals`, which are the projects';
    /// given only where no project or machine narrows the report.
    pub idle: Vec<Row>,
    /// The same figures in one currency, where the report was asked to convert
    /// (`convert_to`); the per-currency figures above stay the exact ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversion: Option<Conversion>,
}

/// A report's figures converted to one currency at administrators' exchange rates.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Conversion {
    /// The currency converted to.
    pub to: String,
    /// Each row, converted (unpriced time stays unpriced).
    pub rows: Vec<Row>,
    pub totals: Vec<Money>,
    /// The exchange rates used: one unit of `from` is `rate` units of `to`, as set
    /// from `effective_from`.
    pub rates: Vec<UsedRate>,
    /// What the conversion is, in words.
    pub note: String,
}

/// One exchange rate a conversion used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UsedRate {
    pub from: String,
    pub effective_from: u64,
    #[schema(value_type = String)]
    pub rate: Decimal,
}

/// Converts `parts` to `target` at the rates in force at each part's start: the rate
/// from its currency to `target` with the latest effective time at or before it.
pub fn convert(
    from: u64,
    to: u64,
    as_of: u64,
    parts: &[Part],
    target: &Currency,
    rates: &[crate::storage::tables::cost::ExchangeRate],
) -> Result<Conversion, ReportError> {
    let mut used: BTreeMap<(String, u64), Decimal> = BTreeMap::new();
    let mut converted = Vec::with_capacity(parts.len());
    for part in parts {
        let mut part = part.clone();
        if let Some(code) = &part.currency
            && code != target.code()
        {
            let rate = rates
                .iter()
                .filter(|r| r.from == *code && r.to == target.code() && r.effective_from <= part.at)
                .max_by_key(|r| r.effective_from)
                .ok_or_else(|| ReportError::NoExchangeRate {
                    from: code.clone(),
                    to: target.code().to_string(),
                    day: day(part.at),
                })?;
            used.insert((code.clone(), rate.effective_from), rate.rate);
            part.amount *= rate.rate;
            part.currency = Some(target.code().to_string());
        }
        converted.push(part);
    }
    let summed = summarise(from, to, as_of, converted)?;
    Ok(Conversion {
        to: target.code().to_string(),
        rows: summed.rows,
        totals: summed.totals,
        rates: used
            .into_iter()
            .map(|((from, effective_from), rate)| UsedRate {
                from,
                effective_from,
                rate,
            })
            .collect(),
        note: format!(
            "converted to {} at the administrators' exchange rates in force on each day; \
             the per-currency figures are the exact ones",
            target.code()
        ),
    })
}

impl Report {
    /// The report as CSV: a line per row and currency (a row with no priced time has one
    /// line with an empty currency), exact amounts, and a final `(total)` line per currency.
    pub fn csv(&self) -> String {
        fn field(s: &str) -> String {
            if s.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_string()
            }
        }
        let mut out = String::from("key,currency,amount,unpriced_seconds,entries\n");
        let mut line = |key: &str, money: Option<&Money>, unpriced: u64, entries: String| {
            let (currency, amount) = money
                .map(|m| (m.currency.to_string(), m.amount.to_string()))
                .unwrap_or_default();
            out.push_str(&format!(
                "{},{currency},{amount},{unpriced},{entries}\n",
                field(key)
            ));
        };
        for row in &self.rows {
            if row.totals.is_empty() {
                line(
                    &row.key,
                    None,
                    row.unpriced_seconds,
                    row.entries.to_string(),
                );
            }
            for money in &row.totals {
                line(
                    &row.key,
                    Some(money),
                    row.unpriced_seconds,
                    row.entries.to_string(),
                );
            }
        }
        for money in &self.totals {
            line("(total)", Some(money), self.unpriced_seconds, String::new());
        }
        for money in &self.provisional {
            line("(of which provisional)", Some(money), 0, String::new());
        }
        for row in &self.idle {
            for money in &row.totals {
                line(
                    &format!("(idle) {}", row.key),
                    Some(money),
                    row.unpriced_seconds,
                    String::new(),
                );
            }
        }
        out
    }
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0:?} is not a month (YYYY-MM)")]
    BadMonth(String),
    #[error("a stored entry has an unknown currency: {0}")]
    BadCurrency(String),
    #[error(
        "no exchange rate from {from} to {to} in force on {day}: a system administrator sets one (berth cost rate set {from} {to} RATE)"
    )]
    NoExchangeRate {
        from: String,
        to: String,
        day: String,
    },
}

/// `[from, to)` of month `YYYY-MM` in UTC, ms since the epoch.
pub fn month(text: &str) -> Result<(u64, u64), ReportError> {
    let bad = || ReportError::BadMonth(text.to_string());
    let first = NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d").map_err(|_| bad())?;
    if first.format("%Y-%m").to_string() != text {
        return Err(bad());
    }
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .ok_or_else(bad)?;
    let ms = |d: NaiveDate| {
        Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight"))
            .timestamp_millis()
    };
    let (from, to) = (ms(first), ms(next));
    if from < 0 {
        return Err(bad());
    }
    Ok((from as u64, to as u64))
}

/// One sum to report: a ledger entry, a daily total of entries, or an open piece.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// The row it belongs to.
    pub key: String,
    /// When its time starts (ms since the epoch): the day an exchange rate is taken on.
    pub at: u64,
    /// Its currency; none for billed time without a price.
    pub currency: Option<String>,
    pub amount: Decimal,
    pub unpriced_ms: u64,
    /// Entries (or pieces) it sums.
    pub entries: u64,
    /// Not yet in the ledger.
    pub provisional: bool,
}

impl Part {
    /// The part a piece of accrued time makes in row `key`.
    pub fn of_piece(key: String, piece: &super::accrual::Piece, provisional: bool) -> Part {
        Part {
            key,
            at: piece.from,
            unpriced_ms: if piece.currency.is_none() {
                piece.to - piece.from
            } else {
                0
            },
            currency: piece.currency.as_ref().map(|c| c.code().to_string()),
            amount: piece.amount,
            entries: 1,
            provisional,
        }
    }
}

/// Sums `parts` into rows by key, and the whole.
pub fn summarise(
    from: u64,
    to: u64,
    as_of: u64,
    parts: impl IntoIterator<Item = Part>,
) -> Result<Report, ReportError> {
    let mut groups: BTreeMap<String, (Totals, u64, u64)> = BTreeMap::new();
    let mut whole = Totals::default();
    let mut provisional = Totals::default();
    let mut unpriced_ms = 0;
    for part in parts {
        let group = groups.entry(part.key).or_default();
        group.2 += part.entries;
        group.1 += part.unpriced_ms;
        unpriced_ms += part.unpriced_ms;
        if let Some(code) = &part.currency {
            let money = Money {
                amount: part.amount,
                currency: Currency::parse(code)
                    .map_err(|_| ReportError::BadCurrency(code.clone()))?,
            };
            group.0.add(&money);
            whole.add(&money);
            if part.provisional {
                provisional.add(&money);
            }
        }
    }
    Ok(Report {
        from,
        to,
        rows: groups
            .into_iter()
            .map(|(key, (totals, unpriced, entries))| Row {
                key,
                totals: totals.iter().collect(),
                unpriced_seconds: unpriced / 1000,
                entries,
            })
            .collect(),
        totals: whole.iter().collect(),
        unpriced_seconds: unpriced_ms / 1000,
        provisional: provisional.iter().collect(),
        as_of,
        idle: Vec::new(),
        conversion: None,
    })
}

/// The UTC day of `at` as `YYYY-MM-DD`.
pub fn day(at: u64) -> String {
    let date = Utc
        .timestamp_millis_opt((at / MS_PER_DAY * MS_PER_DAY) as i64)
        .single()
        .expect("a stored time")
        .date_naive();
    format!("{:04}-{:02}-{:02}", date.year(), date.month(), date.day())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_utc_and_checked() {
        let (from, to) = month("2026-11").unwrap();
        assert_eq!(from, 1_793_491_200_000);
        assert_eq!(to - from, 30 * MS_PER_DAY);
        let (from, to) = month("2028-02").unwrap();
        assert_eq!(to - from, 29 * MS_PER_DAY);
        for bad in ["2026-13", "2026-1", "26-11", "2026-11-01", "november", ""] {
            assert!(month(bad).is_err(), "{bad}");
        }
        assert_eq!(day(from + 3 * MS_PER_DAY + 5), "2028-02-04");
    }

    #[test]
    fn groupings_parse() {
        assert_eq!(By::parse("day"), Some(By::Day));
        assert_eq!(By::parse("label:team"), Some(By::Label("team".into())));
        assert_eq!(By::parse("label:"), None);
        assert_eq!(By::parse("week"), None);
    }
}
