//! What providers said that berth may reuse for a while: a cluster's description, a
//! machine type's price. An entry holds for its time to live and only for the cluster as
//! it was (its `updated_at`): changing a cluster's endpoint or credentials forgets it.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Answers by key, each for `ttl` and for one version of what it came from.
pub(super) struct TtlCache<K, V> {
    ttl: Duration,
    entries: Mutex<HashMap<K, (Instant, u64, V)>>,
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    pub(super) fn new(ttl: Duration) -> TtlCache<K, V> {
        TtlCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The answer kept for `key` at `version`, if it is younger than the time to live.
    pub(super) fn get(&self, key: &K, version: u64) -> Option<V> {
        self.entries
            .lock()
            .expect("cache lock")
            .get(key)
            .filter(|(at, kept, _)| at.elapsed() < self.ttl && *kept == version)
            .map(|(_, _, value)| value.clone())
    }

    /// Keeps `value` for `key` at `version`, from now.
    pub(super) fn put(&self, key: K, version: u64, value: V) {
        let mut entries = self.entries.lock().expect("cache lock");
        // Old entries go when new ones come, so the map holds what is in use.
        if entries.len() >= 4096 {
            let ttl = self.ttl;
            entries.retain(|_, (at, _, _)| at.elapsed() < ttl);
        }
        entries.insert(key, (Instant::now(), version, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_holds_for_its_time_and_its_version_only() {
        let cache = TtlCache::new(Duration::from_millis(200));
        cache.put("t3.micro", 7, 10_400u64);
        assert_eq!(cache.get(&"t3.micro", 7), Some(10_400));
        // The cluster changed since: the answer is not its.
        assert_eq!(cache.get(&"t3.micro", 8), None);
        assert_eq!(cache.get(&"t3.small", 7), None);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(cache.get(&"t3.micro", 7), None);
        cache.put("t3.micro", 8, 10_500);
        assert_eq!(cache.get(&"t3.micro", 8), Some(10_500));
    }
}
