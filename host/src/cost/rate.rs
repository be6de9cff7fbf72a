//! What a machine costs per unit of time, and what a span of time at that rate comes to.
//! A cloud machine's rate is per hour (its provider's price); a physical host's is per
//! month (amortised purchase plus running cost), divided by the hours of the month the
//! time falls in, so a host costs the same each month whatever its length.

use chrono::{Datelike, TimeZone, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::money::Currency;

const MS_PER_HOUR: i64 = 3_600_000;
const MS_PER_DAY: u64 = 86_400_000;

/// The unit a rate's amounts are per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Basis {
    /// Per hour.
    Hour,
    /// Per calendar month (UTC): a span is charged its share of the month it falls in.
    Month,
}

/// How a machine is billed over a span: which of its rate's amounts applies, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Not charged (requested, failed, retired; a pool host not allocated to a project).
    Unbilled,
    /// Charged at the running amount.
    Running,
    /// Charged at the stopped amount (a stopped cloud machine's disks), if the rate has one.
    Stopped,
}

/// A machine's price from some moment on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    pub currency: Currency,
    pub basis: Basis,
    /// While running (or, for a pool host, allocated).
    pub running: Decimal,
    /// While stopped; none when a stopped machine costs nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<Decimal>,
    /// Where the price came from (`provider aws-ec2: t3.micro in us-east-1`, `sheet
    /// rack-a`), for the report and the audit.
    pub source: String,
}

impl Rate {
    /// The amount `phase` applies per [`Basis`], if it is charged at all.
    pub fn per_unit(&self, phase: Phase) -> Option<Decimal> {
        match phase {
            Phase::Unbilled => None,
            Phase::Running => Some(self.running),
            Phase::Stopped => self.stopped,
        }
    }

    /// What `[from, to)` (ms since the epoch) in `phase` comes to, exactly (unrounded).
    /// The span must lie within one UTC day, as the ledger's entries do.
    pub fn amount(&self, phase: Phase, from: u64, to: u64) -> Decimal {
        debug_assert!(from <= to && from / MS_PER_DAY == (to - 1).max(from) / MS_PER_DAY);
        let Some(per_unit) = self.per_unit(phase) else {
            return Decimal::ZERO;
        };
        let ms = Decimal::from(to - from);
        match self.basis {
            Basis::Hour => per_unit * ms / Decimal::from(MS_PER_HOUR),
            Basis::Month => per_unit * ms / Decimal::from(days_in_month(from) as u64 * MS_PER_DAY),
        }
    }
}

/// Days in the UTC month that contains `at` (ms since the epoch).
pub fn days_in_month(at: u64) -> u32 {
    let date = Utc
        .timestamp_millis_opt(at as i64)
        .single()
        .expect("a time berth stored")
        .date_naive();
    let first = date.with_day(1).expect("day 1 exists");
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .expect("a month after a stored time");
    (next - first).num_days() as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::testing::at;

    fn rate(basis: Basis, running: &str, stopped: Option<&str>) -> Rate {
        Rate {
            currency: Currency::parse("USD").unwrap(),
            basis,
            running: running.parse().unwrap(),
            stopped: stopped.map(|s| s.parse().unwrap()),
            source: "test".into(),
        }
    }

    #[test]
    fn an_hourly_rate_is_pro_rated_to_the_millisecond() {
        let r = rate(Basis::Hour, "0.0416", Some("0.008"));
        let from = at("2026-11-03T10:00:00Z");
        assert_eq!(
            r.amount(Phase::Running, from, from + 3_600_000),
            "0.0416".parse().unwrap()
        );
        assert_eq!(
            r.amount(Phase::Running, from, from + 90_000),
            "0.00104".parse().unwrap()
        );
        assert_eq!(
            r.amount(Phase::Stopped, from, from + 1_800_000),
            "0.004".parse().unwrap()
        );
        assert_eq!(
            r.amount(Phase::Unbilled, from, from + 1_800_000),
            Decimal::ZERO
        );
        let no_disk = rate(Basis::Hour, "0.0416", None);
        assert_eq!(
            no_disk.amount(Phase::Stopped, from, from + 1_800_000),
            Decimal::ZERO
        );
    }

    #[test]
    fn a_monthly_rate_is_shared_over_the_hours_of_its_month() {
        let r = rate(Basis::Month, "720", None);
        // November has 30 days: 720 / 30 a day; February 2027 has 28.
        let nov = at("2026-11-10T00:00:00Z");
        assert_eq!(
            r.amount(Phase::Running, nov, nov + MS_PER_DAY),
            "24".parse().unwrap()
        );
        let feb = at("2027-02-10T00:00:00Z");
        assert_eq!(
            r.amount(Phase::Running, feb, feb + MS_PER_DAY),
            Decimal::from(720) / Decimal::from(28)
        );
        assert_eq!(days_in_month(at("2028-02-29T23:59:59Z")), 29);
        assert_eq!(days_in_month(at("2026-12-31T23:59:59Z")), 31);
    }
}
