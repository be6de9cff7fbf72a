//! Conformance cases of scheduling's tables.

use std::collections::BTreeMap;

use crate::storage::store::{Durability, Store, StoreError};
use crate::storage::tables::scheduling::{
    ClusterRecord, MachineFilter, MachineRecord, MachineSpec, MachineState, PoolHostRecord,
    PowerControl, Probe, QuotaRecord, TransitionRecord,
};

fn write(
    store: &Store,
    f: impl FnMut(&dyn crate::storage::store::WriteTx) -> Result<(), StoreError>,
) {
    store.write_blocking(Durability::Immediate, f).unwrap();
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn cluster(name: &str) -> ClusterRecord {
    ClusterRecord {
        name: name.into(),
        provider: "aws-ec2".into(),
        regions: vec!["eu-west-1".into(), "us-east-1".into()],
        endpoint: Some("https://ec2.eu-west-1.amazonaws.com".into()),
        settings: serde_json::json!({"vpc": "vpc-1", "nested": {"ü": [1, 2]}}),
        sealed_credentials: Some((0..=255u8).collect()),
        labels: labels(&[("tier", "prod"), ("team", "\"core\"")]),
        projects: vec!["team".into(), "web".into()],
        probe: Probe::Ssh { port: 2222 },
        enabled: true,
        created_by: "admin".into(),
        created_at: 1_764_000_000_001,
        updated_at: 1_764_000_000_002,
    }
}

fn machine(id: &str, cluster: &str, project: &str, state: MachineState) -> MachineRecord {
    MachineRecord {
        id: id.into(),
        cluster: cluster.into(),
        project: project.into(),
        provider_id: Some(format!("i-{id}")),
        region: Some("us-east-1".into()),
        zone: Some("us-east-1a".into()),
        client_token: format!("token-{id}"),
        spec: MachineSpec {
            machine_type: Some("t3.micro".into()),
            cpus: 2,
            memory_mib: 1024,
            image: Some("ami-12345678".into()),
            disk_gib: Some(20),
            region: Some("eu-west-1".into()),
            zone: Some("eu-west-1a".into()),
            network: Some("vpc-1".into()),
            subnet: Some("subnet-1".into()),
            security_groups: vec!["sg-1".into(), "sg-2".into()],
            key_pair: Some("ops".into()),
        },
        addresses: vec!["10.0.0.5".into(), "203.0.113.5".into()],
        labels: labels(&[("role", "build")]),
        state,
        reason: Some("the reason, with \"quotes\" and ü".into()),
        host_key_fingerprint: Some("SHA256:abc".into()),
        billing_started_at: Some(1_764_000_000_500),
        created_by: "alice".into(),
        created_at: 1_764_000_000_100,
        updated_at: 1_764_000_000_200,
    }
}

pub(super) fn clusters_round_trip_every_field_in_byte_order(store: &Store) {
    let full = cluster("aws-eu");
    let bare = ClusterRecord {
        provider: "static-pool".into(),
        regions: Vec::new(),
        endpoint: None,
        settings: serde_json::Value::Null,
        sealed_credentials: None,
        labels: BTreeMap::new(),
        projects: Vec::new(),
        probe: Probe::None,
        enabled: false,
        ..cluster("Rack-1")
    };
    write(store, |tx| {
        tx.scheduling().put_cluster(&full)?;
        tx.scheduling().put_cluster(&bare)
    });
    let read = |name: &'static str| {
        store
            .read_blocking(move |tx| tx.scheduling().cluster(name))
            .unwrap()
    };
    assert_eq!(read("aws-eu"), Some(full.clone()));
    assert_eq!(read("Rack-1"), Some(bare.clone()));
    assert_eq!(read("nope"), None);
    assert_eq!(
        store
            .read_blocking(|tx| tx.scheduling().clusters())
            .unwrap(),
        vec![bare.clone(), full.clone()]
    );
    let mut changed = full.clone();
    changed.enabled = false;
    changed.projects.push("ops".into());
    write(store, |tx| tx.scheduling().put_cluster(&changed));
    assert_eq!(read("aws-eu"), Some(changed));
    let removed = store
        .write_blocking(Durability::Immediate, |tx| {
            Ok::<_, StoreError>((
                tx.scheduling().remove_cluster("Rack-1")?,
                tx.scheduling().remove_cluster("Rack-1")?,
            ))
        })
        .unwrap();
    assert_eq!(removed, (true, false));
}

pub(super) fn machines_round_trip_are_found_by_token_and_filtered(store: &Store) {
    // A store that keeps no machine yet answers every listing, empty.
    for filter in [
        MachineFilter {
            states: vec![MachineState::Draining],
            ..MachineFilter::default()
        },
        MachineFilter {
            project: Some("team".into()),
            ..MachineFilter::default()
        },
        MachineFilter {
            cluster: Some("aws-eu".into()),
            states: vec![MachineState::Online],
            ..MachineFilter::default()
        },
    ] {
        assert_eq!(
            store
                .read_blocking(move |tx| tx.scheduling().machines(&filter))
                .unwrap(),
            vec![]
        );
    }
    let a = machine("m-a", "aws-eu", "team", MachineState::Online);
    let b = machine("m-b", "aws-eu", "web", MachineState::Provisioning);
    let c = MachineRecord {
        provider_id: None,
        region: None,
        zone: None,
        spec: MachineSpec {
            cpus: 64,
            memory_mib: 262_144,
            ..MachineSpec::default()
        },
        addresses: Vec::new(),
        labels: BTreeMap::new(),
        reason: None,
        host_key_fingerprint: None,
        billing_started_at: None,
        ..machine("m-c", "rack-1", "team", MachineState::Retired)
    };
    write(store, |tx| {
        for m in [&c, &a, &b] {
            tx.scheduling().put_machine(m)?;
        }
        Ok(())
    });
    assert_eq!(
        store
            .read_blocking(|tx| tx.scheduling().machine("m-c"))
            .unwrap(),
        Some(c.clone())
    );
    assert_eq!(
        store
            .read_blocking(|tx| tx.scheduling().machine_by_token("team", "token-m-a"))
            .unwrap(),
        Some(a.clone())
    );
    // A token is the project's: the same token elsewhere is another machine, or none.
    assert_eq!(
        store
            .read_blocking(|tx| tx.scheduling().machine_by_token("web", "token-m-a"))
            .unwrap(),
        None
    );
    let list = |filter: MachineFilter| {
        store
            .read_blocking(move |tx| tx.scheduling().machines(&filter))
            .unwrap()
            .into_iter()
            .map(|m| m.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(list(MachineFilter::default()), ["m-a", "m-b", "m-c"]);
    assert_eq!(
        list(MachineFilter {
            cluster: Some("aws-eu".into()),
            ..MachineFilter::default()
        }),
        ["m-a", "m-b"]
    );
    assert_eq!(
        list(MachineFilter {
            project: Some("team".into()),
            ..MachineFilter::default()
        }),
        ["m-a", "m-c"]
    );
    assert_eq!(
        list(MachineFilter {
            project: Some("team".into()),
            states: vec![MachineState::Online, MachineState::Provisioning],
            ..MachineFilter::default()
        }),
        ["m-a"]
    );
    assert_eq!(
        list(MachineFilter {
            cluster: Some("aws-eu".into()),
            project: Some("web".into()),
            states: vec![MachineState::Retired],
        }),
        Vec::<String>::new()
    );
    // A state change replaces the record.
    let mut moved = b.clone();
    moved.state = MachineState::Failed;
    moved.reason = Some("InsufficientInstanceCapacity".into());
    write(store, |tx| tx.scheduling().put_machine(&moved));
    assert_eq!(
        store
            .read_blocking(|tx| tx.scheduling().machine_by_token("web", "token-m-b"))
            .unwrap(),
        Some(moved)
    );
    // ... and every listing by state follows it: found in its new state, not in its old.
    let in_states = |states: Vec<MachineState>| MachineFilter {
        states,
        ..MachineFilter::default()
    };
    assert_eq!(
        list(in_states(vec![MachineState::Provisioning])),
        Vec::<String>::new()
    );
    assert_eq!(
        list(in_states(vec![MachineState::Failed, MachineState::Online])),
        ["m-a", "m-b"]
    );
    assert_eq!(
        list(MachineFilter {
            cluster: Some("aws-eu".into()),
            states: vec![MachineState::Failed],
            ..MachineFilter::default()
        }),
        ["m-b"]
    );
    assert_eq!(
        list(MachineFilter {
            project: Some("web".into()),
            states: vec![MachineState::Provisioning],
            ..MachineFilter::default()
        }),
        Vec::<String>::new()
    );
    // A name that begins another's is not the other's.
    let prefixed = machine("m-d", "aws-eu-2", "team-2", MachineState::Online);
    write(store, |tx| tx.scheduling().put_machine(&prefixed));
    assert_eq!(
        list(MachineFilter {
            project: Some("team".into()),
            ..MachineFilter::default()
        }),
        ["m-a", "m-c"]
    );
    assert_eq!(
        list(MachineFilter {
            cluster: Some("aws-eu".into()),
            states: vec![MachineState::Online],
            ..MachineFilter::default()
        }),
        ["m-a"]
    );
}

pub(super) fn transitions_come_back_in_order_per_machine(store: &Store) {
    let step =
        |machine: &str, seq: u64, from: Option<MachineState>, to: MachineState| TransitionRecord {
            machine: machine.into(),
            seq,
            from,
            to,
            actor: if seq == 1 {
                "alice".into()
            } else {
                "berth".into()
            },
            reason: (seq > 1).then(|| format!("step {seq}")),
            at: 1_764_000_000_000 + seq,
        };
    let history = [
        step("m-a", 1, None, MachineState::Requested),
        step(
            "m-a",
            2,
            Some(MachineState::Requested),
            MachineState::Provisioning,
        ),
        step(
            "m-a",
            10,
            Some(MachineState::Provisioning),
            MachineState::Online,
        ),
    ];
    let other = step("m-b", 1, None, MachineState::Requested);
    write(store, |tx| {
        // Written out of order; read back by seq, and only the machine's own.
        tx.scheduling().add_transition(&history[2])?;
        tx.scheduling().add_transition(&other)?;
        tx.scheduling().add_transition(&history[0])?;
        tx.scheduling().add_transition(&history[1])
    });
    assert_eq!(
        store
            .read_blocking(|tx| tx.scheduling().transitions("m-a"))
            .unwrap(),
        history.to_vec()
    );
    assert_eq!(
        store
            .read_blocking(|tx| tx.scheduling().transitions("m"))
            .unwrap(),
        Vec::new()
    );
}

pub(super) fn quotas_are_set_replaced_and_removed(store: &Store) {
    let some = QuotaRecord {
        machines: Some(7),
        cpus: None,
        memory_mib: Some(65_536),
    };
    let all = QuotaRecord {
        machines: Some(0),
        cpus: Some(128),
        memory_mib: Some(u32::MAX as u64 * 4),
    };
    write(store, |tx| {
        tx.scheduling().put_quota("web", &some)?;
        tx.scheduling().put_quota("team", &QuotaRecord::default())?;
        tx.scheduling().put_quota("team", &all)
    });
    assert_eq!(
        store.read_blocking(|tx| tx.scheduling().quotas()).unwrap(),
        vec![("team".to_string(), all), ("web".to_string(), some)]
    );
    let removed = store
        .write_blocking(Durability::Immediate, |tx| {
            Ok::<_, StoreError>((
                tx.scheduling().remove_quota("web")?,
                tx.scheduling().remove_quota("web")?,
            ))
        })
        .unwrap();
    assert_eq!(removed, (true, false));
    assert_eq!(
        store
            .read_blocking(|tx| tx.scheduling().quota("web"))
            .unwrap(),
        None
    );
}

pub(super) fn pool_hosts_are_kept_per_pool_in_name_order(store: &Store) {
    let host = |cluster: &str, name: &str, machine: Option<&str>| PoolHostRecord {
        cluster: cluster.into(),
        name: name.into(),
        address: format!("10.1.0.{}", name.len()),
        ssh_port: 2222,
        cpus: 32,
        memory_mib: 131_072,
        disks_gib: vec![480, 3840],
        labels: labels(&[("gpu", "a100")]),
        rack: Some("r12".into()),
        zone: Some("dc1".into()),
        power: machine.map(|_| PowerControl {
            plugin: "redfish".into(),
            endpoint: "https://10.0.9.5".into(),
            system: "437XR1138R2".into(),
        }),
        machine: machine.map(str::to_owned),
        needs_init: machine.is_none(),
    };
    let hosts = [
        host("rack", "h10", Some("m-a")),
        host("rack", "H2", None),
        host("rack", "h2", None),
        host("rack-b", "h1", None),
        host("rac", "h1", None),
    ];
    write(store, |tx| {
        for h in &hosts {
            tx.scheduling().put_pool_host(h)?;
        }
        Ok(())
    });
    let names = |cluster: &'static str| {
        store
            .read_blocking(move |tx| tx.scheduling().pool_hosts(cluster))
            .unwrap()
            .into_iter()
            .map(|h| h.name)
            .collect::<Vec<_>>()
    };
    assert_eq!(names("rack"), ["H2", "h10", "h2"]);
    assert_eq!(names("rac"), ["h1"]);
    assert_eq!(names("none"), Vec::<String>::new());
    assert_eq!(
        store
            .read_blocking(|tx| tx.scheduling().pool_host("rack", "h10"))
            .unwrap(),
        Some(hosts[0].clone())
    );
    let mut released = hosts[0].clone();
    released.machine = None;
    released.needs_init = true;
    write(store, |tx| tx.scheduling().put_pool_host(&released));
    assert_eq!(
        store
            .read_blocking(|tx| tx.scheduling().pool_host("rack", "h10"))
            .unwrap(),
        Some(released)
    );
    let removed = store
        .write_blocking(Durability::Immediate, |tx| {
            Ok::<_, StoreError>((
                tx.scheduling().remove_pool_host("rack", "h2")?,
                tx.scheduling().remove_pool_host("rack", "h2")?,
            ))
        })
        .unwrap();
    assert_eq!(removed, (true, false));
    assert_eq!(names("rack"), ["H2", "h10"]);
}
