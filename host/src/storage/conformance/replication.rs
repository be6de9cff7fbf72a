//! Conformance cases of replication's settings tables.

use crate::storage::clock::Clock;
use crate::storage::store::{Durability, Store, StoreError};
use crate::storage::tables::replication::{
    DatacenterSpec, DegradedLink, Delivery, EndpointKind, EndpointRecord, Filters, InstanceSpec,
    LinkSpec, MetadataVersion, Mode, PolicyRecord, TopologySpec,
};

fn endpoint(name: &str, n: u64) -> EndpointRecord {
    EndpointRecord {
        name: name.into(),
        kind: EndpointKind::Berth,
        url: format!("https://dc{n}.example:5000"),
        username: Some("robot$sync".into()),
        sealed_password: Some((0..=255u8).chain([0, 0]).collect()),
        insecure: false,
        ca_cert: Some("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into()),
        instance: Some(format!("dc{n}")),
        description: "the \"other\" datacenter ü".into(),
        created_by: "admin".into(),
        created_at: 1_764_000_000_001 + n,
        updated_at: 1_764_000_000_002 + n,
    }
}

fn policy(name: &str) -> PolicyRecord {
    PolicyRecord {
        name: name.into(),
        description: "to the edge".into(),
        enabled: true,
        mode: Mode::Push,
        endpoints: vec!["dc2".into(), "dc3".into()],
        filters: Filters {
            project: Some("team".into()),
            repository: Some("team/**".into()),
            tag: Some("v[0-9]*".into()),
        },
        destination_namespace: Some("mirror".into()),
        schedule: Some("0 */5 * * * *".into()),
        on_change: true,
        replicate_deletions: true,
        override_existing: false,
        concurrency: 8,
        bandwidth_limit_mbps: Some(100),
        metadata: false,
        delivery: Delivery::Sync,
        degrade_after_secs: 45,
        strategy: "tree".into(),
        topology: Some(TopologySpec {
            datacenters: vec![
                DatacenterSpec {
                    id: "root".into(),
                    parent: None,
                },
                DatacenterSpec {
                    id: "edge".into(),
                    parent: Some("root".into()),
                },
            ],
            instances: vec![
                InstanceSpec {
                    id: "here".into(),
                    datacenter: "root".into(),
                    endpoint: None,
                },
                InstanceSpec {
                    id: "there".into(),
                    datacenter: "edge".into(),
                    endpoint: Some("dc2".into()),
                },
            ],
            links: vec![LinkSpec {
                source: "here".into(),
                target: "there".into(),
                bandwidth_mbps: Some(1000),
                max_parallel: Some(2),
            }],
        }),
        created_by: "admin".into(),
        created_at: 1_764_000_000_010,
        updated_at: 1_764_000_000_020,
    }
}

pub(super) fn endpoints_round_trip_every_field(store: &Store) {
    let full = endpoint("dc2", 2);
    let bare = EndpointRecord {
        name: "open".into(),
        kind: EndpointKind::Distribution,
        url: "http://127.0.0.1:5001".into(),
        username: None,
        sealed_password: None,
        insecure: true,
        ca_cert: None,
        instance: None,
        description: String::new(),
        ..endpoint("open", 3)
    };
    store
        .write_blocking(Durability::Immediate, |tx| {
            tx.replication().put_endpoint(&full)?;
            tx.replication().put_endpoint(&bare)
        })
        .unwrap();
    assert_eq!(
        store
            .read_blocking(|tx| tx.replication().endpoint("dc2"))
            .unwrap(),
        Some(full.clone())
    );
    assert_eq!(
        store
            .read_blocking(|tx| tx.replication().endpoints())
            .unwrap(),
        vec![full.clone(), bare]
    );
    let mut changed = full.clone();
    changed.kind = EndpointKind::Oci;
    changed.sealed_password = None;
    changed.updated_at += 1;
    store
        .write_blocking(Durability::Immediate, |tx| {
            tx.replication().put_endpoint(&changed)
        })
        .unwrap();
    assert_eq!(
        store
            .read_blocking(|tx| tx.replication().endpoint("dc2"))
            .unwrap(),
        Some(changed)
    );
    let removed = store
        .write_blocking(Durability::Immediate, |tx| {
            Ok::<_, StoreError>((
                tx.replication().remove_endpoint("dc2")?,
                tx.replication().remove_endpoint("dc2")?,
            ))
        })
        .unwrap();
    assert_eq!(removed, (true, false));
}

pub(super) fn policies_round_trip_every_field(store: &Store) {
    let full = policy("edge");
    let minimal = PolicyRecord {
        mode: Mode::Pull,
        endpoints: vec!["dc2".into()],
        filters: Filters::default(),
        destination_namespace: None,
        schedule: None,
        bandwidth_limit_mbps: None,
        delivery: Delivery::Async,
        topology: None,
        ..policy("Backup")
    };
    store
        .write_blocking(Durability::Immediate, |tx| {
            tx.replication().put_policy(&full)?;
            tx.replication().put_policy(&minimal)
        })
        .unwrap();
    assert_eq!(
        store
            .read_blocking(|tx| tx.replication().policy("edge"))
            .unwrap(),
        Some(full.clone())
    );
    // Byte order: `B` before `e`.
    assert_eq!(
        store
            .read_blocking(|tx| tx.replication().policies())
            .unwrap(),
        vec![minimal.clone(), full.clone()]
    );
    let removed = store
        .write_blocking(Durability::Immediate, |tx| {
            Ok::<_, StoreError>((
                tx.replication().remove_policy("Backup")?,
                tx.replication().remove_policy("Backup")?,
            ))
        })
        .unwrap();
    assert_eq!(removed, (true, false));
    assert_eq!(
        store
            .read_blocking(|tx| tx.replication().policy("Backup"))
            .unwrap(),
        None
    );
}

pub(super) fn metadata_versions_keep_their_clock_and_hash(store: &Store) {
    let version = |ms: u64, node: &str, hash: &str| MetadataVersion {
        clock: Clock {
            ms,
            counter: 7,
            node: node.into(),
        },
        hash: hash.into(),
    };
    store
        .write_blocking(Durability::Immediate, |tx| {
            tx.replication()
                .put_metadata_version("user", "alice", &version(5, "dc1", "abc"))?;
            tx.replication().put_metadata_version(
                "member",
                "team/alice",
                &version(6, "dc-2", ""),
            )?;
            tx.replication()
                .put_metadata_version("user", "alice", &version(9, "dc2", "def"))
        })
        .unwrap();
    assert_eq!(
        store
            .read_blocking(|tx| tx.replication().metadata_version("user", "alice"))
            .unwrap(),
        Some(version(9, "dc2", "def"))
    );
    assert_eq!(
        store
            .read_blocking(|tx| tx.replication().metadata_version("user", "bob"))
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .read_blocking(|tx| tx.replication().metadata_versions())
            .unwrap(),
        vec![
            ("member".into(), "team/alice".into(), version(6, "dc-2", "")),
            ("user".into(), "alice".into(), version(9, "dc2", "def")),
        ]
    );
}

pub(super) fn degraded_links_round_trip_and_clear_one_at_a_time(store: &Store) {
    let link = |policy: &str, endpoint: &str, since: u64| DegradedLink {
        policy: policy.into(),
        endpoint: endpoint.into(),
        since,
        error: "connection refused: \"dc2\" ü".into(),
        node: "node-1".into(),
    };
    let (a, b, c) = (
        link("sync", "dc2", 1_764_000_000_123),
        link("sync", "dc3", 1_764_000_000_456),
        link("Other", "dc2", 1_764_000_000_789),
    );
    store
        .write_blocking(Durability::Immediate, |tx| {
            for l in [&a, &b, &c] {
                tx.replication().put_degraded_link(l)?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
    assert_eq!(
        store
            .read_blocking(|tx| tx.replication().degraded_link("sync", "dc3"))
            .unwrap(),
        Some(b.clone())
    );
    assert_eq!(
        store
            .read_blocking(|tx| tx.replication().degraded_link("sync", "dc4"))
            .unwrap(),
        None
    );
    // By policy then endpoint, in byte order.
    assert_eq!(
        store
            .read_blocking(|tx| tx.replication().degraded_links())
            .unwrap(),
        vec![c.clone(), a.clone(), b.clone()]
    );
    // Degrading again replaces the record.
    let again = DegradedLink {
        node: "node-2".into(),
        ..link("sync", "dc2", 1_764_000_009_000)
    };
    let removed = store
        .write_blocking(Durability::Immediate, |tx| {
            tx.replication().put_degraded_link(&again)?;
            Ok::<_, StoreError>((
                tx.replication().remove_degraded_link("sync", "dc3")?,
                tx.replication().remove_degraded_link("sync", "dc3")?,
            ))
        })
        .unwrap();
    assert_eq!(removed, (true, false));
    assert_eq!(
        store
            .read_blocking(|tx| tx.replication().degraded_links())
            .unwrap(),
        vec![c, again]
    );
}
