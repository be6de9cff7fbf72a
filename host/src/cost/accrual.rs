//! Accrual: a machine's charges over a window, from its billing phases and its rates over
//! time. The window is cut wherever the phase or the rate changes and at every UTC
//! midnight, so each piece has one price and lies in one day: a report by day, by machine
//! or by project sums whole pieces, and every breakdown adds up to the same total.
//! Each piece is rounded once ([`round_ledger`]); nothing else is.

use rust_decimal::Decimal;

use super::money::{Currency, round_ledger};
use super::rate::{Phase, Rate};

const MS_PER_DAY: u64 = 86_400_000;

/// A piece of a window with one phase, one rate and one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// Start, ms since the epoch (inclusive).
    pub from: u64,
    /// End, ms since the epoch (exclusive).
    pub to: u64,
    pub phase: Phase,
    /// When the rate it was charged at took effect; none when the machine was billed but
    /// had no price (reported as unpriced time, never as free).
    pub rate_from: Option<u64>,
    /// The rate's currency, when it had one.
    pub currency: Option<Currency>,
    /// The charge, rounded by the ledger's rule (zero when unpriced).
    pub amount: Decimal,
}

/// The charged pieces of `[from, to)`. `phases` and `rates` are each a timeline: entries
/// `(since, value)` in ascending order, each holding until the next. Time before a
/// timeline's first entry is unbilled (phases) or unpriced (rates), and so is time under
/// a rate of `None`. Unbilled pieces are left out; so are pieces whose rate charges
/// nothing in their phase.
pub fn accrue(
    phases: &[(u64, Phase)],
    rates: &[(u64, Option<Rate>)],
    from: u64,
    to: u64,
) -> Vec<Piece> {
    let mut cuts: Vec<u64> = phases
        .iter()
        .map(|(t, _)| *t)
        .chain(rates.iter().map(|(t, _)| *t))
        .filter(|t| *t > from && *t < to)
        .collect();
    let mut midnight = (from / MS_PER_DAY + 1) * MS_PER_DAY;
    while midnight < to {
        cuts.push(midnight);
        midnight += MS_PER_DAY;
    }
    cuts.push(to);
    cuts.sort_unstable();
    cuts.dedup();

    let mut pieces = Vec::new();
    let mut start = from;
    for end in cuts {
        if end <= start {
            continue;
        }
        let phase = holding(phases, start).copied().unwrap_or(Phase::Unbilled);
        if phase != Phase::Unbilled {
            let rate = rates
                .iter()
                .rev()
                .find(|(t, _)| *t <= start)
                .and_then(|(since, rate)| rate.as_ref().map(|r| (since, r)));
            let piece = match rate {
                Some((since, rate)) if rate.per_unit(phase).is_some() => Some(Piece {
                    from: start,
                    to: end,
                    phase,
                    rate_from: Some(*since),
                    currency: Some(rate.currency.clone()),
                    amount: round_ledger(rate.amount(phase, start, end)),
                }),
                // Stopped, and the rate charges nothing for it.
                Some(_) => None,
                None => Some(Piece {
                    from: start,
                    to: end,
                    phase,
                    rate_from: None,
                    currency: None,
                    amount: Decimal::ZERO,
                }),
            };
            pieces.extend(piece);
        }
        start = end;
    }
    pieces
}

/// Whether a piece ends of itself at `at`: a UTC midnight, or a change of phase or rate.
/// A piece that ends at the end of a window without one is still open: the next window
/// extends it.
pub fn is_cut(phases: &[(u64, Phase)], rates: &[(u64, Option<Rate>)], at: u64) -> bool {
    at.is_multiple_of(MS_PER_DAY)
        || phases.iter().any(|(t, _)| *t == at)
        || rates.iter().any(|(t, _)| *t == at)
}

/// A window's pieces split for the ledger: the closed ones, which it appends once and
/// for all, and the open one still growing at the window's end, which it leaves for a
/// later window (a report shows it as provisional). A piece is closed once time has
/// passed the cut that ends it, so the ledger holds one entry per machine, price and day
/// however often accrual runs, and each is rounded once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    pub pieces: Vec<Piece>,
    pub open: Option<Piece>,
    /// Where the next window starts: the open piece's start, or the window's end.
    pub resume_at: u64,
}

/// Accrues `[from, until)` ([`accrue`]) and splits off the open piece.
pub fn accrue_closed(
    phases: &[(u64, Phase)],
    rates: &[(u64, Option<Rate>)],
    from: u64,
    until: u64,
) -> Closed {
    let mut pieces = accrue(phases, rates, from, until);
    let open = match pieces.last() {
        Some(last) if last.to == until && !is_cut(phases, rates, until) => pieces.pop(),
        _ => None,
    };
    let resume_at = open.as_ref().map_or(until.max(from), |p| p.from);
    Closed {
        pieces,
        open,
        resume_at,
    }
}

/// The value of `timeline` at `at`.
fn holding<T>(timeline: &[(u64, T)], at: u64) -> Option<&T> {
    timeline
        .iter()
        .rev()
        .find(|(t, _)| *t <= at)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::rate::Basis;
    use crate::cost::testing::at;

    fn hourly(running: &str, stopped: Option<&str>) -> Rate {
        Rate {
            currency: Currency::parse("USD").unwrap(),
            basis: Basis::Hour,
            running: running.parse().unwrap(),
            stopped: stopped.map(|s| s.parse().unwrap()),
            source: "test".into(),
        }
    }

    fn total(pieces: &[Piece]) -> Decimal {
        pieces.iter().map(|p| p.amount).sum()
    }

    #[test]
    fn a_machine_created_mid_month_and_retired_mid_day_is_charged_its_seconds() {
        let created = at("2026-11-14T09:30:15Z");
        let retired = at("2026-11-16T13:05:45Z");
        let phases = [(created, Phase::Running), (retired, Phase::Unbilled)];
        let rates = [(created, Some(hourly("0.10", None)))];
        let pieces = accrue(
            &phases,
            &rates,
            at("2026-11-01T00:00:00Z"),
            at("2026-12-01T00:00:00Z"),
        );
        // Three days' pieces, cut at the two midnights between.
        assert_eq!(pieces.len(), 3);
        assert_eq!(pieces[0].from, created);
        assert_eq!(pieces[1].from, at("2026-11-15T00:00:00Z"));
        assert_eq!(pieces[2].to, retired);
        let seconds = (retired - created) / 1000;
        assert_eq!(seconds, 2 * 86_400 + 3 * 3600 + 35 * 60 + 30);
        // 185 730 s at 0.10 an hour is 5.1591666…: each of the three pieces is rounded
        // once, and their sum is what the ledger holds.
        assert_eq!(total(&pieces), "5.159166666".parse::<Decimal>().unwrap());
        let exact =
            Decimal::from(seconds) * "0.10".parse::<Decimal>().unwrap() / Decimal::from(3600);
        assert!((total(&pieces) - exact).abs() < "0.000000002".parse().unwrap());
    }

    #[test]
    fn a_price_change_cuts_a_window_and_never_reaches_back() {
        let start = at("2026-11-02T00:00:00Z");
        let change = at("2026-11-02T06:00:00Z");
        let phases = [(start, Phase::Running)];
        let rates = [
            (start, Some(hourly("1", None))),
            (change, Some(hourly("3", None))),
        ];
        let pieces = accrue(&phases, &rates, start, at("2026-11-02T12:00:00Z"));
        assert_eq!(pieces.len(), 2);
        assert_eq!(pieces[0].amount, Decimal::from(6));
        assert_eq!(pieces[1].amount, Decimal::from(18));
        assert_eq!(pieces[1].rate_from, Some(change));
        // Accrued before the change was known: the same pieces up to it, unchanged.
        let earlier = accrue(&phases, &rates[..1], start, change);
        assert_eq!(earlier, pieces[..1]);
    }

    #[test]
    fn a_stopped_cloud_machine_pays_its_disks_only_if_the_rate_says_so() {
        let t0 = at("2026-11-05T00:00:00Z");
        let stop = at("2026-11-05T02:00:00Z");
        let start = at("2026-11-05T05:00:00Z");
        let phases = [
            (t0, Phase::Running),
            (stop, Phase::Stopped),
            (start, Phase::Running),
        ];
        let end = at("2026-11-05T06:00:00Z");
        let with_disk = accrue(&phases, &[(t0, Some(hourly("0.5", Some("0.01"))))], t0, end);
        assert_eq!(with_disk.len(), 3);
        assert_eq!(total(&with_disk), "1.53".parse::<Decimal>().unwrap());
        let without = accrue(&phases, &[(t0, Some(hourly("0.5", None)))], t0, end);
        assert_eq!(without.len(), 2);
        assert_eq!(total(&without), "1.5".parse::<Decimal>().unwrap());
    }

    #[test]
    fn billed_time_without_a_price_is_reported_unpriced_not_free() {
        let t0 = at("2026-11-05T00:00:00Z");
        let priced = at("2026-11-05T01:00:00Z");
        let pieces = accrue(
            &[(t0, Phase::Running)],
            &[(priced, Some(hourly("2", None)))],
            t0,
            at("2026-11-05T02:00:00Z"),
        );
        assert_eq!(pieces.len(), 2);
        assert_eq!(
            (pieces[0].rate_from, pieces[0].currency.clone()),
            (None, None)
        );
        assert_eq!(pieces[1].amount, Decimal::from(2));
        // A rate of none: unpriced from then on, until priced again.
        let gone = at("2026-11-05T01:30:00Z");
        let rates = [(t0, Some(hourly("2", None))), (gone, None)];
        let pieces = accrue(
            &[(t0, Phase::Running)],
            &rates,
            t0,
            at("2026-11-05T02:00:00Z"),
        );
        assert_eq!(pieces.len(), 2);
        assert_eq!(pieces[0].amount, Decimal::from(3));
        assert_eq!((pieces[1].from, pieces[1].currency.clone()), (gone, None));
    }

    #[test]
    fn only_pieces_whose_cut_has_passed_are_closed() {
        let t0 = at("2026-11-05T07:00:00Z");
        let phases = [(t0, Phase::Running)];
        let rates = [(t0, Some(hourly("1", None)))];
        // Hourly rounds through the day close nothing; the round past midnight closes
        // the day in one piece.
        let mut resume = t0;
        let mut closed = Vec::new();
        for hour in 1..=20 {
            let round = accrue_closed(&phases, &rates, resume, t0 + hour * 3_600_000);
            closed.extend(round.pieces);
            resume = round.resume_at;
            if hour < 17 {
                assert!(closed.is_empty());
                assert_eq!(resume, t0);
                assert_eq!(round.open.unwrap().amount, Decimal::from(hour));
            }
        }
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].amount, Decimal::from(17));
        assert_eq!(resume, at("2026-11-06T00:00:00Z"));
        // A window ending at a cut closes its last piece; an unbilled tail leaves none open.
        let stop = at("2026-11-06T02:00:00Z");
        let phases = [(t0, Phase::Running), (stop, Phase::Unbilled)];
        let round = accrue_closed(&phases, &rates, resume, stop);
        assert_eq!((round.pieces.len(), round.open.is_none()), (1, true));
        let round = accrue_closed(&phases, &rates, stop, stop + 3_600_000);
        assert_eq!(
            (round.pieces.len(), round.open, round.resume_at),
            (0, None, stop + 3_600_000)
        );
    }

    #[test]
    fn windows_accrued_piecewise_add_up_to_the_window_at_once() {
        // Hourly accrual runs over three days make the same total as one run, to the
        // ledger's precision (one rounding per piece).
        let t0 = at("2026-11-28T07:13:01Z");
        let phases = [
            (t0, Phase::Running),
            (at("2026-11-29T11:11:11Z"), Phase::Stopped),
        ];
        let rates = [(t0, Some(hourly("0.0464", Some("0.0017"))))];
        let end = at("2026-12-01T05:00:00Z");
        let once = accrue(&phases, &rates, t0, end);
        let mut hourly_runs = Vec::new();
        let mut cursor = t0;
        while cursor < end {
            let next = (((cursor / 3_600_000) + 1) * 3_600_000).min(end);
            hourly_runs.extend(accrue(&phases, &rates, cursor, next));
            cursor = next;
        }
        let (once, pieces, hourly_runs) = (
            total(&once),
            once.len() + hourly_runs.len(),
            total(&hourly_runs),
        );
        // Each piece is at most half a nano-unit from exact.
        let bound = Decimal::new(pieces as i64, 9);
        assert!(
            (once - hourly_runs).abs() <= bound,
            "{once} vs {hourly_runs}"
        );
        assert_eq!(once.round_dp(2), hourly_runs.round_dp(2));
    }
}
