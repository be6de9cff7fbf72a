//! From a job to its tasks: the artifacts it covers, the topology its policy plans over,
//! the strategy plugin's plan, and the tasks that carry it out (the plan's waves of
//! copies, then the deletes, which need no planning).

use std::collections::{BTreeMap, BTreeSet};

use berth_plugin_runtime::latest::strategy as wit;

use super::jobs::{JobScope, LinkCap, PlanSummary, TaskOp, TaskRecord};
use super::policies::{DatacenterSpec, InstanceSpec, Mode, PolicyRecord, Selector, TopologySpec};
use super::side::{SideResult, Source};
use crate::events::ChangeKind;
use crate::storage::clock::Clock;

/// One artifact a job moves: a tag (or an untagged manifest) of a repository on the
/// policy's source.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Artifact {
    /// The repository on the source.
    pub repository: String,
    /// A tag, or a digest for an untagged manifest.
    pub reference: String,
    /// Bytes, when known (0 otherwise): planners may weigh by it.
    pub size: u64,
}

impl Artifact {
    /// The id plans use: `repo:tag` or `repo@digest`.
    pub fn id(&self) -> String {
        if self.reference.contains(':') {
            format!("{}@{}", self.repository, self.reference)
        } else {
            format!("{}:{}", self.repository, self.reference)
        }
    }
}

/// A delete a job carries to every destination.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Deletion {
    /// A tag went away.
    Tag {
        /// Repository on the source.
        repository: String,
        /// The tag.
        tag: String,
        /// The delete's clock.
        clock: Option<Clock>,
    },
    /// A manifest went away, with its tags.
    Manifest {
        /// Repository on the source.
        repository: String,
        /// Its digest.
        digest: String,
    },
}

/// What a job covers, resolved.
#[derive(Debug, Default)]
pub struct Work {
    /// Artifacts to copy.
    pub artifacts: Vec<Artifact>,
    /// Deletes to carry (only with `replicate_deletions`).
    pub deletions: Vec<Deletion>,
}

/// Lists everything `policy`'s filters select on `source` (a full run).
pub async fn discover(policy: &PolicyRecord, source: &dyn Source) -> SideResult<Work> {
    let selector = Selector::new(&policy.filters)
        .map_err(|e| super::side::SideError::Refused(format!("policy {}: {e}", policy.name)))?;
    let mut artifacts = Vec::new();
    for repository in source.repositories().await? {
        if !selector.repository(&repository) {
            continue;
        }
        for tag in source.tags(&repository).await? {
            if selector.tag(Some(&tag)) {
                artifacts.push(Artifact {
                    repository: repository.clone(),
                    reference: tag,
                    size: 0,
                });
            }
        }
    }
    Ok(Work {
        artifacts,
        deletions: Vec::new(),
    })
}

/// The work in a batch of changes: for each tag (or untagged manifest) only its last
/// change counts, so a push then a delete of the same tag is one delete.
pub fn from_changes(policy: &PolicyRecord, scope: &JobScope) -> Work {
    let JobScope::Changes { changes } = scope else {
        return Work::default();
    };
    #[derive(Clone)]
    enum Last {
        Copy(Artifact),
        Delete(Deletion),
    }
    let mut last: BTreeMap<(String, String), Last> = BTreeMap::new();
    for change in changes {
        let repo = change.repository.clone();
        match &change.kind {
            ChangeKind::Manifest { digest, tag, .. } => {
                let reference = tag.clone().unwrap_or_else(|| digest.clone());
                last.insert(
                    (repo.clone(), reference.clone()),
                    Last::Copy(Artifact {
                        repository: repo,
                        reference,
                        size: 0,
                    }),
                );
            }
            ChangeKind::TagDeleted { tag, clock, .. } if policy.replicate_deletions => {
                last.insert(
                    (repo.clone(), tag.clone()),
                    Last::Delete(Deletion::Tag {
                        repository: repo,
                        tag: tag.clone(),
                        clock: clock.clone(),
                    }),
                );
            }
            ChangeKind::ManifestDeleted { digest, tags } if policy.replicate_deletions => {
                for tag in tags {
                    last.remove(&(repo.clone(), tag.clone()));
                }
                last.insert(
                    (repo.clone(), digest.clone()),
                    Last::Delete(Deletion::Manifest {
                        repository: repo,
                        digest: digest.clone(),
                    }),
                );
            }
            _ => {}
        }
    }
    let mut work = Work::default();
    for (_, item) in last {
        match item {
            Last::Copy(a) => work.artifacts.push(a),
            Last::Delete(d) => work.deletions.push(d),
        }
    }
    work
}

/// The topology a policy plans over, and which instance is this one. Without an explicit
/// topology: this instance and the endpoints, in one datacenter.
pub fn topology(policy: &PolicyRecord, local_name: &str) -> (TopologySpec, String) {
    if let Some(t) = &policy.topology {
        let local = t
            .instances
            .iter()
            .find(|i| i.endpoint.is_none())
            .map(|i| i.id.clone())
            .unwrap_or_else(|| local_name.to_string());
        return (t.clone(), local);
    }
    let mut instances = vec![InstanceSpec {
        id: local_name.to_string(),
        datacenter: "default".into(),
        endpoint: None,
    }];
    for endpoint in &policy.endpoints {
        instances.push(InstanceSpec {
            // An endpoint that happens to share this instance's name keeps its own id.
            id: if endpoint == local_name {
                format!("{endpoint}-endpoint")
            } else {
                endpoint.clone()
            },
            datacenter: "default".into(),
            endpoint: Some(endpoint.clone()),
        });
    }
    (
        TopologySpec {
            datacenters: vec![DatacenterSpec {
                id: "default".into(),
                parent: None,
            }],
            instances,
            links: Vec::new(),
        },
        local_name.to_string(),
    )
}

/// The plan request for `work`: every artifact is on the policy's source (this instance
/// for push, the endpoint for pull), and must reach every other instance (push) or this
/// one (pull).
pub fn request(
    policy: &PolicyRecord,
    topology: &TopologySpec,
    local: &str,
    work: &Work,
) -> wit::PlanRequest {
    let source = source_instance(policy, topology, local);
    let targets: Vec<String> = match policy.mode {
        Mode::Push => topology
            .instances
            .iter()
            .map(|i| i.id.clone())
            .filter(|id| *id != source)
            .collect(),
        Mode::Pull => vec![local.to_string()],
    };
    wit::PlanRequest {
        topology: wit::Topology {
            datacenters: topology
                .datacenters
                .iter()
                .map(|d| wit::Datacenter {
                    id: d.id.clone(),
                    parent: d.parent.clone(),
                })
                .collect(),
            instances: topology
                .instances
                .iter()
                .map(|i| wit::Instance {
                    id: i.id.clone(),
                    datacenter: i.datacenter.clone(),
                })
                .collect(),
            links: topology
                .links
                .iter()
                .map(|l| wit::Link {
                    source: l.source.clone(),
                    target: l.target.clone(),
                    bandwidth_mbps: l.bandwidth_mbps,
                    max_parallel: l.max_parallel,
                })
                .collect(),
        },
        artifacts: work
            .artifacts
            .iter()
            .map(|a| wit::Artifact {
                id: a.id(),
                size: a.size,
            })
            .collect(),
        present: work
            .artifacts
            .iter()
            .map(|a| wit::Placement {
                artifact: a.id(),
                instances: vec![source.clone()],
            })
            .collect(),
        targets,
    }
}

/// The instance a policy's content starts on.
pub fn source_instance(policy: &PolicyRecord, topology: &TopologySpec, local: &str) -> String {
    match policy.mode {
        Mode::Push => local.to_string(),
        Mode::Pull => topology
            .instances
            .iter()
            .find(|i| i.endpoint.as_ref() == policy.endpoints.first())
            .map(|i| i.id.clone())
            .unwrap_or_else(|| policy.endpoints[0].clone()),
    }
}

/// Turns the strategy's plan into tasks, checking that it only names instances and
/// artifacts of the request; deletes follow in one last wave, from the source to every
/// target.
pub fn tasks(
    job: u64,
    policy: &PolicyRecord,
    request: &wit::PlanRequest,
    plan: &wit::ReplicationPlan,
    source: &str,
    work: &Work,
) -> Result<(Vec<TaskRecord>, PlanSummary), String> {
    let instances: BTreeSet<&str> = request
        .topology
        .instances
        .iter()
        .map(|i| i.id.as_str())
        .collect();
    let artifacts: BTreeMap<String, &Artifact> =
        work.artifacts.iter().map(|a| (a.id(), a)).collect();
    let mut tasks = Vec::new();
    let mut seen = BTreeSet::new();
    for (wave, w) in plan.waves.iter().enumerate() {
        for t in &w.transfers {
            for end in [&t.source, &t.target] {
                if !instances.contains(end.as_str()) {
                    return Err(format!(
                        "strategy {} planned a transfer with unknown instance {end}",
                        policy.strategy
                    ));
                }
            }
            if t.source == t.target {
                return Err(format!(
                    "strategy {} planned a transfer from {} to itself",
                    policy.strategy, t.source
                ));
            }
            let Some(artifact) = artifacts.get(&t.artifact) else {
                return Err(format!(
                    "strategy {} planned a transfer of unknown artifact {}",
                    policy.strategy, t.artifact
                ));
            };
            if !seen.insert((t.target.clone(), t.artifact.clone())) {
                continue; // sent to the same target twice: once is enough
            }
            // Past the first hop, the content lives under its destination name.
            let first_hop = t.source == source;
            let repository = if first_hop {
                artifact.repository.clone()
            } else {
                policy.destination_repository(&artifact.repository)
            };
            tasks.push(TaskRecord::pending(
                job,
                tasks.len() as u32,
                wave as u32,
                &t.source,
                &t.target,
                TaskOp::Copy {
                    repository,
                    reference: artifact.reference.clone(),
                    destination: policy.destination_repository(&artifact.repository),
                    origin_repository: (!first_hop).then(|| artifact.repository.clone()),
                },
            ));
        }
    }
    let last_wave = plan.waves.len() as u32;
    for deletion in &work.deletions {
        for target in &request.targets {
            let op = match deletion {
                Deletion::Tag {
                    repository,
                    tag,
                    clock,
                } => TaskOp::DeleteTag {
                    destination: policy.destination_repository(repository),
                    tag: tag.clone(),
                    clock: clock.clone(),
                },
                Deletion::Manifest { repository, digest } => TaskOp::DeleteManifest {
                    destination: policy.destination_repository(repository),
                    digest: digest.clone(),
                },
            };
            tasks.push(TaskRecord::pending(
                job,
                tasks.len() as u32,
                last_wave,
                source,
                target,
                op,
            ));
        }
    }
    let waves = tasks.iter().map(|t| t.wave + 1).max().unwrap_or(0);
    let summary = PlanSummary {
        strategy: policy.strategy.clone(),
        waves,
        artifacts: (work.artifacts.len() + work.deletions.len()) as u32,
        limits: plan
            .limits
            .iter()
            .map(|l| LinkCap {
                source: l.source.clone(),
                target: l.target.clone(),
                max_parallel: l.max_parallel.max(1),
            })
            .collect(),
    };
    Ok((tasks, summary))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Change;
    use crate::replication::policies::Filters;

    fn policy() -> PolicyRecord {
        PolicyRecord {
            name: "p".into(),
            description: String::new(),
            enabled: true,
            mode: Mode::Push,
            endpoints: vec!["r1".into(), "r2".into()],
            filters: Filters::default(),
            destination_namespace: Some("mirror".into()),
            schedule: None,
            on_change: true,
            replicate_deletions: true,
            override_existing: true,
            concurrency: 4,
            bandwidth_limit_mbps: None,
            metadata: false,
            delivery: Default::default(),
            degrade_after_secs: 30,
            strategy: "star".into(),
            topology: None,
            created_by: "admin".into(),
            created_at: 0,
            updated_at: 0,
        }
    }

    fn manifest(tag: &str, digest: &str) -> Change {
        Change::new(
            "team/app",
            ChangeKind::Manifest {
                digest: digest.into(),
                media_type: "m".into(),
                tag: Some(tag.into()),
            },
            None,
        )
    }

    #[test]
    fn only_the_last_change_of_a_tag_counts() {
        let changes = vec![
            manifest("v1", "sha256:a"),
            manifest("v2", "sha256:b"),
            Change::new(
                "team/app",
                ChangeKind::TagDeleted {
                    tag: "v1".into(),
                    digest: "sha256:a".into(),
                    clock: None,
                },
                None,
            ),
            manifest("v2", "sha256:c"),
        ];
        let work = from_changes(&policy(), &JobScope::Changes { changes });
        assert_eq!(
            work.artifacts,
            [Artifact {
                repository: "team/app".into(),
                reference: "v2".into(),
                size: 0
            }]
        );
        assert_eq!(
            work.deletions,
            [Deletion::Tag {
                repository: "team/app".into(),
                tag: "v1".into(),
                clock: None,
            }]
        );
        let mut keep = policy();
        keep.replicate_deletions = false;
        let changes = vec![Change::new(
            "team/app",
            ChangeKind::TagDeleted {
                tag: "v1".into(),
                digest: "sha256:a".into(),
                clock: None,
            },
            None,
        )];
        assert!(
            from_changes(&keep, &JobScope::Changes { changes })
                .deletions
                .is_empty()
        );
    }

    #[test]
    fn a_plan_becomes_tasks_and_a_plan_naming_strangers_is_refused() {
        let p = policy();
        let (topology, local) = topology(&p, "local");
        let work = Work {
            artifacts: vec![Artifact {
                repository: "team/app".into(),
                reference: "v1".into(),
                size: 10,
            }],
            deletions: vec![Deletion::Tag {
                repository: "team/app".into(),
                tag: "old".into(),
                clock: None,
            }],
        };
        let request = request(&p, &topology, &local, &work);
        assert_eq!(request.targets, ["r1", "r2"]);
        let transfer = |target: &str| wit::Transfer {
            source: "local".into(),
            target: target.into(),
            artifact: "team/app:v1".into(),
        };
        let plan = wit::ReplicationPlan {
            waves: vec![wit::Wave {
                transfers: vec![transfer("r1"), transfer("r2")],
            }],
            limits: vec![],
        };
        let (tasks, summary) = tasks(7, &p, &request, &plan, &local, &work).unwrap();
        assert_eq!(tasks.len(), 4, "two copies and two deletes");
        assert_eq!(summary.waves, 2);
        assert_eq!(
            tasks[0].op,
            TaskOp::Copy {
                repository: "team/app".into(),
                reference: "v1".into(),
                destination: "mirror/app".into(),
                origin_repository: None,
            }
        );
        assert_eq!(tasks[3].wave, 1);
        let bad = wit::ReplicationPlan {
            waves: vec![wit::Wave {
                transfers: vec![transfer("elsewhere")],
            }],
            limits: vec![],
        };
        let err = super::tasks(7, &p, &request, &bad, &local, &work).unwrap_err();
        assert!(err.contains("unknown instance elsewhere"), "{err}");
    }
}
