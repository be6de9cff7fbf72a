//! Where and how berth probes a machine to tell that it answers: a pool host's own SSH
//! address, a provider machine's first address at its cluster's SSH port, an HTTP health
//! check on either, or nothing when the cluster probes nothing (berth has no route to its
//! machines).

use std::time::Duration;

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

/// Where and how a machine is probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A TCP connection to `host:port`.
    Tcp(String),
    /// An HTTP GET of this URL, answered 2xx.
    Http(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Tcp(address) => f.write_str(address),
            Target::Http(url) => f.write_str(url),
        }
    }
}

/// Where to probe `machine` of `cluster`; `pool_host` is its host when the cluster is a
/// physical pool. `None` when there is nothing to probe: the cluster probes nothing, or
/// the machine has no address (yet).
pub fn target(
    machine: &MachineRecord,
    cluster: &ClusterRecord,
    pool_host: Option<&PoolHostRecord>,
) -> Option<Target> {
    let address = if cluster.provider == pool::PROVIDER {
        pool_host?.address.clone()
    } else {
        machine.addresses.first()?.clone()
    };
    match &cluster.probe {
        Probe::None => None,
        // A pool host is reached on its own SSH port.
        Probe::Ssh { .. } if cluster.provider == pool::PROVIDER => {
            pool_host.map(|h| Target::Tcp(pool::ssh_address(h)))
        }
        Probe::Ssh { port } => Some(Target::Tcp(socket_address(&address, *port))),
        Probe::Http { port, path } => Some(Target::Http(format!(
            "http://{}{}{path}",
            socket_address(&address, *port),
            if path.starts_with('/') { "" } else { "/" }
        ))),
    }
}

/// Whether `target` answers within `timeout`.
pub async fn answers(target: &Target, http: &reqwest::Client, timeout: Duration) -> bool {
    match target {
        Target::Tcp(address) => {
            tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address))
                .await
                .is_ok_and(|c| c.is_ok())
        }
        Target::Http(url) => http
            .get(url)
            .timeout(timeout)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success()),
    }
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
            target(&machine, &cluster, None),
            Some(Target::Tcp("[fd00::5]:2222".into()))
        );
        cluster.probe = Probe::Http {
            port: 8080,
            path: "healthz".into(),
        };
        assert_eq!(
            target(&machine, &cluster, None),
            Some(Target::Http("http://[fd00::5]:8080/healthz".into()))
        );
        machine.addresses.clear();
        assert_eq!(target(&machine, &cluster, None), None);
        cluster.probe = Probe::None;
        machine.addresses = vec!["10.0.0.1".into()];
        assert_eq!(target(&machine, &cluster, None), None);
    }
}
