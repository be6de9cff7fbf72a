//! Table `replication_policies`: what to replicate, where, when, and how.
//!
//! A policy is push-based (this instance sends to its endpoints) or pull-based (this
//! instance fetches from one endpoint). Filters are globs on the project, the repository
//! and the tag; a destination namespace replaces the project on the other side; triggers
//! are manual, a cron schedule and changes (push, tag move, delete); a strategy plugin
//! plans the transfers over the policy's topology.

use globset::{Glob, GlobMatcher};
use redb::{TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ReplicationError, ReplicationResult, check_name};
use crate::storage::meta::{self, MetaResult, Reader, encode};

const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("replication_policies");

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

fn yes() -> bool {
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

/// A policy's filters, compiled.
#[derive(Debug, Clone)]
pub struct Selector {
    project: Option<GlobMatcher>,
    repository: Option<GlobMatcher>,
    tag: Option<GlobMatcher>,
}

fn compile(what: &str, glob: &Option<String>) -> ReplicationResult<Option<GlobMatcher>> {
    glob.as_ref()
        .map(|g| {
            globset::GlobBuilder::new(g)
                .literal_separator(true)
                .build()
                .map(|g: Glob| g.compile_matcher())
                .map_err(|e| ReplicationError::Invalid(format!("invalid {what} filter {g:?}: {e}")))
        })
        .transpose()
}

impl Selector {
    /// Compiles `filters`, or says which glob is malformed.
    pub fn new(filters: &Filters) -> ReplicationResult<Selector> {
        Ok(Selector {
            project: compile("project", &filters.project)?,
            repository: compile("repository", &filters.repository)?,
            tag: compile("tag", &filters.tag)?,
        })
    }

    /// Whether the policy covers `repository` at all.
    pub fn repository(&self, repository: &str) -> bool {
        let project = repository.split('/').next().unwrap_or_default();
        self.project.as_ref().is_none_or(|g| g.is_match(project))
            && self
                .repository
                .as_ref()
                .is_none_or(|g| g.is_match(repository))
    }

    /// Whether the policy covers `tag` (none: an untagged manifest).
    pub fn tag(&self, tag: Option<&str>) -> bool {
        match (&self.tag, tag) {
            (None, _) => true,
            (Some(g), Some(tag)) => g.is_match(tag),
            (Some(_), None) => false,
        }
    }
}

impl PolicyRecord {
    /// The repository name on the destination.
    pub fn destination_repository(&self, repository: &str) -> String {
        match &self.destination_namespace {
            None => repository.to_string(),
            Some(namespace) => match repository.split_once('/') {
                Some((_, rest)) => format!("{namespace}/{rest}"),
                None => format!("{namespace}/{repository}"),
            },
        }
    }

    /// Checks everything that does not need other records: names, globs, schedule,
    /// limits, and the shape of the topology.
    pub fn check(&self) -> ReplicationResult<()> {
        check_name("policy", &self.name)?;
        Selector::new(&self.filters)?;
        if let Some(namespace) = &self.destination_namespace
            && !crate::names::component_is_valid(namespace)
        {
            return Err(ReplicationError::Invalid(format!(
                "destination namespace {namespace:?} is not a valid project name"
            )));
        }
        if let Some(schedule) = &self.schedule {
            super::schedule::parse(schedule)?;
        }
        match self.mode {
            Mode::Push if self.endpoints.is_empty() => {
                return Err(ReplicationError::Invalid(
                    "a push policy needs at least one endpoint to send to".into(),
                ));
            }
            Mode::Pull if self.endpoints.len() != 1 => {
                return Err(ReplicationError::Invalid(
                    "a pull policy fetches from exactly one endpoint".into(),
                ));
            }
            Mode::Pull if self.on_change => {
                return Err(ReplicationError::Invalid(
                    "a pull policy cannot follow changes (they happen on the other side); give it a schedule".into(),
                ));
            }
            Mode::Pull if self.topology.is_some() => {
                return Err(ReplicationError::Invalid(
                    "a pull policy has no topology: it fetches from its one endpoint".into(),
                ));
            }
            _ => {}
        }
        let mut seen = std::collections::BTreeSet::new();
        for endpoint in &self.endpoints {
            if !seen.insert(endpoint) {
                return Err(ReplicationError::Invalid(format!(
                    "endpoint {endpoint} is listed twice"
                )));
            }
        }
        if self.concurrency == 0 || self.concurrency > 256 {
            return Err(ReplicationError::Invalid(format!(
                "concurrency must be between 1 and 256, not {}",
                self.concurrency
            )));
        }
        if self.metadata && self.mode == Mode::Pull {
            return Err(ReplicationError::Invalid(
                "metadata convergence is for push policies between berths (a dual-primary pair)"
                    .into(),
            ));
        }
        if self.delivery == Delivery::Sync && !self.on_change {
            return Err(ReplicationError::Invalid(
                "sync delivery needs on_change: the change jobs carry what a destination misses while it is away".into(),
            ));
        }
        if self.delivery == Delivery::Sync && self.mode == Mode::Pull {
            return Err(ReplicationError::Invalid(
                "sync delivery holds back pushes to this instance until the destinations have them; a pull policy has no such pushes".into(),
            ));
        }
        if self.degrade_after_secs == 0 || self.degrade_after_secs > 24 * 3600 {
            return Err(ReplicationError::Invalid(format!(
                "degrade_after_secs must be between 1 and 86400, not {}",
                self.degrade_after_secs
            )));
        }
        if self.bandwidth_limit_mbps == Some(0) {
            return Err(ReplicationError::Invalid(
                "bandwidth_limit_mbps must be positive; leave it out for no limit".into(),
            ));
        }
        if let Some(topology) = &self.topology {
            check_topology(topology, &self.endpoints)?;
        }
        Ok(())
    }
}

fn check_topology(t: &TopologySpec, endpoints: &[String]) -> ReplicationResult<()> {
    let invalid = |m: String| Err(ReplicationError::Invalid(format!("topology: {m}")));
    let datacenters: std::collections::BTreeMap<&str, Option<&str>> = t
        .datacenters
        .iter()
        .map(|d| (d.id.as_str(), d.parent.as_deref()))
        .collect();
    if datacenters.len() != t.datacenters.len() {
        return invalid("a datacenter id is used twice".into());
    }
    for (id, parent) in &datacenters {
        if let Some(parent) = parent
            && !datacenters.contains_key(parent)
        {
            return invalid(format!("datacenter {id} has unknown parent {parent}"));
        }
        // Walking up from any datacenter must end at a root.
        let (mut at, mut steps) = (*id, 0);
        while let Some(Some(up)) = datacenters.get(at) {
            at = up;
            steps += 1;
            if steps > datacenters.len() {
                return invalid(format!("datacenter {id} is in a cycle of parents"));
            }
        }
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut local = 0;
    for instance in &t.instances {
        if !ids.insert(instance.id.as_str()) {
            return invalid(format!("instance {} is listed twice", instance.id));
        }
        if !datacenters.contains_key(instance.datacenter.as_str()) {
            return invalid(format!(
                "instance {} is in unknown datacenter {}",
                instance.id, instance.datacenter
            ));
        }
        match &instance.endpoint {
            None => local += 1,
            Some(e) if !endpoints.contains(e) => {
                return invalid(format!(
                    "instance {} uses endpoint {e}, which is not among the policy's endpoints",
                    instance.id
                ));
            }
            Some(_) => {}
        }
    }
    if local != 1 {
        return invalid(format!(
            "exactly one instance must be this one (no endpoint); found {local}"
        ));
    }
    for endpoint in endpoints {
        if !t
            .instances
            .iter()
            .any(|i| i.endpoint.as_ref() == Some(endpoint))
        {
            return invalid(format!(
                "endpoint {endpoint} is not any instance's endpoint"
            ));
        }
    }
    for link in &t.links {
        for end in [&link.source, &link.target] {
            if !ids.contains(end.as_str()) {
                return invalid(format!("a link names unknown instance {end}"));
            }
        }
        if link.max_parallel == Some(0) {
            return invalid(format!(
                "link {} → {} has max_parallel 0",
                link.source, link.target
            ));
        }
    }
    Ok(())
}

pub(super) fn create(tx: &WriteTransaction) -> MetaResult<()> {
    tx.open_table(TABLE)?;
    Ok(())
}

/// One policy.
pub fn get(tx: &impl Reader, name: &str) -> MetaResult<Option<PolicyRecord>> {
    meta::get_named(tx, TABLE, "replication_policies", name)
}

/// Every policy, by name.
pub fn list(tx: &impl Reader) -> MetaResult<Vec<PolicyRecord>> {
    let named = meta::list_named(tx, TABLE, "replication_policies")?;
    Ok(named.into_iter().map(|(_, record)| record).collect())
}

/// Stores a policy (create or replace).
pub fn put(tx: &WriteTransaction, record: &PolicyRecord) -> MetaResult<()> {
    tx.open_table(TABLE)?
        .insert(record.name.as_str(), encode(record).as_slice())?;
    Ok(())
}

/// Removes a policy; returns whether it existed.
pub fn remove(tx: &WriteTransaction, name: &str) -> MetaResult<bool> {
    Ok(tx.open_table(TABLE)?.remove(name)?.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> PolicyRecord {
        PolicyRecord {
            name: "to-dc2".into(),
            description: String::new(),
            enabled: true,
            mode: Mode::Push,
            endpoints: vec!["dc2".into()],
            filters: Filters::default(),
            destination_namespace: None,
            schedule: None,
            on_change: true,
            replicate_deletions: false,
            override_existing: true,
            concurrency: 4,
            bandwidth_limit_mbps: None,
            metadata: false,
            delivery: Delivery::Async,
            degrade_after_secs: 30,
            strategy: "star".into(),
            topology: None,
            created_by: "admin".into(),
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn filters_match_project_repository_and_tag_globs() {
        let s = Selector::new(&Filters {
            project: Some("team".into()),
            repository: Some("team/{app,tools/*}".into()),
            tag: Some("v[0-9]*".into()),
        })
        .unwrap();
        assert!(s.repository("team/app"));
        assert!(s.repository("team/tools/builder"));
        assert!(
            !s.repository("team/tools/a/b"),
            "* stays within a component"
        );
        assert!(!s.repository("alpha/app"));
        assert!(s.tag(Some("v1.2")));
        assert!(!s.tag(Some("latest")));
        assert!(!s.tag(None));
        let all = Selector::new(&Filters::default()).unwrap();
        assert!(all.repository("x/y/z") && all.tag(None));
        let deep = Selector::new(&Filters {
            repository: Some("team/**".into()),
            ..Filters::default()
        })
        .unwrap();
        assert!(deep.repository("team/a/b/c"));
    }

    #[test]
    fn the_destination_namespace_replaces_the_project() {
        let mut p = policy();
        assert_eq!(p.destination_repository("team/app"), "team/app");
        p.destination_namespace = Some("mirror".into());
        assert_eq!(p.destination_repository("team/app"), "mirror/app");
        assert_eq!(
            p.destination_repository("team/tools/builder"),
            "mirror/tools/builder"
        );
    }

    #[test]
    fn contradictory_policies_are_refused_with_the_reason() {
        let mut p = policy();
        p.filters.tag = Some("v[".into());
        assert!(p.check().unwrap_err().to_string().contains("tag filter"));
        let mut p = policy();
        p.mode = Mode::Pull;
        assert!(
            p.check()
                .unwrap_err()
                .to_string()
                .contains("cannot follow changes")
        );
        let mut p = policy();
        p.schedule = Some("every tuesday".into());
        assert!(p.check().is_err());
        let mut p = policy();
        p.topology = Some(TopologySpec {
            datacenters: vec![
                DatacenterSpec {
                    id: "a".into(),
                    parent: Some("b".into()),
                },
                DatacenterSpec {
                    id: "b".into(),
                    parent: Some("a".into()),
                },
            ],
            instances: vec![],
            links: vec![],
        });
        assert!(p.check().unwrap_err().to_string().contains("cycle"));
        let mut p = policy();
        p.topology = Some(TopologySpec {
            datacenters: vec![DatacenterSpec {
                id: "a".into(),
                parent: None,
            }],
            instances: vec![
                InstanceSpec {
                    id: "root".into(),
                    datacenter: "a".into(),
                    endpoint: None,
                },
                InstanceSpec {
                    id: "r1".into(),
                    datacenter: "a".into(),
                    endpoint: Some("dc2".into()),
                },
            ],
            links: vec![],
        });
        p.check().unwrap();
    }
}
