//! Policies: what to replicate, where, when, and how (stored in `replication_policies`,
//! `storage/tables/replication.rs`; checked and compiled here).
//!
//! A policy is push-based (this instance sends to its endpoints) or pull-based (this
//! instance fetches from one endpoint). Filters are globs on the project, the repository
//! and the tag; a destination namespace replaces the project on the other side; triggers
//! are manual, a cron schedule and changes (push, tag move, delete); a strategy plugin
//! plans the transfers over the policy's topology.

use globset::{Glob, GlobMatcher};

use super::{ReplicationError, ReplicationResult, check_name};

pub use crate::storage::tables::replication::{
    DEFAULT_CONCURRENCY, DEFAULT_DEGRADE_AFTER_SECS, DEFAULT_STRATEGY, DatacenterSpec, Delivery,
    Filters, InstanceSpec, LinkSpec, Mode, PolicyRecord, TopologySpec,
};

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
