//! Where berth probes a machine to tell that it answers: a pool host's own SSH address, a
//! provider machine's first address at its cluster's probe port, or nowhere when the
//! cluster probes nothing (berth has no route to its machines).

use super::pool;
use crate::storage::tables::scheduling::{ClusterRecord, MachineRecord, PoolHostRecord, Probe};

/// `host:port`, with an IPv6 address in brackets.
pub fn socket_address(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Where to probe `machine` of `cluster`; `pool_host` is its host when the cluster is a
/// physical pool. `None` when there is nothing to probe: the cluster probes nothing, or
/// the machine has no address (yet).
pub fn target(
    machine: &MachineRecord,
    cluster: &ClusterRecord,
    pool_host: Option<&PoolHostRecord>,
) -> Option<String> {
    let Probe::Ssh { port } = cluster.probe else {
        return None;
    };
    if cluster.provider == pool::PROVIDER {
        return pool_host.map(pool::ssh_address);
    }
    machine.addresses.first().map(|ip| socket_address(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduling::testing;

    #[test]
    fn a_provider_machine_is_probed_at_its_first_address_and_the_clusters_port() {
        let mut cluster = testing::cluster("aws", "aws-ec2", &[]);
        cluster.probe = Probe::Ssh { port: 2222 };
        let mut machine: MachineRecord = serde_json::from_value(serde_json::json!({
            "id": "m-1", "cluster": "aws", "project": "p", "client_token": "t",
            "spec": {"cpus": 1, "memory_mib": 1}, "addresses": ["fd00::5", "203.0.113.9"],
            "state": "initializing", "created_by": "a", "created_at": 1, "updated_at": 1,
        }))
        .unwrap();
        assert_eq!(
            target(&machine, &cluster, None).as_deref(),
            Some("[fd00::5]:2222")
        );
        machine.addresses.clear();
        assert_eq!(target(&machine, &cluster, None), None);
        cluster.probe = Probe::None;
        machine.addresses = vec!["10.0.0.1".into()];
        assert_eq!(target(&machine, &cluster, None), None);
    }
}
