//! Failed-login limiting, per account and per source address, counted in the metadata
//! store so that every node of one berth sees the same count: guessing through three
//! nodes stops after the same few tries as through one.
//!
//! Only failures count, so a CI job that logs in correctly a thousand times an hour is
//! never slowed down, while guessing stops after a few tries. Written here rather than
//! with a general rate-limiting crate because those meter every request, not failures.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::storage::store::{Durability, Store, StoreResult, now_millis};
use crate::storage::tables::auth::FailureWindow;

/// Windows past their end are swept after this many recorded failures, so a spray of
/// random usernames cannot grow the table without bound.
const SWEEP_EVERY: u64 = 1024;

/// Counts failures per key within a fixed window.
#[derive(Debug)]
pub struct FailureLimiter {
    store: Store,
    limit: u32,
    window: Duration,
    recorded: AtomicU64,
}

impl FailureLimiter {
    /// At most `limit` failures per `window` per key.
    pub fn new(store: Store, limit: u32, window: Duration) -> FailureLimiter {
        FailureLimiter {
            store,
            limit,
            window,
            recorded: AtomicU64::new(0),
        }
    }

    fn window_ms(&self) -> u64 {
        self.window.as_millis() as u64
    }

    /// `Some(wait)` if `key` is blocked, with how long until it may try again.
    pub fn blocked(&self, key: &str) -> StoreResult<Option<Duration>> {
        let Some(w) = self
            .store
            .read_blocking(|tx| tx.auth().login_failures(key))?
        else {
            return Ok(None);
        };
        let elapsed = now_millis().saturating_sub(w.started);
        Ok((w.failures >= self.limit && elapsed < self.window_ms())
            .then(|| Duration::from_millis(self.window_ms() - elapsed)))
    }

    /// Records a failure for `key`. Not flushed to disk: a crash forgets at most the
    /// failures of its last moments.
    pub fn fail(&self, key: &str) -> StoreResult<()> {
        let window = self.window_ms();
        self.store.write_blocking(Durability::Lazy, |tx| {
            let now = now_millis();
            let w = match tx.auth().login_failures(key)? {
                Some(w) if now.saturating_sub(w.started) < window => FailureWindow {
                    started: w.started,
                    failures: w.failures.saturating_add(1),
                },
                _ => FailureWindow {
                    started: now,
                    failures: 1,
                },
            };
            tx.auth().put_login_failures(key, &w)
        })?;
        if self.recorded.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            let before = now_millis().saturating_sub(window);
            self.store.write_blocking(Durability::Lazy, |tx| {
                tx.auth().remove_login_failures_before(before)
            })?;
        }
        Ok(())
    }

    /// Forgets `key`'s failures (after a successful login); writes only if there were some.
    pub fn succeed(&self, key: &str) -> StoreResult<()> {
        if self
            .store
            .read_blocking(|tx| tx.auth().login_failures(key))?
            .is_some()
        {
            self.store.write_blocking(Durability::Lazy, |tx| {
                tx.auth().remove_login_failures(key).map(|_| ())
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks_after_the_limit_and_only_for_that_key(store: Store) {
        let l = FailureLimiter::new(store, 3, Duration::from_secs(60));
        for _ in 0..2 {
            l.fail("alice").unwrap();
        }
        assert!(l.blocked("alice").unwrap().is_none());
        l.fail("alice").unwrap();
        assert!(l.blocked("alice").unwrap().is_some());
        assert!(l.blocked("bob").unwrap().is_none());
        l.succeed("alice").unwrap();
        assert!(l.blocked("alice").unwrap().is_none());
    }

    #[test]
    fn blocks_after_the_limit_on_redb() {
        let (store, _dir) = crate::storage::testing::redb_store();
        blocks_after_the_limit_and_only_for_that_key(store);
    }

    #[test]
    fn blocks_after_the_limit_on_postgres() {
        blocks_after_the_limit_and_only_for_that_key(crate::storage::testing::postgres_store());
    }

    /// Two nodes over one database count one account's failures together.
    #[test]
    fn nodes_share_the_count() {
        let store = crate::storage::testing::postgres_store();
        let a = FailureLimiter::new(store.clone(), 4, Duration::from_secs(60));
        let b = FailureLimiter::new(store, 4, Duration::from_secs(60));
        a.fail("account:alice").unwrap();
        b.fail("account:alice").unwrap();
        a.fail("account:alice").unwrap();
        assert!(b.blocked("account:alice").unwrap().is_none());
        b.fail("account:alice").unwrap();
        assert!(a.blocked("account:alice").unwrap().is_some());
        assert!(b.blocked("account:alice").unwrap().is_some());
    }

    #[test]
    fn the_window_expires() {
        let (store, _dir) = crate::storage::testing::redb_store();
        let l = FailureLimiter::new(store, 1, Duration::from_millis(20));
        l.fail("k").unwrap();
        assert!(l.blocked("k").unwrap().is_some());
        std::thread::sleep(Duration::from_millis(30));
        assert!(l.blocked("k").unwrap().is_none());
        // An expired window starts over rather than adding to the old count.
        l.fail("k").unwrap();
        assert!(l.blocked("k").unwrap().is_some());
    }

    #[test]
    fn expired_windows_are_swept() {
        let (store, _dir) = crate::storage::testing::redb_store();
        let l = FailureLimiter::new(store.clone(), 1, Duration::from_millis(1));
        for n in 0..SWEEP_EVERY - 1 {
            l.fail(&format!("source:{n}")).unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
        l.fail("last").unwrap();
        let left = store
            .read_blocking(|tx| tx.auth().login_failures("source:0"))
            .unwrap();
        assert_eq!(left, None);
    }
}
