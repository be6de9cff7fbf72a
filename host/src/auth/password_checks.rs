//! How many password checks run at once, by the memory they take. An argon2id check holds
//! its hash's memory (7 MiB with berth's parameters) for as long as it runs, so a burst of
//! first logins could take memory without bound. Checks run side by side while their
//! memory fits the budget (`auth.password_check_memory_mib`); the rest wait their turn. A
//! check of credentials that are being checked already waits for that one instead of
//! hashing again, since its answer will be in the login cache.

use std::collections::HashSet;
use std::sync::{Condvar, Mutex};

/// The memory budget of password checks, and which credentials are being checked.
#[derive(Debug)]
pub struct PasswordChecks {
    budget_kib: u64,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    in_use_kib: u64,
    /// Digests of the credentials being checked now.
    in_flight: HashSet<[u8; 32]>,
}

impl PasswordChecks {
    /// A budget of `budget_kib` for all checks running at once.
    pub fn new(budget_kib: u64) -> PasswordChecks {
        PasswordChecks {
            budget_kib: budget_kib.max(1),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        }
    }

    /// Waits until a check needing `need_kib` fits in the budget, and holds that much until
    /// the permit drops. A check larger than the whole budget (a hash stored with heavier
    /// parameters) waits until nothing else runs, then runs alone.
    pub fn memory(&self, need_kib: u64) -> MemoryPermit<'_> {
        let need = need_kib.min(self.budget_kib);
        let mut state = self.state.lock().expect("password checks lock");
        while state.in_use_kib + need > self.budget_kib {
            state = self.changed.wait(state).expect("password checks lock");
        }
        state.in_use_kib += need;
        MemoryPermit { owner: self, need }
    }

    /// Waits while credentials with digest `key` are being checked, then marks them as
    /// being checked until the claim drops.
    pub fn claim(&self, key: [u8; 32]) -> Claim<'_> {
        let mut state = self.state.lock().expect("password checks lock");
        while state.in_flight.contains(&key) {
            state = self.changed.wait(state).expect("password checks lock");
        }
        state.in_flight.insert(key);
        Claim { owner: self, key }
    }

    /// Memory held by checks running now, in KiB.
    pub fn in_use_kib(&self) -> u64 {
        self.state.lock().expect("password checks lock").in_use_kib
    }
}

/// Memory of the budget held by one running check.
#[derive(Debug)]
pub struct MemoryPermit<'a> {
    owner: &'a PasswordChecks,
    need: u64,
}

impl Drop for MemoryPermit<'_> {
    fn drop(&mut self) {
        let mut state = self.owner.state.lock().expect("password checks lock");
        state.in_use_kib -= self.need;
        drop(state);
        self.owner.changed.notify_all();
    }
}

/// Credentials being checked by one login.
#[derive(Debug)]
pub struct Claim<'a> {
    owner: &'a PasswordChecks,
    key: [u8; 32],
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut state = self.owner.state.lock().expect("password checks lock");
        state.in_flight.remove(&self.key);
        drop(state);
        self.owner.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::*;

    #[test]
    fn checks_run_side_by_side_only_while_their_memory_fits() {
        let checks = Arc::new(PasswordChecks::new(16 * 1024));
        let peak = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (checks, peak) = (checks.clone(), peak.clone());
                std::thread::spawn(move || {
                    let _permit = checks.memory(7 * 1024);
                    peak.fetch_max(checks.in_use_kib(), Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(
            peak.load(Ordering::SeqCst),
            14 * 1024,
            "two at a time, never three"
        );
        assert_eq!(checks.in_use_kib(), 0);
        // A check heavier than the whole budget still runs, alone.
        let permit = checks.memory(64 * 1024);
        assert_eq!(checks.in_use_kib(), 16 * 1024);
        drop(permit);
    }

    #[test]
    fn a_second_check_of_the_same_credentials_waits_for_the_first() {
        let checks = Arc::new(PasswordChecks::new(16 * 1024));
        let first = checks.claim([1; 32]);
        let other = checks.claim([2; 32]); // unrelated credentials do not wait
        let waited = std::thread::spawn({
            let checks = checks.clone();
            move || {
                let started = std::time::Instant::now();
                let _claim = checks.claim([1; 32]);
                started.elapsed()
            }
        });
        std::thread::sleep(Duration::from_millis(50));
        drop(first);
        assert!(waited.join().unwrap() >= Duration::from_millis(40));
        drop(other);
    }
}
