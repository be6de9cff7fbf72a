//! Physical pools (`static-pool` clusters): an inventory of hosts kept in berth's own
//! tables — no remote API holds it — imported from a file or the API. A create allocates
//! the smallest free host that fits to the machine; a retire releases it, marked to be set
//! up again before its next use.
//!
//! Allocation runs here, in the host, not in a plugin handed the inventory: the choice
//! and the record of it must be one transaction with the machine's (two creates may not
//! take one host, and a crash may not leave a host taken by nothing), and a plugin cannot
//! take part in berth's transactions. What is provider-specific about a physical host
//! (power control over Redfish) stays a plugin's; IPMI, which runs over UDP where
//! plugins cannot reach, is berth's own (`ipmi.rs`).

use serde::{Deserialize, Serialize};

use super::lifecycle::{self, LifecycleError};
use crate::storage::store::{StoreError, WriteTx};
use crate::storage::tables::scheduling::{MachineState, PoolHostRecord, PowerControl};

/// The provider name of physical pools.
pub const PROVIDER: &str = crate::storage::tables::scheduling::POOL_PROVIDER;

/// One host as an inventory file or the API describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    /// Its name in the pool.
    pub name: String,
    /// Where berth reaches it (a name or an address).
    pub address: String,
    /// Its SSH port.
    #[serde(default = "ssh_port")]
    pub ssh_port: u16,
    /// vCPUs.
    pub cpus: u32,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Disk sizes, GiB.
    #[serde(default)]
    pub disks_gib: Vec<u32>,
    /// Labels placement can select on.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Its rack.
    #[serde(default)]
    pub rack: Option<String>,
    /// Its zone.
    #[serde(default)]
    pub zone: Option<String>,
    /// Its power control (a plugin reaching its BMC), if any.
    #[serde(default)]
    pub power: Option<PowerControl>,
}

fn ssh_port() -> u16 {
    22
}

/// Why a pool refused.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The cluster is not a physical pool, or does not exist.
    #[error("{0}")]
    NotAPool(String),
    /// A host description is unusable.
    #[error("{0}")]
    Invalid(String),
    /// No free host fits.
    #[error("no free host in pool {pool} has {cpus} vCPUs and {memory_mib} MiB of memory")]
    NoCapacity {
        /// The pool.
        pool: String,
        /// vCPUs asked.
        cpus: u32,
        /// Memory asked, MiB.
        memory_mib: u64,
    },
    /// The machine is not one a pool can allocate for.
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
}

impl From<StoreError> for PoolError {
    fn from(e: StoreError) -> PoolError {
        PoolError::Lifecycle(LifecycleError::Store(e))
    }
}

fn pool_of(tx: &dyn WriteTx, cluster: &str) -> Result<(), PoolError> {
    match tx.scheduling().cluster(cluster)? {
        Some(c) if c.provider == PROVIDER => Ok(()),
        Some(c) => Err(PoolError::NotAPool(format!(
            "cluster {cluster} is served by {}, not a physical pool",
            c.provider
        ))),
        None => Err(PoolError::NotAPool(format!("no cluster {cluster}"))),
    }
}

/// Adds or updates hosts of pool `cluster`. A host allocated to a machine keeps its
/// allocation; its description changes. Returns how many hosts were new.
pub fn import(tx: &dyn WriteTx, cluster: &str, hosts: &[HostSpec]) -> Result<usize, PoolError> {
    pool_of(tx, cluster)?;
    let mut new = 0;
    for host in hosts {
        if host.name.is_empty()
            || host.name.len() > 253
            || host.name.chars().any(|c| c.is_control() || c == '/')
        {
            return Err(PoolError::Invalid(format!(
                "host name {:?}: 1 to 253 characters, no '/' or control characters",
                host.name
            )));
        }
        if host.address.is_empty() || host.cpus == 0 || host.memory_mib == 0 {
            return Err(PoolError::Invalid(format!(
                "host {}: an address, at least one vCPU and some memory are required",
                host.name
            )));
        }
        if let Some(power) = host
            .power
            .as_ref()
            .filter(|p| p.plugin == super::ipmi::IPMI)
        {
            super::ipmi::address(&power.endpoint).map_err(|why| {
                PoolError::Invalid(format!("host {}: power endpoint: {why}", host.name))
            })?;
        } else if let Some(power) = &host.power {
            berth_plugin_runtime::Endpoint::parse(&power.endpoint).map_err(|why| {
                PoolError::Invalid(format!("host {}: power endpoint: {why}", host.name))
            })?;
            if power.system.is_empty() {
                return Err(PoolError::Invalid(format!(
                    "host {}: power control needs the system's id at the BMC",
                    host.name
                )));
            }
        }
        let existing = tx.scheduling().pool_host(cluster, &host.name)?;
        if existing.is_none() {
            new += 1;
        }
        tx.scheduling().put_pool_host(&PoolHostRecord {
            cluster: cluster.to_owned(),
            name: host.name.clone(),
            address: host.address.clone(),
            ssh_port: host.ssh_port,
            cpus: host.cpus,
            memory_mib: host.memory_mib,
            disks_gib: host.disks_gib.clone(),
            labels: host.labels.clone(),
            rack: host.rack.clone(),
            zone: host.zone.clone(),
            power: host.power.clone(),
            machine: existing.as_ref().and_then(|h| h.machine.clone()),
            needs_init: existing.is_some_and(|h| h.needs_init),
        })?;
    }
    Ok(new)
}

/// Allocates a host of its pool to machine `id` (which is `requested`): the smallest free
/// host with at least the vCPUs and memory asked (by vCPUs, then memory, then name), whose
/// labels include the machine's. The machine moves to `provisioning` with the host as its
/// provider id and address. With no host free, the machine fails with the reason, which
/// gives its quota back.
pub fn allocate(
    tx: &dyn WriteTx,
    id: &str,
    actor: &str,
    now: u64,
) -> Result<PoolHostRecord, PoolError> {
    let machine = tx
        .scheduling()
        .machine(id)?
        .ok_or_else(|| LifecycleError::NotFound(id.to_owned()))?;
    pool_of(tx, &machine.cluster)?;
    let spec = &machine.spec;
    let chosen = tx
        .scheduling()
        .pool_hosts(&machine.cluster)?
        .into_iter()
        .filter(|h| h.machine.is_none() && h.cpus >= spec.cpus && h.memory_mib >= spec.memory_mib)
        // A zone asked for (by placement's spread) is a constraint.
        .filter(|h| spec.zone.is_none() || h.zone == spec.zone)
        .filter(|h| {
            machine
                .labels
                .iter()
                .all(|(k, v)| h.labels.get(k) == Some(v))
        })
        .min_by(|a, b| (a.cpus, a.memory_mib, &a.name).cmp(&(b.cpus, b.memory_mib, &b.name)));
    let Some(host) = chosen else {
        let error = PoolError::NoCapacity {
            pool: machine.cluster.clone(),
            cpus: spec.cpus,
            memory_mib: spec.memory_mib,
        };
        lifecycle::transition(
            tx,
            id,
            MachineState::Failed,
            actor,
            Some(&error.to_string()),
            now,
        )?;
        return Err(error);
    };
    give(tx, id, host, actor, now)
}

/// Gives `host` to machine `id` (which is `requested`): the machine moves to
/// `provisioning` with the host as its provider id and address.
fn give(
    tx: &dyn WriteTx,
    id: &str,
    mut host: PoolHostRecord,
    actor: &str,
    now: u64,
) -> Result<PoolHostRecord, PoolError> {
    let mut moved = lifecycle::transition(
        tx,
        id,
        MachineState::Provisioning,
        actor,
        Some(&format!("allocated host {}", host.name)),
        now,
    )?;
    host.machine = Some(id.to_owned());
    tx.scheduling().put_pool_host(&host)?;
    moved.provider_id = Some(host.name.clone());
    moved.addresses = vec![host.address.clone()];
    if moved.spec.zone.is_none() {
        moved.spec.zone = host.zone.clone();
    }
    tx.scheduling().put_machine(&moved)?;
    Ok(host)
}

/// A free host of pool `cluster` by name, for registering a machine that already runs
/// there: its spec is the host's.
pub fn free_host(tx: &dyn WriteTx, cluster: &str, name: &str) -> Result<PoolHostRecord, PoolError> {
    pool_of(tx, cluster)?;
    match tx.scheduling().pool_host(cluster, name)? {
        Some(host) if host.machine.is_none() => Ok(host),
        Some(host) => Err(PoolError::Invalid(format!(
            "host {name} of pool {cluster} is machine {} already",
            host.machine.unwrap_or_default()
        ))),
        None => Err(PoolError::Invalid(format!(
            "pool {cluster} has no host {name}"
        ))),
    }
}

/// Gives host `name` to machine `id`, which was requested for it (`free_host`).
pub fn allocate_named(
    tx: &dyn WriteTx,
    id: &str,
    name: &str,
    actor: &str,
    now: u64,
) -> Result<PoolHostRecord, PoolError> {
    let machine = tx
        .scheduling()
        .machine(id)?
        .ok_or_else(|| LifecycleError::NotFound(id.to_owned()))?;
    let host = free_host(tx, &machine.cluster, name)?;
    give(tx, id, host, actor, now)
}

/// Where `host` answers SSH, as a socket address (an IPv6 address in brackets).
pub fn ssh_address(host: &PoolHostRecord) -> String {
    super::probe::socket_address(&host.address, host.ssh_port)
}

/// Releases the host machine `id` holds, if any: free again, to be set up anew.
pub fn release(tx: &dyn WriteTx, id: &str) -> Result<Option<PoolHostRecord>, PoolError> {
    let Some(machine) = tx.scheduling().machine(id)? else {
        return Ok(None);
    };
    let Some(name) = &machine.provider_id else {
        return Ok(None);
    };
    let Some(mut host) = tx.scheduling().pool_host(&machine.cluster, name)? else {
        return Ok(None);
    };
    if host.machine.as_deref() != Some(id) {
        return Ok(None);
    }
    host.machine = None;
    host.needs_init = true;
    tx.scheduling().put_pool_host(&host)?;
    Ok(Some(host))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduling::requests::{self, MachineRequest};
    use crate::storage::store::{Durability, Store};
    use crate::storage::tables::scheduling::MachineSpec;

    fn host(name: &str, cpus: u32, memory_gib: u64, gpu: bool) -> HostSpec {
        HostSpec {
            name: name.into(),
            address: format!("{name}.dc1.example"),
            ssh_port: 22,
            cpus,
            memory_mib: memory_gib * 1024,
            disks_gib: vec![960],
            labels: if gpu {
                [("gpu".to_string(), "a100".to_string())].into()
            } else {
                Default::default()
            },
            rack: Some("r1".into()),
            zone: Some("dc1".into()),
            power: None,
        }
    }

    fn setup(store: &Store) {
        store
            .write_blocking(Durability::Immediate, |tx| -> Result<(), PoolError> {
                tx.scheduling()
                    .put_cluster(&crate::scheduling::testing::cluster(
                        "rack",
                        PROVIDER,
                        &["team"],
                    ))?;
                let new = import(
                    tx,
                    "rack",
                    &[
                        host("big", 64, 512, false),
                        host("small-b", 8, 32, false),
                        host("small-a", 8, 32, false),
                        host("gpu", 32, 256, true),
                    ],
                )?;
                assert_eq!(new, 4);
                Ok(())
            })
            .unwrap();
    }

    fn create(store: &Store, cpus: u32, gpu: bool) -> Result<(String, PoolHostRecord), PoolError> {
        store.write_blocking(Durability::Immediate, |tx| {
            let (machine, _) = requests::request(
                tx,
                &MachineRequest {
                    project: "team".into(),
                    cluster: "rack".into(),
                    spec: MachineSpec {
                        cpus,
                        memory_mib: 4096,
                        ..MachineSpec::default()
                    },
                    labels: if gpu {
                        [("gpu".to_string(), "a100".to_string())].into()
                    } else {
                        Default::default()
                    },
                    client_token: None,
                    price: None,
                    host: None,
                },
                "alice",
                1_000,
            )
            .map_err(|e| PoolError::Invalid(e.to_string()))?;
            Ok((
                machine.id.clone(),
                allocate(tx, &machine.id, "berth", 1_001)?,
            ))
        })
    }

    /// The smallest host that fits, by name on a tie; labels select; a host is never
    /// given twice; with none free the machine fails and says why; a released host is
    /// free again and marked to be set up anew.
    fn hosts_are_allocated_smallest_first_once_each(store: &Store) {
        setup(store);
        let (first, allocated) = create(store, 4, false).unwrap();
        assert_eq!(allocated.name, "small-a");
        assert_eq!(create(store, 4, false).unwrap().1.name, "small-b");
        assert_eq!(create(store, 4, true).unwrap().1.name, "gpu");
        assert_eq!(create(store, 16, false).unwrap().1.name, "big");
        let refused = store.write_blocking(Durability::Immediate, |tx| {
            let (machine, _) = requests::request(
                tx,
                &MachineRequest {
                    project: "team".into(),
                    cluster: "rack".into(),
                    spec: MachineSpec {
                        cpus: 1,
                        memory_mib: 1,
                        ..MachineSpec::default()
                    },
                    labels: Default::default(),
                    client_token: Some("last".into()),
                    price: None,
                    host: None,
                },
                "alice",
                2_000,
            )
            .map_err(|e| PoolError::Invalid(e.to_string()))?;
            // The failure is recorded in this transaction: commit it, and report it.
            Ok::<_, PoolError>((
                machine.id.clone(),
                allocate(tx, &machine.id, "berth", 2_001).err(),
            ))
        });
        let (failed_id, error) = refused.unwrap();
        assert!(
            matches!(error, Some(PoolError::NoCapacity { cpus: 1, .. })),
            "{error:?}"
        );
        let failed = store
            .read_blocking(|tx| tx.scheduling().machine(&failed_id))
            .unwrap()
            .unwrap();
        assert_eq!(failed.state, MachineState::Failed);
        assert!(failed.reason.unwrap().contains("no free host in pool rack"));
        let machine = store
            .read_blocking(|tx| tx.scheduling().machine(&first))
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                machine.state,
                machine.provider_id.as_deref(),
                machine.addresses.as_slice()
            ),
            (
                MachineState::Provisioning,
                Some("small-a"),
                ["small-a.dc1.example".to_string()].as_slice()
            )
        );
        let released = store
            .write_blocking(Durability::Immediate, |tx| release(tx, &first))
            .unwrap()
            .unwrap();
        assert!(released.machine.is_none() && released.needs_init);
        // Importing the inventory again keeps allocations and the re-initialisation mark.
        store
            .write_blocking(Durability::Immediate, |tx| {
                import(
                    tx,
                    "rack",
                    &[host("small-a", 8, 32, false), host("big", 64, 1024, false)],
                )
            })
            .unwrap();
        let hosts = store
            .read_blocking(|tx| tx.scheduling().pool_hosts("rack"))
            .unwrap();
        let big = hosts.iter().find(|h| h.name == "big").unwrap();
        assert!(big.machine.is_some() && big.memory_mib == 1024 * 1024);
        assert!(
            hosts
                .iter()
                .find(|h| h.name == "small-a")
                .unwrap()
                .needs_init
        );
        assert_eq!(create(store, 2, false).unwrap().1.name, "small-a");
    }

    /// Creates racing for the last hosts: each host goes to one machine.
    fn racing_creates_never_share_a_host(store: &Store) {
        setup(store);
        let outcomes: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let store = store.clone();
                    s.spawn(move || create(&store, 1, false).map(|(_, h)| h.name))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut given: Vec<String> = outcomes
            .iter()
            .filter_map(|o| o.as_ref().ok().cloned())
            .collect();
        given.sort();
        // A machine that asks for no label may have a labelled host.
        assert_eq!(given, ["big", "gpu", "small-a", "small-b"], "{outcomes:?}");
        assert_eq!(
            outcomes
                .iter()
                .filter(|o| matches!(o, Err(PoolError::NoCapacity { .. })))
                .count(),
            4,
            "{outcomes:?}"
        );
    }

    #[test]
    fn on_redb() {
        for case in [
            hosts_are_allocated_smallest_first_once_each,
            racing_creates_never_share_a_host,
        ] {
            let (store, _dir) = crate::storage::testing::redb_store();
            case(&store);
        }
    }

    #[test]
    fn on_postgres() {
        for case in [
            hosts_are_allocated_smallest_first_once_each,
            racing_creates_never_share_a_host,
        ] {
            case(&crate::storage::testing::postgres_store());
        }
    }

    #[test]
    fn a_cluster_of_another_provider_is_not_a_pool() {
        let (store, _dir) = crate::storage::testing::redb_store();
        let err = store
            .write_blocking(Durability::Immediate, |tx| {
                import(tx, "nope", &[host("h", 1, 1, false)])
            })
            .unwrap_err();
        assert!(matches!(err, PoolError::NotAPool(_)), "{err}");
    }
}
