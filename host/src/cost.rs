//! Cost accounting (issue 16, under way): what machines cost, exactly. [`money`] holds
//! amounts and the one rounding rule, [`rate`] what a machine costs per hour or per month
//! in each billing phase, [`accrual`] cuts a window into charged pieces of one price and
//! one day, [`sheet`] prices pool hosts and private-cloud flavors where no provider does,
//! [`report`] sums ledger entries into breakdowns, [`chart`] draws daily cost per
//! project. This is pure computation: the ledger
//! service that owns the tables is `scheduling::ledger`.

pub mod accrual;
pub mod chart;
pub mod money;
pub mod rate;
pub mod report;
pub mod sheet;

/// What the cost tests share.
#[cfg(test)]
pub(crate) mod testing {
    /// Ms since the epoch of an RFC 3339 time.
    pub(crate) fn at(rfc3339: &str) -> u64 {
        chrono::DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_millis() as u64
    }
}
