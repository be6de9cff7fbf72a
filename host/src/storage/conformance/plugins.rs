//! Conformance cases of the plugin host's tables.

use std::collections::BTreeMap;

use berth_plugin_runtime::{Kind, Settings};

use crate::storage::store::{Durability, Store, StoreError};
use crate::storage::tables::plugins::{PluginRecord, PluginSource};

pub(super) fn record(n: u64) -> PluginRecord {
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

pub(super) fn plugins_round_trip_every_field(store: &Store) {
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

pub(super) fn plugins_list_in_byte_order(store: &Store) {
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

pub(super) fn plugins_put_replaces_and_remove_says_whether_it_removed(store: &Store) {
    let write = |f: &dyn Fn(&dyn crate::storage::store::WriteTx) -> Result<bool, StoreError>| {
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

pub(super) fn plugin_secrets_round_trip_bytes(store: &Store) {
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
