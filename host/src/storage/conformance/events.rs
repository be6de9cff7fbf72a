//! Conformance cases of the event feed: numbering in commit order with no gaps, cursors,
//! trimming, and a late commit that is never skipped.

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};

use crate::storage::store::{Durability, Store, StoreResult};
use crate::storage::tables::events::{Change, ChangeKind, Event};

fn event(n: u64) -> Event {
    Event::Registry(Change {
        repository: format!("team/app{}", n % 3),
        kind: if n.is_multiple_of(4) {
            ChangeKind::ManifestDeleted {
                digest: format!("sha256:{n:064x}"),
                tags: vec!["v1".into(), "ü".into()],
            }
        } else {
            ChangeKind::Manifest {
                digest: format!("sha256:{n:064x}"),
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                tag: n.is_multiple_of(2).then(|| format!("v{n}")),
            }
        },
        origin: n.is_multiple_of(5).then(|| "dc2".to_string()),
        at: 1_764_000_000_000 + n,
    })
}

fn append(store: &Store, n: u64) {
    store
        .write_blocking(Durability::Immediate, |tx| {
            tx.events().append_event(&event(n))
        })
        .unwrap();
}

/// Numbers what waits for a number, as the feed does: a write only when a read found
/// something to number (so on redb, where nothing ever waits, no writer is needed).
fn sequence(store: &Store) {
    if store
        .read_blocking(|tx| tx.events().unsequenced_events())
        .unwrap()
    {
        store
            .write_blocking(Durability::Immediate, |tx| tx.events().sequence_events())
            .unwrap();
    }
}

fn after(store: &Store, seq: u64) -> Vec<(u64, Event)> {
    store
        .read_blocking(|tx| tx.events().events_after(seq, 1000))
        .unwrap()
}

pub(super) fn events_are_numbered_in_commit_order_and_read_past_a_cursor(store: &Store) {
    for n in 1..=5 {
        append(store, n);
    }
    sequence(store);
    let all = after(store, 0);
    assert_eq!(
        all.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    for (seq, e) in &all {
        assert_eq!(*e, event(*seq), "every field round-trips");
    }
    let page = store
        .read_blocking(|tx| tx.events().events_after(2, 2))
        .unwrap();
    assert_eq!(page.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [3, 4]);
    assert_eq!(
        store
            .read_blocking(|tx| tx.events().last_event_seq())
            .unwrap(),
        5
    );
    assert!(
        !store
            .read_blocking(|tx| tx.events().unsequenced_events())
            .unwrap()
    );
}

pub(super) fn cursors_hold_their_place_and_trimming_never_restarts_numbers(store: &Store) {
    for n in 1..=4 {
        append(store, n);
    }
    sequence(store);
    store
        .write_blocking(Durability::Immediate, |tx| -> StoreResult<()> {
            tx.events().set_event_cursor("replication", 3)?;
            tx.events().set_event_cursor("preheat", 1)?;
            tx.events().set_event_cursor("preheat", 2)?;
            tx.events().set_event_cursor("gone", 0)?;
            assert!(tx.events().remove_event_cursor("gone")?);
            assert!(!tx.events().remove_event_cursor("gone")?);
            Ok(())
        })
        .unwrap();
    store
        .read_blocking(|tx| -> StoreResult<()> {
            assert_eq!(tx.events().event_cursor("replication")?, Some(3));
            assert_eq!(tx.events().event_cursor("nobody")?, None);
            assert_eq!(
                tx.events().event_cursors()?,
                [("preheat".to_string(), 2), ("replication".to_string(), 3)]
            );
            Ok(())
        })
        .unwrap();
    let trimmed = store
        .write_blocking(Durability::Immediate, |tx| {
            tx.events().trim_events_through(2)
        })
        .unwrap();
    assert_eq!(trimmed, 2);
    assert_eq!(
        after(store, 0).iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [3, 4]
    );
    // Trimming everything handled keeps numbering where it was.
    store
        .write_blocking(Durability::Immediate, |tx| {
            tx.events().trim_events_through(4)
        })
        .unwrap();
    append(store, 5);
    sequence(store);
    let rest = after(store, 4);
    assert_eq!(rest.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [5]);
    assert_eq!(rest[0].1, event(5));
}

/// Many writers append at once while others number: every event gets exactly one
/// number, numbers have no gaps, and a reader following along sees each event once.
pub(super) fn concurrent_appends_get_distinct_numbers_without_gaps(store: &Store) {
    const WRITERS: u64 = 6;
    const EACH: u64 = 20;
    let seen = std::sync::Mutex::new(BTreeSet::new());
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            let store = store.clone();
            s.spawn(move || {
                for i in 0..EACH {
                    append(&store, 1 + w * EACH + i);
                }
            });
        }
        let (store, seen) = (store.clone(), &seen);
        s.spawn(move || {
            let mut cursor = 0;
            for _ in 0..40 {
                sequence(&store);
                for (seq, _) in after(&store, cursor) {
                    assert_eq!(seq, cursor + 1, "numbers are read in order without gaps");
                    assert!(seen.lock().unwrap().insert(seq));
                    cursor = seq;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        });
    });
    sequence(store);
    let all = after(store, 0);
    assert_eq!(all.len() as u64, WRITERS * EACH);
    let numbers: Vec<u64> = all.iter().map(|(s, _)| *s).collect();
    assert_eq!(numbers, (1..=WRITERS * EACH).collect::<Vec<_>>());
    let bodies: BTreeSet<String> = all
        .iter()
        .map(|(_, e)| serde_json::to_string(e).unwrap())
        .collect();
    assert_eq!(
        bodies.len() as u64,
        WRITERS * EACH,
        "no event numbered twice"
    );
}

/// An event whose transaction commits after a later one was numbered and read is still
/// read, after it: a reader past the later one does not skip it. (redb has one writer at
/// a time, so there the second transaction waits for the first.)
pub(super) fn an_event_that_commits_late_is_not_skipped(store: &Store) {
    let appended = Arc::new(Barrier::new(2));
    let release = Arc::new(Barrier::new(2));
    let slow = {
        let (store, appended, release) = (store.clone(), appended.clone(), release.clone());
        std::thread::spawn(move || {
            let mut first = true;
            store
                .write_blocking(Durability::Immediate, |tx| {
                    tx.events().append_event(&event(1))?;
                    if std::mem::take(&mut first) {
                        appended.wait();
                        release.wait();
                    }
                    Ok::<_, crate::storage::store::StoreError>(())
                })
                .unwrap();
        })
    };
    appended.wait();
    let fast = {
        let store = store.clone();
        std::thread::spawn(move || append(&store, 2))
    };
    // On PostgreSQL the fast append commits now and is read before the slow one commits;
    // on redb it waits for the slow one (one writer at a time).
    std::thread::sleep(std::time::Duration::from_millis(200));
    sequence(store);
    let early = after(store, 0);
    let cursor = early.last().map_or(0, |(s, _)| *s);
    release.wait();
    slow.join().unwrap();
    fast.join().unwrap();
    sequence(store);
    let late = after(store, cursor);
    let mut read: Vec<Event> = early.into_iter().chain(late).map(|(_, e)| e).collect();
    read.sort_by_key(|e| serde_json::to_string(e).unwrap());
    let mut expected = vec![event(1), event(2)];
    expected.sort_by_key(|e| serde_json::to_string(e).unwrap());
    assert_eq!(
        read, expected,
        "both events read once, whatever the commit order"
    );
}
