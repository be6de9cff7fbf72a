//! Tables of the scheduling component (`host/src/scheduling/`): `clusters` (where machines
//! come from: a provider plugin, its regions, settings and sealed credentials, and the
//! projects allowed to use it), `machines` (each machine berth manages, with its spec,
//! addresses and lifecycle state), `machine_transitions` (every state change, with who,
//! why and when), `quotas` (per project) and `pool_hosts` (the inventory of physical
//! pools, which no remote API holds). What the states mean and which transitions are
//! allowed is scheduling's (`scheduling::lifecycle`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::storage::store::StoreResult;

/// The provider name of physical pools: berth's own inventory, no plugin.
pub const POOL_PROVIDER: &str = "static-pool";

/// Where a machine is in its life. The allowed moves between these are
/// `scheduling::lifecycle`'s.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum MachineState {
    /// Recorded, with its client token, before any provider is called.
    Requested,
    /// The provider is creating it (or a pool host was allocated).
    Provisioning,
    /// Running; host initialisation is being applied.
    Initializing,
    /// Takes work.
    Online,
    /// Leaving service: work is moved away for the drain period.
    Draining,
    /// Out of service after a drain, still running.
    Drained,
    /// Out of service.
    Offline,
    /// Asked to stop: its provider (or BMC) is switching it off; it takes no work.
    Stopping,
    /// Switched off at its provider; its disks (and its pool host) stay its own.
    Stopped,
    /// Asked to start again: its provider (or BMC) is switching it on.
    Starting,
    /// Being deleted at the provider (or released to the pool).
    Retiring,
    /// Gone; the record stays for history and cost.
    Retired,
    /// Could not be created or lost; the reason says why.
    Failed,
}

impl MachineState {
    /// Every state, in lifecycle order.
    pub const ALL: [MachineState; 13] = [
        MachineState::Requested,
        MachineState::Provisioning,
        MachineState::Initializing,
        MachineState::Online,
        MachineState::Draining,
        MachineState::Drained,
        MachineState::Offline,
        MachineState::Stopping,
        MachineState::Stopped,
        MachineState::Starting,
        MachineState::Retiring,
        MachineState::Retired,
        MachineState::Failed,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            MachineState::Requested => "requested",
            MachineState::Provisioning => "provisioning",
            MachineState::Initializing => "initializing",
            MachineState::Online => "online",
            MachineState::Draining => "draining",
            MachineState::Drained => "drained",
            MachineState::Offline => "offline",
            MachineState::Stopping => "stopping",
            MachineState::Stopped => "stopped",
            MachineState::Starting => "starting",
            MachineState::Retiring => "retiring",
            MachineState::Retired => "retired",
            MachineState::Failed => "failed",
        }
    }

    /// From the stored name.
    pub fn parse(s: &str) -> Option<MachineState> {
        MachineState::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// How berth tells that a machine answers: a TCP connection to its SSH port, an HTTP
/// health check, or (for a cluster whose machines berth has no route to) not at all, so a
/// running machine is online as soon as its provider says it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", tag = "kind", deny_unknown_fields)]
pub enum Probe {
    /// Connect to the SSH port (a pool host's own port on a physical pool).
    Ssh {
        /// The port on a provider's machines.
        #[serde(default = "default_ssh_port")]
        port: u16,
    },
    /// An HTTP GET of `path` on `port` of the machine's address; any 2xx answer is
    /// healthy (a load balancer's health check).
    Http {
        /// The port.
        port: u16,
        /// The path (default `/`).
        #[serde(default = "default_http_path")]
        path: String,
    },
    /// No probe.
    None,
}

fn default_http_path() -> String {
    "/".into()
}

fn default_ssh_port() -> u16 {
    22
}

impl Default for Probe {
    fn default() -> Probe {
        Probe::Ssh { port: 22 }
    }
}

/// One cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterRecord {
    /// Its name (the key, repeated so a record stands alone).
    pub name: String,
    /// The provider plugin that serves it (`static-pool` for a physical pool).
    pub provider: String,
    /// The regions it may place machines in.
    #[serde(default)]
    pub regions: Vec<String>,
    /// The provider's API endpoint, when not the provider's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The provider's own settings (a JSON object), handed to the plugin with each call.
    #[serde(default)]
    pub settings: serde_json::Value,
    /// The credentials, sealed (`storage::sealing`): opened only for calls about this
    /// cluster, and handed only to its plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_credentials: Option<Vec<u8>>,
    /// Labels placement can select on.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The projects allowed to place machines here.
    #[serde(default)]
    pub projects: Vec<String>,
    /// How berth tells that a machine of this cluster answers.
    #[serde(default)]
    pub probe: Probe,
    /// A disabled cluster takes no new machines; its machines stay managed.
    pub enabled: bool,
    /// Who added it.
    pub created_by: String,
    /// When (ms since the epoch).
    pub created_at: u64,
    /// When it was last changed.
    pub updated_at: u64,
}

/// What a machine was asked to be.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MachineSpec {
    /// The provider's machine type (`t3.micro`), if one was chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_type: Option<String>,
    /// vCPUs it has (or at least asked for); on a provider's cluster, its machine type's.
    #[serde(default)]
    pub cpus: u32,
    /// Memory, MiB; on a provider's cluster, its machine type's.
    #[serde(default)]
    pub memory_mib: u64,
    /// The image (an AMI, a Glance image); none for a physical host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Root disk, GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_gib: Option<u32>,
    /// The region it is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The zone it is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Network or VPC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    /// Security groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<String>,
    /// The provider's key pair, or the SSH public key to install.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_pair: Option<String>,
}

/// One machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineRecord {
    /// berth's id (`m-` and 32 hex digits); the provider's resources carry it as a tag,
    /// so a machine berth lost track of is found again.
    pub id: String,
    /// The cluster it is in.
    pub cluster: String,
    /// The project that owns it.
    pub project: String,
    /// The provider's id, once it gave one (a pool host's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    /// The region it is in, once its provider placed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The zone it is in, once its provider placed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// The client token the create was made with: a retried create with the same token
    /// is the same machine.
    pub client_token: String,
    /// What it was asked to be.
    pub spec: MachineSpec,
    /// Its addresses, private first.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Where it is in its life.
    pub state: MachineState,
    /// Why it is there, when that needs saying (a failure's reason, an offline's cause).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The SSH host key's fingerprint, where the provider told it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key_fingerprint: Option<String>,
    /// When the provider started billing it (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_started_at: Option<u64>,
    /// Who asked for it.
    pub created_by: String,
    /// When (ms since the epoch).
    pub created_at: u64,
    /// When it last changed.
    pub updated_at: u64,
}

/// One state change of a machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TransitionRecord {
    /// The machine.
    pub machine: String,
    /// Its place in the machine's history, from 1.
    pub seq: u64,
    /// The state it left; none for the first record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<MachineState>,
    /// The state it entered.
    pub to: MachineState,
    /// Who moved it (an account, or `berth` for the reconciler).
    pub actor: String,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When (ms since the epoch).
    pub at: u64,
}

/// A project's limits; an absent limit is no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaRecord {
    /// Machines that are not retired or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machines: Option<u32>,
    /// Their vCPUs together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    /// Their memory together, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
}

/// How a pool host's power is switched: a power-control plugin (such as the built-in
/// `redfish`) reaching the host's BMC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PowerControl {
    /// The plugin (a `cloud-provider` plugin that answers `get`, `start` and `stop`), or
    /// `ipmi` for berth's own IPMI 2.0 client.
    pub plugin: String,
    /// The BMC's base URL (`https://10.0.9.5`), or for `ipmi` its `host[:port]`.
    pub endpoint: String,
    /// The host's system id at the BMC (none for `ipmi`: one BMC, one chassis).
    #[serde(default)]
    pub system: String,
}

/// One host of a physical pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolHostRecord {
    /// The pool (a cluster of provider `static-pool`).
    pub cluster: String,
    /// The host's name in the pool (the key within it).
    pub name: String,
    /// Where berth reaches it.
    pub address: String,
    /// Its SSH port.
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
    pub labels: BTreeMap<String, String>,
    /// Its rack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<String>,
    /// Its zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Its power control, where one is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power: Option<PowerControl>,
    /// The machine it is allocated as, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// Released by a machine and not set up again yet.
    #[serde(default)]
    pub needs_init: bool,
}

/// Which machines a listing returns; every field narrows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MachineFilter {
    /// Only of this cluster.
    pub cluster: Option<String>,
    /// Only of this project.
    pub project: Option<String>,
    /// Only in these states (any, when empty).
    pub states: Vec<MachineState>,
}

/// Reads of scheduling's tables.
pub trait SchedulingRead {
    /// Cluster `name`.
    fn cluster(&self, name: &str) -> StoreResult<Option<ClusterRecord>>;
    /// Every cluster, in name order.
    fn clusters(&self) -> StoreResult<Vec<ClusterRecord>>;
    /// Machine `id`.
    fn machine(&self, id: &str) -> StoreResult<Option<MachineRecord>>;
    /// The machine created with `client_token` in `project`.
    fn machine_by_token(
        &self,
        project: &str,
        client_token: &str,
    ) -> StoreResult<Option<MachineRecord>>;
    /// The machines `filter` selects, in id order.
    fn machines(&self, filter: &MachineFilter) -> StoreResult<Vec<MachineRecord>>;
    /// Machine `id`'s history, oldest first.
    fn transitions(&self, machine: &str) -> StoreResult<Vec<TransitionRecord>>;
    /// Project `project`'s quota, if one was set.
    fn quota(&self, project: &str) -> StoreResult<Option<QuotaRecord>>;
    /// Every quota, by project name.
    fn quotas(&self) -> StoreResult<Vec<(String, QuotaRecord)>>;
    /// Host `name` of pool `cluster`.
    fn pool_host(&self, cluster: &str, name: &str) -> StoreResult<Option<PoolHostRecord>>;
    /// Every host of pool `cluster`, in name order.
    fn pool_hosts(&self, cluster: &str) -> StoreResult<Vec<PoolHostRecord>>;
}

/// Writes of scheduling's tables.
pub trait SchedulingWrite: SchedulingRead {
    /// Stores a cluster under its name, replacing what was there.
    fn put_cluster(&self, record: &ClusterRecord) -> StoreResult<()>;
    /// Removes cluster `name`; false if there was none.
    fn remove_cluster(&self, name: &str) -> StoreResult<bool>;
    /// Stores a machine under its id, replacing what was there.
    fn put_machine(&self, record: &MachineRecord) -> StoreResult<()>;
    /// Appends to a machine's history (`seq` is the caller's: one more than the last).
    fn add_transition(&self, record: &TransitionRecord) -> StoreResult<()>;
    /// Sets project `project`'s quota.
    fn put_quota(&self, project: &str, quota: &QuotaRecord) -> StoreResult<()>;
    /// Removes project `project`'s quota; false if there was none.
    fn remove_quota(&self, project: &str) -> StoreResult<bool>;
    /// Stores a pool host, replacing what was there.
    fn put_pool_host(&self, record: &PoolHostRecord) -> StoreResult<()>;
    /// Removes host `name` of pool `cluster`; false if there was none.
    fn remove_pool_host(&self, cluster: &str, name: &str) -> StoreResult<bool>;
}
