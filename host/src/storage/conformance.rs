//! The storage interface's conformance suite: every case runs against both backends, so
//! a service written against [`super::store`] behaves the same on either.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use berth_plugin_runtime::{Kind, Settings};

use super::store::{Durability, Store, StoreError};
use super::tables::plugins::{PluginRecord, PluginSource};

/// Each case as a test per backend.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod redb {
            $(#[test] fn $case() { let (store, _dir) = crate::storage::testing::redb_store(); super::$case(&store) })*
        }
        mod postgres {
            $(#[test] fn $case() { super::$case(&crate::storage::testing::postgres_store()) })*
        }
    };
}

conformance!(
    plugins_round_trip_every_field,
    plugins_list_in_byte_order,
    plugins_put_replaces_and_remove_says_whether_it_removed,
    plugin_secrets_round_trip_bytes,
    a_failed_write_leaves_nothing,
    a_lazy_write_is_visible_to_later_reads,
    a_read_sees_one_snapshot_and_a_write_sees_its_own_writes,
    concurrent_read_modify_writes_lose_no_update,
);

fn record(n: u64) -> PluginRecord {
    let mut settings = Settings::default();
    settings.limits.fuel = 1_000 + n;
    settings.config = BTreeMap::from([("key".to_string(), format!("value {n} ü \"quoted\""))]);
    PluginRecord {
        kind: Kind::CloudProvider,
        world_version: "0.2.0".into(),
        version: format!("1.{n}.0"),
        description: "a description with ünïcödé and a\nnewline".into(),
        digest: format!("sha256:{n:064x}"),
        source: PluginSource::File {
            filename: Some(format!("plugin-{n}.wasm")),
        },
        settings,
        enabled: n.is_multiple_of(2),
        loaded_by: "admin".into(),
        loaded_at: 1_764_000_000_123 + n,
    }
}

fn plugins_round_trip_every_field(store: &Store) {
    let stored = record(7);
    store
        .write_blocking(Durability::Immediate, |tx| tx.plugins().put("aws", &stored))
        .unwrap();
    let read = store
        .read_blocking(|tx| tx.plugins().get("aws"))
        .unwrap()
        .unwrap();
    assert_eq!(read, stored);
    for source in [
        PluginSource::Builtin,
        PluginSource::Oci {
            reference: "berth.example/p/aws@sha256:00".into(),
        },
        PluginSource::File { filename: None },
    ] {
        let mut r = record(8);
        r.source = source;
        r.kind = Kind::HostInit;
        store
            .write_blocking(Durability::Immediate, |tx| tx.plugins().put("x", &r))
            .unwrap();
        assert_eq!(
            store.read_blocking(|tx| tx.plugins().get("x")).unwrap(),
            Some(r)
        );
    }
    assert_eq!(
        store.read_blocking(|tx| tx.plugins().get("none")).unwrap(),
        None
    );
}

fn plugins_list_in_byte_order(store: &Store) {
    // Byte order, not a locale's: upper case before lower, ASCII before the rest.
    let names = ["b", "B", "a", "é", "a-b", "a_b", "Z"];
    store
        .write_blocking(Durability::Immediate, |tx| {
            for (i, name) in names.iter().enumerate() {
                tx.plugins().put(name, &record(i as u64))?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
    let listed: Vec<String> = store
        .read_blocking(|tx| tx.plugins().list())
        .unwrap()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let mut expected: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(listed, expected);
}

fn plugins_put_replaces_and_remove_says_whether_it_removed(store: &Store) {
    let write = |f: &dyn Fn(&dyn super::store::WriteTx) -> Result<bool, StoreError>| {
        store
            .write_blocking(Durability::Immediate, |tx| f(tx))
            .unwrap()
    };
    write(&|tx| tx.plugins().put("p", &record(1)).map(|()| true));
    write(&|tx| tx.plugins().put("p", &record(2)).map(|()| true));
    assert_eq!(
        store.read_blocking(|tx| tx.plugins().get("p")).unwrap(),
        Some(record(2))
    );
    assert!(write(&|tx| tx.plugins().remove("p")));
    assert!(!write(&|tx| tx.plugins().remove("p")));
    assert!(
        store
            .read_blocking(|tx| tx.plugins().list())
            .unwrap()
            .is_empty()
    );
}

fn plugin_secrets_round_trip_bytes(store: &Store) {
    let sealed: Vec<u8> = (0..=255u8).chain([0, 0, 255]).collect();
    store
        .write_blocking(Durability::Immediate, |tx| {
            tx.plugins().put_secret("aws/key", &sealed)?;
            tx.plugins().put_secret("AWS", b"")
        })
        .unwrap();
    assert_eq!(
        store
            .read_blocking(|tx| tx.plugins().secret("aws/key"))
            .unwrap(),
        Some(sealed.clone())
    );
    assert_eq!(
        store
            .read_blocking(|tx| tx.plugins().secret("AWS"))
            .unwrap(),
        Some(vec![])
    );
    assert_eq!(
        store
            .read_blocking(|tx| tx.plugins().secret_names())
            .unwrap(),
        vec!["AWS".to_string(), "aws/key".to_string()]
    );
    let removed = store
        .write_blocking(Durability::Immediate, |tx| {
            Ok::<_, StoreError>((
                tx.plugins().remove_secret("AWS")?,
                tx.plugins().remove_secret("AWS")?,
            ))
        })
        .unwrap();
    assert_eq!(removed, (true, false));
}

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

fn a_failed_write_leaves_nothing(store: &Store) {
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

fn a_lazy_write_is_visible_to_later_reads(store: &Store) {
    store
        .write_blocking(Durability::Lazy, |tx| tx.plugins().put("lazy", &record(3)))
        .unwrap();
    assert_eq!(
        store.read_blocking(|tx| tx.plugins().get("lazy")).unwrap(),
        Some(record(3))
    );
}

fn a_read_sees_one_snapshot_and_a_write_sees_its_own_writes(store: &Store) {
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
fn concurrent_read_modify_writes_lose_no_update(store: &Store) {
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
