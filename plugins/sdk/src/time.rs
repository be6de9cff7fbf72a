//! Times as cloud APIs write them.

use crate::Datetime;

/// An ISO 8601 time in UTC, as clouds write them: with `Z` (`2026-12-01T08:00:00.000Z`,
/// EC2) or `+00:00`, or with no zone at all (`2026-12-01T08:00:00.000000`, Nova's
/// `launched_at`, which is UTC), to the minute (`2026-12-01T08:00Z`, ECS) or finer. Any
/// other offset is not UTC, and answers `None`.
pub fn parse_utc(text: &str) -> Option<Datetime> {
    let text = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix("+00:00"))
        .unwrap_or(text);
    let (date, time) = text.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (year, month, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (clock, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut t = clock.split(':').map(|p| p.parse::<i64>());
    let (hour, minute) = (t.next()?.ok()?, t.next()?.ok()?);
    let second = match t.next() {
        Some(second) => second.ok()?,
        None if fraction.is_empty() => 0,
        None => return None,
    };
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    let nanoseconds = if fraction.is_empty() {
        0
    } else {
        let digits: String = fraction.chars().take(9).collect();
        digits.parse::<u32>().ok()? * 10u32.pow(9 - digits.len() as u32)
    };
    Some(Datetime {
        seconds: u64::try_from(seconds).ok()?,
        nanoseconds,
    })
}

/// `time` as ISO 8601 in UTC to the second (`2026-12-01T08:00:00Z`): what signing schemes
/// put in their date headers (ECS's `x-acs-date`).
pub fn format_utc(time: &Datetime) -> String {
    let seconds = time.seconds as i64;
    let (days, clock) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // The civil date of a day count (Howard Hinnant's algorithm, the inverse of the above).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        clock / 3600,
        clock / 60 % 60,
        clock % 60
    )
}

#[cfg(test)]
mod tests {
    use super::{format_utc, parse_utc};

    #[test]
    fn utc_times_read_with_or_without_a_zone() {
        let z = parse_utc("2026-12-01T08:00:00.250Z").unwrap();
        assert_eq!((z.seconds, z.nanoseconds), (1_796_112_000, 250_000_000));
        let bare = parse_utc("2026-12-01T08:00:00.250000").unwrap();
        assert_eq!((bare.seconds, bare.nanoseconds), (z.seconds, z.nanoseconds));
        assert_eq!(
            parse_utc("2026-12-01T08:00:00+00:00").unwrap().seconds,
            z.seconds
        );
        assert!(parse_utc("2026-12-01T08:00:00+02:00").is_none());
        assert!(parse_utc("2026-13-01T08:00:00Z").is_none());
        assert_eq!(parse_utc("2026-12-01T08:00Z").unwrap().seconds, z.seconds);
        assert!(parse_utc("2026-12-01T08:00.5Z").is_none());
    }

    #[test]
    fn utc_times_format_as_they_parse() {
        for text in [
            "1970-01-01T00:00:00Z",
            "2000-02-29T23:59:59Z",
            "2026-12-01T08:00:00Z",
            "2100-03-01T12:34:56Z",
        ] {
            assert_eq!(format_utc(&parse_utc(text).unwrap()), text);
        }
    }
}
