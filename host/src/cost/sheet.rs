//! Price sheets: what a cluster's machines cost where no provider prices them. A physical
//! pool's sheet prices each host (or the pool's default) as its purchase price amortised
//! over some months plus a monthly running cost (power, space, support); a private
//! cloud's prices each flavor per hour, with an optional stopped (disk) price. A sheet is
//! versioned by the time it takes effect: a new version prices time from then on, never
//! before.

use std::collections::BTreeMap;

use chrono::{Months, NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::money::Currency;
use super::rate::{Basis, Rate};

/// What one pool host costs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostCost {
    /// What it cost to buy.
    pub purchase: Decimal,
    /// When it was bought (amortisation starts on that day, UTC).
    pub purchased: NaiveDate,
    /// Months the purchase is spread over; after them the host costs its running cost.
    pub amortise_months: u32,
    /// Running cost per month.
    #[serde(default)]
    pub running_monthly: Decimal,
}

/// What one flavor (machine type) of a private cloud costs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlavorCost {
    /// Per hour while running.
    pub per_hour: Decimal,
    /// Per hour while stopped (its disks), if that is charged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_per_hour: Option<Decimal>,
}

/// One version of a cluster's price sheet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Sheet {
    /// A physical pool: hosts by name, and a default for hosts not named.
    Pool {
        currency: Currency,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        default: Option<HostCost>,
        #[serde(default)]
        hosts: BTreeMap<String, HostCost>,
    },
    /// A private cloud: flavors by name.
    Flavors {
        currency: Currency,
        flavors: BTreeMap<String, FlavorCost>,
    },
}

/// Why a sheet was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SheetError {
    #[error("{what} is negative ({amount}); a price is zero or more")]
    Negative { what: String, amount: Decimal },
    #[error("host {0}: amortise_months must be at least 1")]
    NoMonths(String),
}

impl Sheet {
    /// Refuses negative prices and zero-month amortisation, naming the entry.
    pub fn validate(&self) -> Result<(), SheetError> {
        let non_negative = |what: String, amount: Decimal| {
            if amount.is_sign_negative() && !amount.is_zero() {
                Err(SheetError::Negative { what, amount })
            } else {
                Ok(())
            }
        };
        match self {
            Sheet::Pool { default, hosts, .. } => {
                let named = hosts.iter().map(|(n, c)| (n.as_str(), c));
                for (name, cost) in default.iter().map(|c| ("(default)", c)).chain(named) {
                    non_negative(format!("host {name}: purchase"), cost.purchase)?;
                    non_negative(
                        format!("host {name}: running_monthly"),
                        cost.running_monthly,
                    )?;
                    if cost.amortise_months == 0 {
                        return Err(SheetError::NoMonths(name.to_string()));
                    }
                }
            }
            Sheet::Flavors { flavors, .. } => {
                for (name, cost) in flavors {
                    non_negative(format!("flavor {name}: per_hour"), cost.per_hour)?;
                    if let Some(stopped) = cost.stopped_per_hour {
                        non_negative(format!("flavor {name}: stopped_per_hour"), stopped)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The rates of the dearest host a pool's sheet prices at `since` (its default or a named
/// host): what a machine not yet given a host is estimated at, so a budget is never
/// checked against less than the machine may cost.
pub fn dearest_host_rates(versions: &[(u64, Sheet)], since: u64) -> Vec<(u64, Option<Rate>)> {
    let mut names: Vec<&str> = vec![""];
    for (_, sheet) in versions {
        if let Sheet::Pool { hosts, .. } = sheet {
            names.extend(hosts.keys().map(String::as_str));
        }
    }
    let at_since = |rates: &[(u64, Option<Rate>)]| {
        rates
            .iter()
            .rev()
            .find(|(t, _)| *t <= since)
            .or(rates.first())
            .and_then(|(_, r)| r.as_ref().map(|r| r.running))
            .unwrap_or_default()
    };
    names
        .into_iter()
        .map(|name| host_rates(versions, name, since))
        .max_by(|a, b| at_since(a).cmp(&at_since(b)))
        .unwrap_or_default()
}

/// The rates of pool host `host` under a sheet's versions (`(effective_from, sheet)`,
/// ascending), from `since` on: each version from its effective time (the one in force
/// at `since` from `since`), and within a version a drop to the running cost alone once
/// the purchase is amortised. A version that does not price the host leaves it unpriced
/// from then on (reported as such).
pub fn host_rates(versions: &[(u64, Sheet)], host: &str, since: u64) -> Vec<(u64, Option<Rate>)> {
    let mut out = Vec::new();
    for (start, until, sheet) in in_force(versions, since) {
        let Sheet::Pool {
            currency,
            default,
            hosts,
        } = sheet
        else {
            out.push((start, None));
            continue;
        };
        let Some(cost) = hosts.get(host).or(default.as_ref()) else {
            out.push((start, None));
            continue;
        };
        let monthly = |amortising: bool| Rate {
            currency: currency.clone(),
            basis: Basis::Month,
            running: if amortising {
                cost.purchase / Decimal::from(cost.amortise_months) + cost.running_monthly
            } else {
                cost.running_monthly
            },
            stopped: None,
            source: if amortising {
                format!(
                    "sheet: host {host}, purchase over {} months from {} plus running cost",
                    cost.amortise_months, cost.purchased
                )
            } else {
                format!("sheet: host {host}, running cost (purchase amortised)")
            },
        };
        let amortised = amortised_at(cost);
        if start < amortised {
            out.push((start, Some(monthly(true))));
            if amortised < until {
                out.push((amortised, Some(monthly(false))));
            }
        } else {
            out.push((start, Some(monthly(false))));
        }
    }
    out
}

/// The rates of a private-cloud machine of `flavor` under a sheet's versions, from `since`.
pub fn flavor_rates(
    versions: &[(u64, Sheet)],
    flavor: &str,
    since: u64,
) -> Vec<(u64, Option<Rate>)> {
    let mut out = Vec::new();
    for (start, _, sheet) in in_force(versions, since) {
        let rate = match sheet {
            Sheet::Flavors { currency, flavors } => flavors.get(flavor).map(|cost| Rate {
                currency: currency.clone(),
                basis: Basis::Hour,
                running: cost.per_hour,
                stopped: cost.stopped_per_hour,
                source: format!("sheet: flavor {flavor}"),
            }),
            Sheet::Pool { .. } => None,
        };
        out.push((start, rate));
    }
    out
}

/// The versions that price time from `since` on, each as `(start, until, sheet)`: from its
/// effective time (or `since`, for the one in force then) until the next version's.
fn in_force(versions: &[(u64, Sheet)], since: u64) -> impl Iterator<Item = (u64, u64, &Sheet)> {
    versions
        .iter()
        .enumerate()
        .filter_map(move |(i, (effective, sheet))| {
            let until = versions.get(i + 1).map(|(t, _)| *t).unwrap_or(u64::MAX);
            (until > since).then_some(((*effective).max(since), until, sheet))
        })
}

/// When a host's purchase is paid off: midnight UTC, `amortise_months` after the day it
/// was bought.
fn amortised_at(cost: &HostCost) -> u64 {
    let end = cost
        .purchased
        .checked_add_months(Months::new(cost.amortise_months))
        .unwrap_or(NaiveDate::MAX);
    Utc.from_utc_datetime(&end.and_hms_opt(0, 0, 0).expect("midnight"))
        .timestamp_millis()
        .max(0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::testing::at;

    fn pool(purchase: &str, running: &str) -> Sheet {
        Sheet::Pool {
            currency: Currency::parse("EUR").unwrap(),
            default: Some(HostCost {
                purchase: purchase.parse().unwrap(),
                purchased: NaiveDate::from_ymd_opt(2024, 12, 1).unwrap(),
                amortise_months: 24,
                running_monthly: running.parse().unwrap(),
            }),
            hosts: BTreeMap::new(),
        }
    }

    #[test]
    fn a_host_costs_its_purchase_over_the_months_then_its_running_cost() {
        let sheet = vec![(0, pool("4800", "50"))];
        let rates = host_rates(&sheet, "h1", at("2026-11-01T00:00:00Z"));
        assert_eq!(rates.len(), 2);
        assert_eq!(rates[0].1.as_ref().unwrap().running, "250".parse().unwrap());
        assert_eq!(rates[1].0, at("2026-12-01T00:00:00Z"));
        assert_eq!(rates[1].1.as_ref().unwrap().running, "50".parse().unwrap());
        // Past amortisation: the running cost only.
        let later = host_rates(&sheet, "h1", at("2027-03-01T00:00:00Z"));
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].1.as_ref().unwrap().running, "50".parse().unwrap());
    }

    #[test]
    fn a_new_version_prices_from_its_effective_time_only() {
        let change = at("2026-11-15T12:00:00Z");
        let versions = vec![(0, pool("4800", "50")), (change, pool("4800", "80"))];
        let rates = host_rates(&versions, "h1", at("2026-11-01T00:00:00Z"));
        let starts: Vec<u64> = rates.iter().map(|(t, _)| *t).collect();
        assert_eq!(
            starts,
            [
                at("2026-11-01T00:00:00Z"),
                change,
                at("2026-12-01T00:00:00Z")
            ]
        );
        assert_eq!(rates[1].1.as_ref().unwrap().running, "280".parse().unwrap());
        assert_eq!(rates[2].1.as_ref().unwrap().running, "80".parse().unwrap());
        // Asked from after the change, the earlier version does not appear.
        assert_eq!(host_rates(&versions, "h1", change + 1).len(), 2);
    }

    #[test]
    fn flavors_are_priced_by_name_and_a_missing_one_is_unpriced() {
        let mut flavors = BTreeMap::new();
        flavors.insert(
            "m1.small".to_string(),
            FlavorCost {
                per_hour: "0.02".parse().unwrap(),
                stopped_per_hour: Some("0.001".parse().unwrap()),
            },
        );
        let versions = vec![(
            0,
            Sheet::Flavors {
                currency: Currency::parse("CNY").unwrap(),
                flavors,
            },
        )];
        let rates = flavor_rates(&versions, "m1.small", 5);
        assert_eq!(rates[0].0, 5);
        assert_eq!(
            rates[0].1.as_ref().unwrap().stopped,
            Some("0.001".parse().unwrap())
        );
        assert_eq!(flavor_rates(&versions, "m1.huge", 5), vec![(5, None)]);
    }

    #[test]
    fn sheets_with_negative_prices_or_no_months_are_refused() {
        assert!(pool("4800", "50").validate().is_ok());
        let error = pool("-1", "50").validate().unwrap_err().to_string();
        assert!(
            error.contains("purchase") && error.contains("-1"),
            "{error}"
        );
        let Sheet::Pool {
            mut default,
            currency,
            hosts,
        } = pool("1", "1")
        else {
            unreachable!()
        };
        default.as_mut().unwrap().amortise_months = 0;
        let zero = Sheet::Pool {
            default,
            currency,
            hosts,
        };
        assert!(matches!(zero.validate(), Err(SheetError::NoMonths(_))));
        let json =
            r#"{"kind":"flavors","currency":"USD","flavors":{"a":{"per_hour":"1","extra":1}}}"#;
        assert!(serde_json::from_str::<Sheet>(json).is_err());
    }
}
