//! Tables of the replication component (`host/src/replication/`): `replication_endpoints`
//! (the registries this instance replicates with, their credentials sealed at rest),
//! `replication_policies` (what to replicate, where, when and how) and
//! `replication_metadata_versions` (the version of each record a dual-primary pair keeps
//! converged) and `replication_degraded` (the sync destinations that pushes no longer wait
//! for, shared by every node). What the records mean (URL rules, filters, sealing) is
//! replication's.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::storage::clock::Clock;
use crate::storage::store::StoreResult;

/// What software answers at an endpoint; it decides which extensions berth may use there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum EndpointKind {
    /// Another berth: replication origins are recorded there, and it can run transfers
    /// on this instance's behalf.
    Berth,
    /// CNCF distribution (`docker-registry`).
    Distribution,
    /// Any registry that speaks the OCI Distribution API.
    Oci,
}

/// One endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EndpointRecord {
    /// Its name (the key, repeated so a record stands alone).
    pub name: String,
    /// What answers there.
    pub kind: EndpointKind,
    /// `http://host[:port]` or `https://host[:port]`.
    pub url: String,
    /// The user or robot account berth logs in as; none for anonymous access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The password, sealed (see `storage::sealing::Sealer`); never returned by the API.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "sealed_base64"
    )]
    pub sealed_password: Option<Vec<u8>>,
    /// Accept any TLS certificate (for test set-ups; prefer `ca_cert`).
    #[serde(default)]
    pub insecure: bool,
    /// A PEM CA certificate to trust for this endpoint, beside the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
    /// The instance name a berth endpoint reports (`Berth-Instance` on `/v2/`), learnt
    /// when the endpoint is created, changed or checked: content replicated from it
    /// carries this name as its origin, and is never sent back to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Who created it.
    pub created_by: String,
    /// When (ms since the epoch).
    pub created_at: u64,
    /// When it was last changed (ms since the epoch).
    pub updated_at: u64,
}

mod sealed_base64 {
    use super::*;

    pub fn serialize<S: serde::Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => {
                s.serialize_some(&base64::engine::general_purpose::STANDARD.encode(bytes))
            }
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| {
            base64::engine::general_purpose::STANDARD
                .decode(t)
                .map_err(serde::de::Error::custom)
        })
        .transpose()
    }
}

/// Which side runs the transfers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// This instance sends its content to the policy's endpoints.
    Push,
    /// This instance fetches content from the policy's one endpoint.
    Pull,
}

/// When a client's push is acknowledged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// At once; replication follows (the backlog is what a crash here would lose).
    #[default]
    Async,
    /// Only once every destination holds the manifest and its blobs; a destination
    /// unreachable for longer than `degrade_after_secs` is waited for no more (the
    /// policy degrades to async, loudly, until it answers again).
    Sync,
}

/// Globs that select what a policy replicates; an absent glob selects everything.
///
/// `*` matches within one path component, `**` across components, `?` one character,
/// `{a,b}` either; e.g. repository `team/**` or tag `v[0-9]*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    /// The project (the repository's first component).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The whole repository name, project included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The tag. Untagged manifests are replicated only when no tag filter is set and
    /// they arrive as changes (a push by digest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// One datacenter of a topology.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DatacenterSpec {
    /// Its id.
    pub id: String,
    /// The datacenter that feeds this one; none for a root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

/// One registry instance of a topology.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceSpec {
    /// Its id in plans.
    pub id: String,
    /// The datacenter it is in.
    pub datacenter: String,
    /// The endpoint that reaches it; none for this instance itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// A network path between two instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// The sending instance.
    pub source: String,
    /// The receiving instance.
    pub target: String,
    /// Megabits per second, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_mbps: Option<u32>,
    /// Transfers the link takes at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<u32>,
}

/// The instances a strategy plans over. Without one, a policy's topology is this
/// instance and its endpoints in one datacenter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopologySpec {
    /// Datacenters, parents before or after children.
    #[serde(default)]
    pub datacenters: Vec<DatacenterSpec>,
    /// Instances; exactly one has no endpoint (this instance).
    #[serde(default)]
    pub instances: Vec<InstanceSpec>,
    /// Links with known capacities; others are unconstrained.
    #[serde(default)]
    pub links: Vec<LinkSpec>,
}

/// One policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyRecord {
    /// Its name (the key, repeated so a record stands alone).
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// A disabled policy runs on no trigger, manual included.
    pub enabled: bool,
    /// Push or pull.
    pub mode: Mode,
    /// Push: the endpoints to send to. Pull: the one endpoint to fetch from.
    pub endpoints: Vec<String>,
    /// What to replicate.
    #[serde(default)]
    pub filters: Filters,
    /// Replaces the project on the destination (`team/app` → `<namespace>/app`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_namespace: Option<String>,
    /// A cron schedule (`sec min hour day month weekday`, or the classic five fields),
    /// in UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Push policies: run on every push, tag move and (with `replicate_deletions`)
    /// delete. Pull policies have no changes to follow and refuse this.
    #[serde(default)]
    pub on_change: bool,
    /// Carry tag and manifest deletions to the destination.
    #[serde(default)]
    pub replicate_deletions: bool,
    /// Move a destination tag that points elsewhere; when off, such a tag is left alone
    /// and the task reports it skipped.
    #[serde(default = "yes")]
    pub override_existing: bool,
    /// Transfers of one job that run at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// A cap on the bytes per second one job sends, in megabits per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_limit_mbps: Option<u32>,
    /// Keep the users, projects, members, robot accounts and replication settings of
    /// this instance and the endpoints (berths) converged: for a dual-primary pair.
    #[serde(default)]
    pub metadata: bool,
    /// When a client's push is acknowledged (push policies).
    #[serde(default)]
    pub delivery: Delivery,
    /// Sync delivery: seconds a destination may stay unreachable before pushes are
    /// acknowledged without it.
    #[serde(default = "default_degrade_after")]
    pub degrade_after_secs: u64,
    /// The replication-strategy plugin that plans the transfers.
    #[serde(default = "default_strategy")]
    pub strategy: String,
    /// The topology it plans over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<TopologySpec>,
    /// Who created it.
    pub created_by: String,
    /// When (ms since the epoch).
    pub created_at: u64,
    /// When it was last changed.
    pub updated_at: u64,
}

pub(crate) fn yes() -> bool {
    true
}

/// Transfers per job when a policy sets none.
pub const DEFAULT_CONCURRENCY: u32 = 4;

fn default_concurrency() -> u32 {
    DEFAULT_CONCURRENCY
}

/// Seconds a sync destination may be unreachable before pushes stop waiting for it.
pub const DEFAULT_DEGRADE_AFTER_SECS: u64 = 30;

fn default_degrade_after() -> u64 {
    DEFAULT_DEGRADE_AFTER_SECS
}

/// The strategy a policy uses when it names none.
pub const DEFAULT_STRATEGY: &str = "star";

fn default_strategy() -> String {
    DEFAULT_STRATEGY.to_string()
}

/// The version of one record a dual-primary pair keeps converged: a clock taken when this
/// instance first saw the record as it is (or deleted it), and the record's hash then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataVersion {
    /// When this version was taken.
    pub clock: Clock,
    /// sha256 of the record's JSON; empty for a deletion.
    pub hash: String,
}

/// A sync policy's destination that pushes are acknowledged without: every node reads it
/// before holding a push, so one node's verdict spares the others the wait.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DegradedLink {
    /// The policy.
    pub policy: String,
    /// The endpoint.
    pub endpoint: String,
    /// Since when (ms since the epoch).
    pub since: u64,
    /// The failure that degraded it.
    pub error: String,
    /// The node that degraded it.
    pub node: String,
}

/// Reads of replication's tables.
pub trait ReplicationRead {
    /// Endpoint `name`.
    fn endpoint(&self, name: &str) -> StoreResult<Option<EndpointRecord>>;
    /// Every endpoint, in name order.
    fn endpoints(&self) -> StoreResult<Vec<EndpointRecord>>;
    /// Policy `name`.
    fn policy(&self, name: &str) -> StoreResult<Option<PolicyRecord>>;
    /// Every policy, in name order.
    fn policies(&self) -> StoreResult<Vec<PolicyRecord>>;
    /// The version of record `key` of kind `kind`.
    fn metadata_version(&self, kind: &str, key: &str) -> StoreResult<Option<MetadataVersion>>;
    /// Every version, by kind and key.
    fn metadata_versions(&self) -> StoreResult<Vec<(String, String, MetadataVersion)>>;
    /// Whether `endpoint` of `policy` is degraded, and since when.
    fn degraded_link(&self, policy: &str, endpoint: &str) -> StoreResult<Option<DegradedLink>>;
    /// Every degraded link, by policy and endpoint.
    fn degraded_links(&self) -> StoreResult<Vec<DegradedLink>>;
}

/// Writes of replication's tables.
pub trait ReplicationWrite: ReplicationRead {
    /// Stores an endpoint under its name, replacing what was there.
    fn put_endpoint(&self, record: &EndpointRecord) -> StoreResult<()>;
    /// Removes endpoint `name`; false if there was none.
    fn remove_endpoint(&self, name: &str) -> StoreResult<bool>;
    /// Stores a policy under its name, replacing what was there.
    fn put_policy(&self, record: &PolicyRecord) -> StoreResult<()>;
    /// Removes policy `name`; false if there was none.
    fn remove_policy(&self, name: &str) -> StoreResult<bool>;
    /// Stores the version of record `key` of kind `kind`.
    fn put_metadata_version(
        &self,
        kind: &str,
        key: &str,
        version: &MetadataVersion,
    ) -> StoreResult<()>;
    /// Marks a link degraded, replacing what was there.
    fn put_degraded_link(&self, link: &DegradedLink) -> StoreResult<()>;
    /// Clears a link; false if it was not degraded.
    fn remove_degraded_link(&self, policy: &str, endpoint: &str) -> StoreResult<bool>;
}
