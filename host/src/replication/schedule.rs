//! Cron schedules of policies: parsing, and the next time one fires.
//!
//! Six fields (`sec min hour day month weekday`, as Harbor writes them) or the classic
//! five (`min hour day month weekday`, seconds taken as 0); times are UTC.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};

use super::{ReplicationError, ReplicationResult};

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule(cron::Schedule);

/// Parses `text`, or says what is wrong with it.
pub fn parse(text: &str) -> ReplicationResult<Schedule> {
    let fields = text.split_whitespace().count();
    let six = match fields {
        5 => format!("0 {text}"),
        6 => text.to_string(),
        _ => {
            return Err(ReplicationError::Invalid(format!(
                "schedule {text:?} has {fields} fields; write `sec min hour day month weekday` or `min hour day month weekday`"
            )));
        }
    };
    cron::Schedule::from_str(&six)
        .map(Schedule)
        .map_err(|e| ReplicationError::Invalid(format!("schedule {text:?}: {e}")))
}

impl Schedule {
    /// The first time after `after_ms` (ms since the epoch) that the schedule fires.
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        let after: DateTime<Utc> = Utc.timestamp_millis_opt(after_ms as i64).single()?;
        self.0
            .after(&after)
            .next()
            .map(|t| t.timestamp_millis() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_and_six_field_schedules_fire_when_they_say() {
        let every_minute = parse("* * * * *").unwrap();
        let t0 = 1_700_000_000_000; // 2023-11-14T22:13:20Z
        assert_eq!(every_minute.next_after(t0), Some(1_700_000_040_000));
        let every_ten_seconds = parse("*/10 * * * * *").unwrap();
        assert_eq!(every_ten_seconds.next_after(t0), Some(1_700_000_010_000));
        assert!(parse("* * *").is_err());
        assert!(parse("99 * * * *").is_err());
    }
}
