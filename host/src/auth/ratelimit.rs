//! Failed-login limiting, per account and per source address.
//!
//! Only failures count, so a CI job that logs in correctly a thousand times an hour is
//! never slowed down, while guessing stops after a few tries. Written here rather than
//! with a general rate-limiting crate because those meter every request, not failures.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most keys remembered; beyond it the oldest windows are dropped, so a spray of
/// random usernames cannot grow memory without bound.
const MAX_TRACKED: usize = 100_000;

#[derive(Debug)]
struct Window {
    started: Instant,
    failures: u32,
}

/// Counts failures per key within a fixed window.
#[derive(Debug)]
pub struct FailureLimiter {
    limit: u32,
    window: Duration,
    windows: Mutex<HashMap<String, Window>>,
}

impl FailureLimiter {
    /// At most `limit` failures per `window` per key.
    pub fn new(limit: u32, window: Duration) -> FailureLimiter {
        FailureLimiter {
            limit,
            window,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(wait)` if `key` is blocked, with how long until it may try again.
    pub fn blocked(&self, key: &str) -> Option<Duration> {
        let windows = self.windows.lock().expect("limiter lock");
        let w = windows.get(key)?;
        let elapsed = w.started.elapsed();
        (w.failures >= self.limit && elapsed < self.window).then(|| self.window - elapsed)
    }

    /// Records a failure for `key`.
    pub fn fail(&self, key: &str) {
        let mut windows = self.windows.lock().expect("limiter lock");
        if windows.len() >= MAX_TRACKED {
            let window = self.window;
            windows.retain(|_, w| w.started.elapsed() < window);
        }
        let w = windows.entry(key.to_owned()).or_insert(Window {
            started: Instant::now(),
            failures: 0,
        });
        if w.started.elapsed() >= self.window {
            *w = Window {
                started: Instant::now(),
                failures: 0,
            };
        }
        w.failures += 1;
    }

    /// Forgets `key`'s failures (after a successful login).
    pub fn succeed(&self, key: &str) {
        self.windows.lock().expect("limiter lock").remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_and_only_for_that_key() {
        let l = FailureLimiter::new(3, Duration::from_secs(60));
        for _ in 0..2 {
            l.fail("alice");
        }
        assert!(l.blocked("alice").is_none());
        l.fail("alice");
        assert!(l.blocked("alice").is_some());
        assert!(l.blocked("bob").is_none());
        l.succeed("alice");
        assert!(l.blocked("alice").is_none());
    }

    #[test]
    fn the_window_expires() {
        let l = FailureLimiter::new(1, Duration::from_millis(20));
        l.fail("k");
        assert!(l.blocked("k").is_some());
        std::thread::sleep(Duration::from_millis(30));
        assert!(l.blocked("k").is_none());
    }
}
