//! Conformance cases of transactions themselves: atomicity, durability modes, snapshots
//! and concurrent read-modify-writes (on the plugin tables, the first on the interface).

use std::sync::atomic::{AtomicU32, Ordering};

use super::plugins::record;
use crate::storage::store::{Durability, Store, StoreError};

#[derive(Debug)]
enum Refused {
    Store(#[expect(dead_code, reason = "shown by Debug when a case fails")] StoreError),
    ByTheCaller,
}

impl From<StoreError> for Refused {
    fn from(e: StoreError) -> Refused {
        Refused::Store(e)
    }
}

pub(super) fn a_failed_write_leaves_nothing(store: &Store) {
    let outcome: Result<(), Refused> = store.write_blocking(Durability::Immediate, |tx| {
        tx.plugins().put("kept?", &record(1))?;
        tx.plugins().put_secret("kept?", b"x")?;
        Err(Refused::ByTheCaller)
    });
    assert!(matches!(outcome, Err(Refused::ByTheCaller)), "{outcome:?}");
    store
        .read_blocking(|tx| {
            assert_eq!(tx.plugins().get("kept?")?, None);
            assert_eq!(tx.plugins().secret("kept?")?, None);
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

pub(super) fn a_lazy_write_is_visible_to_later_reads(store: &Store) {
    store
        .write_blocking(Durability::Lazy, |tx| tx.plugins().put("lazy", &record(3)))
        .unwrap();
    assert_eq!(
        store.read_blocking(|tx| tx.plugins().get("lazy")).unwrap(),
        Some(record(3))
    );
}

pub(super) fn a_read_sees_one_snapshot_and_a_write_sees_its_own_writes(store: &Store) {
    store
        .write_blocking(Durability::Immediate, |tx| {
            tx.plugins().put("a", &record(1))?;
            assert_eq!(tx.plugins().get("a")?, Some(record(1)));
            assert_eq!(tx.plugins().list()?.len(), 1);
            tx.plugins().remove("a")?;
            assert_eq!(tx.plugins().get("a")?, None);
            tx.plugins().put("a", &record(2))
        })
        .unwrap();
    // A write committed while a read is open is not seen by that read.
    let writer = store.clone();
    store
        .read_blocking(|tx| {
            let before = tx.plugins().get("a")?;
            std::thread::scope(|s| {
                s.spawn(|| {
                    writer
                        .write_blocking(Durability::Immediate, |tx| {
                            tx.plugins().put("a", &record(9))
                        })
                        .unwrap()
                });
            });
            assert_eq!(tx.plugins().get("a")?, before);
            Ok::<_, StoreError>(())
        })
        .unwrap();
    assert_eq!(
        store.read_blocking(|tx| tx.plugins().get("a")).unwrap(),
        Some(record(9))
    );
}

/// Eight threads each append their mark to one record, reading it first, twenty times: on
/// redb the writes queue; on PostgreSQL they conflict and run again. Either way no append
/// is lost, and a closure runs at least once per write.
pub(super) fn concurrent_read_modify_writes_lose_no_update(store: &Store) {
    store
        .write_blocking(Durability::Immediate, |tx| {
            let mut r = record(0);
            r.description.clear();
            tx.plugins().put("counter", &r)
        })
        .unwrap();
    let attempts = AtomicU32::new(0);
    std::thread::scope(|s| {
        for thread in 0..8u8 {
            let (store, attempts) = (store.clone(), &attempts);
            s.spawn(move || {
                for _ in 0..20 {
                    store
                        .write_blocking(Durability::Immediate, |tx| {
                            attempts.fetch_add(1, Ordering::Relaxed);
                            let mut r = tx.plugins().get("counter")?.expect("counter");
                            r.description.push(char::from(b'a' + thread));
                            tx.plugins().put("counter", &r)
                        })
                        .unwrap();
                }
            });
        }
    });
    let r = store
        .read_blocking(|tx| tx.plugins().get("counter"))
        .unwrap()
        .unwrap();
    assert_eq!(r.description.len(), 160, "{}", r.description);
    for thread in 0..8u8 {
        let mark = char::from(b'a' + thread);
        assert_eq!(r.description.chars().filter(|c| *c == mark).count(), 20);
    }
    assert!(attempts.load(Ordering::Relaxed) >= 160);
}
