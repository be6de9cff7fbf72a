//! Money: an exact decimal amount in one currency, and the one rounding rule of the cost
//! ledger. Amounts in different currencies are never added: a sum is kept per currency
//! ([`Totals`]), and asking one sum of several currencies is an error that names them.

use std::collections::BTreeMap;
use std::fmt;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

/// Decimal places every ledger amount is rounded to: nano-units of the currency. One
/// rounding per ledger entry, half to even; sums of entries are exact. A month of hourly
/// entries for 10,000 machines (7.2 million) is then at most 3.6 thousandths of a unit
/// away from the exact rational figure, so every total is exact to the cent.
pub const LEDGER_SCALE: u32 = 9;

/// The ledger's rounding rule, stated once: half to even (banker's rounding) at
/// [`LEDGER_SCALE`] places, applied to each entry's amount and nowhere else.
pub fn round_ledger(amount: Decimal) -> Decimal {
    amount.round_dp_with_strategy(LEDGER_SCALE, RoundingStrategy::MidpointNearestEven)
}

/// Why an amount or a sum was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Not an ISO 4217 code.
    #[error("{0:?} is not a currency code (three capital letters, ISO 4217: USD, EUR, CNY)")]
    BadCurrency(String),
    /// Not a decimal number.
    #[error("{0:?} is not an amount (a decimal number such as 12.50)")]
    BadAmount(String),
    /// Amounts in different currencies were to be added.
    #[error("amounts in {0} and {1} cannot be added: currencies are summed separately")]
    MixedCurrencies(Currency, Currency),
    /// A sum of no amounts has no currency.
    #[error("there is no amount to sum")]
    Empty,
}

/// An ISO 4217 currency code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency(String);

impl Currency {
    /// `code` if it is three ASCII capital letters.
    pub fn parse(code: &str) -> Result<Currency, MoneyError> {
        if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Currency(code.to_string()))
        } else {
            Err(MoneyError::BadCurrency(code.to_string()))
        }
    }

    /// The code.
    pub fn code(&self) -> &str {
        &self.0
    }

    /// Decimal places of the currency's minor unit (ISO 4217), for display only.
    pub fn minor_units(&self) -> u32 {
        match self.0.as_str() {
            "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF"
            | "UGX" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
            "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
            _ => 2,
        }
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(code: String) -> Result<Currency, MoneyError> {
        Currency::parse(&code)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.0
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An amount in a currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Money {
    /// Exact; serialised as a string so nothing on the way turns it into a float.
    #[schema(value_type = String, example = "12.345678901")]
    pub amount: Decimal,
    /// ISO 4217.
    #[schema(value_type = String, example = "USD")]
    pub currency: Currency,
}

impl Money {
    /// `amount` (a decimal number as text) in `currency`.
    pub fn parse(amount: &str, currency: &str) -> Result<Money, MoneyError> {
        let text = amount.trim();
        // Plain decimal notation only: an exponent or a grouping separator is a typo
        // waiting to become a price a thousand times off.
        let plain = text
            .bytes()
            .enumerate()
            .all(|(i, b)| b.is_ascii_digit() || b == b'.' || (i == 0 && b == b'-'));
        let amount = text
            .parse::<Decimal>()
            .ok()
            .filter(|_| plain && !text.is_empty())
            .ok_or_else(|| MoneyError::BadAmount(amount.to_string()))?;
        Ok(Money {
            amount,
            currency: Currency::parse(currency)?,
        })
    }

    /// Zero of `currency`.
    pub fn zero(currency: Currency) -> Money {
        Money {
            amount: Decimal::ZERO,
            currency,
        }
    }

    /// The sum, or an error if the currencies differ.
    pub fn checked_add(&self, other: &Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::MixedCurrencies(
                self.currency.clone(),
                other.currency.clone(),
            ));
        }
        Ok(Money {
            amount: self.amount + other.amount,
            currency: self.currency.clone(),
        })
    }

    /// The amount rounded half to even to the currency's minor unit, for people to read
    /// (`12.35 USD`). Never stored or summed: sums are of the exact amounts.
    pub fn display(&self) -> String {
        let places = self.currency.minor_units();
        let shown = self
            .amount
            .round_dp_with_strategy(places, RoundingStrategy::MidpointNearestEven);
        format!("{shown:.*} {}", places as usize, self.currency)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount.normalize(), self.currency)
    }
}

/// Sums kept per currency.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals(BTreeMap<Currency, Decimal>);

impl Totals {
    /// Adds `money` to its currency's sum.
    pub fn add(&mut self, money: &Money) {
        *self.0.entry(money.currency.clone()).or_default() += money.amount;
    }

    /// Adds every sum of `other`.
    pub fn merge(&mut self, other: &Totals) {
        for (currency, amount) in &other.0 {
            *self.0.entry(currency.clone()).or_default() += *amount;
        }
    }

    /// The sum in `currency` (zero if there is none).
    pub fn get(&self, currency: &Currency) -> Decimal {
        self.0.get(currency).copied().unwrap_or_default()
    }

    /// Each currency's sum, by code.
    pub fn iter(&self) -> impl Iterator<Item = Money> + '_ {
        self.0.iter().map(|(currency, amount)| Money {
            amount: *amount,
            currency: currency.clone(),
        })
    }

    /// The one sum, if every amount was in one currency; refused otherwise.
    pub fn single(&self) -> Result<Money, MoneyError> {
        let mut sums = self.iter();
        let first = sums.next().ok_or(MoneyError::Empty)?;
        match sums.next() {
            None => Ok(first),
            Some(second) => Err(MoneyError::MixedCurrencies(first.currency, second.currency)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn the_ledger_rounds_half_to_even_at_nine_places() {
        assert_eq!(round_ledger(d("0.0000000005")), d("0.000000000"));
        assert_eq!(round_ledger(d("0.0000000015")), d("0.000000002"));
        assert_eq!(round_ledger(d("0.0000000025")), d("0.000000002"));
        assert_eq!(round_ledger(d("-0.0000000025")), d("-0.000000002"));
        assert_eq!(round_ledger(d("1.23456789049")), d("1.234567890"));
        // A t3.nano for one second: 0.0052 / 3600 = 0.000001444…
        assert_eq!(round_ledger(d("0.0052") / d("3600")), d("0.000001444"));
    }

    #[test]
    fn currencies_are_never_added_together() {
        let usd = Money::parse("1.10", "USD").unwrap();
        let cny = Money::parse("7", "CNY").unwrap();
        assert_eq!(
            usd.checked_add(&cny),
            Err(MoneyError::MixedCurrencies(
                Currency::parse("USD").unwrap(),
                Currency::parse("CNY").unwrap()
            ))
        );
        assert_eq!(
            usd.checked_add(&usd).unwrap(),
            Money::parse("2.20", "USD").unwrap()
        );
        let mut totals = Totals::default();
        totals.add(&usd);
        assert_eq!(totals.single().unwrap().amount, d("1.10"));
        totals.add(&cny);
        let error = totals.single().unwrap_err().to_string();
        assert!(error.contains("CNY") && error.contains("USD"), "{error}");
        assert_eq!(totals.get(&Currency::parse("CNY").unwrap()), d("7"));
        assert_eq!(Totals::default().single(), Err(MoneyError::Empty));
    }

    #[test]
    fn codes_and_amounts_are_checked() {
        for bad in ["usd", "US", "USDT", "U$D", ""] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
        }
        assert!(Money::parse("1e3", "USD").is_err());
        assert!(Money::parse("twelve", "USD").is_err());
        assert!(Money::parse("1,000", "USD").is_err());
        assert_eq!(
            Money::parse(" -0.25 ", "USD").unwrap().amount,
            "-0.25".parse().unwrap()
        );
        assert!(serde_json::from_str::<Currency>("\"usd\"").is_err());
        let m: Money = serde_json::from_str(r#"{"amount":"0.1","currency":"EUR"}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"amount":"0.1","currency":"EUR"}"#
        );
    }

    #[test]
    fn display_rounds_to_the_minor_unit_half_to_even() {
        let show = |a: &str, c: &str| Money::parse(a, c).unwrap().display();
        assert_eq!(show("12.345", "USD"), "12.34 USD");
        assert_eq!(show("12.355", "USD"), "12.36 USD");
        assert_eq!(show("12.5", "JPY"), "12 JPY");
        assert_eq!(show("1.2345", "KWD"), "1.234 KWD");
        assert_eq!(show("3", "EUR"), "3.00 EUR");
    }
}
