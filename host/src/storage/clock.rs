//! Hybrid logical clocks for tags.
//!
//! When two primaries move the same tag at about the same time, both sides must end with
//! the same digest, whatever order the replicated moves arrive in. Each move carries a
//! clock: the wall time in milliseconds, a counter that orders moves within the same
//! millisecond (and keeps the clock moving forward when the wall clock lags behind a
//! clock seen from the peer), and the instance's name to break exact ties. The later
//! clock wins everywhere; the loser is kept in the tag's history.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One clock reading: `<ms>.<counter>.<instance>` in text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Clock {
    /// Wall time, ms since the epoch (or later, when a peer's clock ran ahead).
    pub ms: u64,
    /// Orders readings within one millisecond.
    pub counter: u32,
    /// The instance that took the reading, to break exact ties the same way everywhere.
    pub node: String,
}

impl Ord for Clock {
    fn cmp(&self, other: &Clock) -> Ordering {
        (self.ms, self.counter, &self.node).cmp(&(other.ms, other.counter, &other.node))
    }
}

impl PartialOrd for Clock {
    fn partial_cmp(&self, other: &Clock) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.ms, self.counter, self.node)
    }
}

/// Why a clock's text did not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid clock {0:?}: expected <ms>.<counter>.<instance>")]
pub struct ClockError(String);

impl FromStr for Clock {
    type Err = ClockError;

    fn from_str(s: &str) -> Result<Clock, ClockError> {
        let bad = || ClockError(s.chars().take(100).collect());
        let mut parts = s.splitn(3, '.');
        let ms = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let counter = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let node = parts
            .next()
            .filter(|n| !n.is_empty() && n.len() <= 64)
            .ok_or_else(bad)?;
        Ok(Clock {
            ms,
            counter,
            node: node.to_string(),
        })
    }
}

impl Serialize for Clock {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Clock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Clock, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The clock of one instance.
#[derive(Debug)]
pub struct Hlc {
    node: String,
    last: Mutex<(u64, u32)>,
}

impl Hlc {
    /// A clock for the instance named `node`.
    pub fn new(node: &str) -> Hlc {
        Hlc {
            node: node.to_string(),
            last: Mutex::new((0, 0)),
        }
    }

    /// The instance this clock stamps its readings with.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// A reading later than every reading taken or observed before.
    pub fn now(&self) -> Clock {
        self.tick(super::store::now_millis())
    }

    fn tick(&self, wall: u64) -> Clock {
        let mut last = self.last.lock().expect("clock lock");
        *last = if wall > last.0 {
            (wall, 0)
        } else {
            (last.0, last.1 + 1)
        };
        Clock {
            ms: last.0,
            counter: last.1,
            node: self.node.clone(),
        }
    }

    /// Takes a peer's reading into account, so that the next local reading is later.
    pub fn observe(&self, seen: &Clock) {
        let mut last = self.last.lock().expect("clock lock");
        if (seen.ms, seen.counter) > *last {
            *last = (seen.ms, seen.counter);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_increase_within_a_millisecond_and_past_an_observed_peer() {
        let hlc = Hlc::new("a");
        let r1 = hlc.tick(1000);
        let r2 = hlc.tick(1000);
        let r3 = hlc.tick(999); // the wall clock stepped back
        assert!(r1 < r2 && r2 < r3, "{r1} {r2} {r3}");
        hlc.observe(&"5000.7.b".parse().unwrap());
        let r4 = hlc.tick(1001);
        assert_eq!(r4.to_string(), "5000.8.a");
    }

    #[test]
    fn ties_break_by_instance_and_text_round_trips() {
        let a: Clock = "10.0.a".parse().unwrap();
        let b: Clock = "10.0.b".parse().unwrap();
        assert!(a < b);
        assert!("9.99.z".parse::<Clock>().unwrap() < a);
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"10.0.a\"");
        for bad in ["", "10", "10.x.a", "10.0.", "a.0.b"] {
            assert!(bad.parse::<Clock>().is_err(), "{bad}");
        }
    }
}
