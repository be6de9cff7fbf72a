//! `tree`: datacenters form a tree (each names its parent); an artifact travels along the
//! tree's edges, one hop per wave, so a datacenter's uplink carries each artifact once per
//! neighbouring datacenter that needs it, never once per instance behind it.
//!
//! Each datacenter has a hub: an instance already holding the artifact, else its first
//! instance by id. Hubs send to the hubs of neighbouring datacenters (children, and the
//! parent when the artifact starts lower down); once a hub has it, it also sends to the
//! other instances of its own datacenter.
//!
//! Configuration: `max-parallel-per-link` (default 4).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use berth_plugin_sdk::strategy::{
    PlanError, PlanRequest, ReplicationPlan, Strategy, Transfer, Wave, link_limits,
    positive_setting,
};
use berth_plugin_sdk::{Plugin, PluginInfo, export_strategy};

struct Tree;

impl Plugin for Tree {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "tree".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description:
                "datacenters as a tree: each level sends to its children once it has the artifact"
                    .into(),
        }
    }
}

/// The datacenter tree, checked.
struct Layout<'a> {
    /// Datacenter → neighbouring datacenters (parent and children), sorted.
    neighbours: BTreeMap<&'a str, BTreeSet<&'a str>>,
    /// Datacenter → its instances, sorted.
    members: BTreeMap<&'a str, Vec<&'a str>>,
    /// Instance → its datacenter.
    home: BTreeMap<&'a str, &'a str>,
}

fn layout(request: &PlanRequest) -> Result<Layout<'_>, PlanError> {
    let topology = &request.topology;
    let mut neighbours: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let parents: BTreeMap<&str, Option<&str>> = topology
        .datacenters
        .iter()
        .map(|d| (d.id.as_str(), d.parent.as_deref()))
        .collect();
    for (dc, parent) in &parents {
        neighbours.entry(dc).or_default();
        if let Some(parent) = parent {
            if !parents.contains_key(parent) {
                return Err(PlanError::Invalid(format!(
                    "datacenter {dc} names unknown parent {parent}"
                )));
            }
            neighbours.entry(dc).or_default().insert(parent);
            neighbours.entry(parent).or_default().insert(dc);
        }
        let (mut at, mut steps) = (*dc, 0);
        while let Some(Some(up)) = parents.get(at) {
            at = up;
            steps += 1;
            if steps > parents.len() {
                return Err(PlanError::Invalid(format!(
                    "datacenter {dc} is in a cycle of parents"
                )));
            }
        }
    }
    let mut members: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut home = BTreeMap::new();
    for instance in &topology.instances {
        if !parents.contains_key(instance.datacenter.as_str()) {
            return Err(PlanError::Invalid(format!(
                "instance {} is in unknown datacenter {}",
                instance.id, instance.datacenter
            )));
        }
        members
            .entry(instance.datacenter.as_str())
            .or_default()
            .push(instance.id.as_str());
        home.insert(instance.id.as_str(), instance.datacenter.as_str());
    }
    for list in members.values_mut() {
        list.sort_unstable();
    }
    for target in &request.targets {
        if !home.contains_key(target.as_str()) {
            return Err(PlanError::Invalid(format!(
                "target {target} is not an instance of the topology"
            )));
        }
    }
    Ok(Layout {
        neighbours,
        members,
        home,
    })
}

impl Strategy for Tree {
    fn plan(request: PlanRequest) -> Result<ReplicationPlan, PlanError> {
        let cap = positive_setting("max-parallel-per-link", 4)?;
        let layout = layout(&request)?;
        let present: BTreeMap<&str, &Vec<String>> = request
            .present
            .iter()
            .map(|p| (p.artifact.as_str(), &p.instances))
            .collect();
        let targets: BTreeSet<&str> = request.targets.iter().map(String::as_str).collect();
        // Datacenters that hold a target, or lie on the way to one, need the artifact.
        let mut waves: Vec<Vec<Transfer>> = Vec::new();
        let mut links = BTreeSet::new();
        for artifact in &request.artifacts {
            let holders: BTreeSet<&str> = present
                .get(artifact.id.as_str())
                .map(|h| h.iter().map(String::as_str).collect())
                .unwrap_or_default();
            if holders.is_empty() {
                return Err(PlanError::Unreachable(format!(
                    "no instance holds {}",
                    artifact.id
                )));
            }
            let mut push = |wave: usize, source: &str, target: &str| {
                if waves.len() <= wave {
                    waves.resize_with(wave + 1, Vec::new);
                }
                waves[wave].push(Transfer {
                    source: source.to_string(),
                    target: target.to_string(),
                    artifact: artifact.id.clone(),
                });
                links.insert((source.to_string(), target.to_string()));
            };
            // Breadth first over the datacenter tree from every datacenter holding it:
            // `hub[dc]` is the instance there that has (or will have) the artifact, and the
            // wave after which it has it.
            let mut hub: BTreeMap<&str, (&str, usize)> = BTreeMap::new();
            let mut queue = VecDeque::new();
            for holder in &holders {
                let Some(dc) = layout.home.get(holder) else {
                    continue;
                };
                if !hub.contains_key(dc) {
                    hub.insert(dc, (holder, 0));
                    queue.push_back(*dc);
                }
            }
            // Datacenters whose subtree (seen from the holders) contains a target.
            let wanted_dcs: BTreeSet<&str> = targets
                .iter()
                .filter(|t| !holders.contains(**t))
                .filter_map(|t| layout.home.get(t).copied())
                .collect();
            while let Some(dc) = queue.pop_front() {
                let (from, ready) = hub[dc];
                for next in &layout.neighbours[dc] {
                    if hub.contains_key(next) || !leads_to(&layout, dc, next, &wanted_dcs) {
                        continue;
                    }
                    let members = &layout.members[next];
                    let Some(first) = members.first() else {
                        continue; // an empty datacenter relays nothing
                    };
                    push(ready, from, first);
                    hub.insert(next, (first, ready + 1));
                    queue.push_back(next);
                }
            }
            for target in &targets {
                if holders.contains(target) {
                    continue;
                }
                let dc = layout.home[target];
                let Some((from, ready)) = hub.get(dc).copied() else {
                    return Err(PlanError::Unreachable(format!(
                        "{target} cannot be reached from any instance holding {}",
                        artifact.id
                    )));
                };
                if from != *target {
                    push(ready, from, target);
                }
            }
        }
        let limits = link_limits(&request.topology, links, cap);
        Ok(ReplicationPlan {
            waves: waves
                .into_iter()
                .map(|transfers| Wave { transfers })
                .collect(),
            limits,
        })
    }
}

/// Whether going from datacenter `from` to its neighbour `to` leads towards any of
/// `wanted` (is `to`, or is in the part of the tree beyond `to`).
fn leads_to(layout: &Layout<'_>, from: &str, to: &str, wanted: &BTreeSet<&str>) -> bool {
    let mut seen = BTreeSet::from([from]);
    let mut stack = vec![to];
    while let Some(dc) = stack.pop() {
        if !seen.insert(dc) {
            continue;
        }
        if wanted.contains(dc) {
            return true;
        }
        stack.extend(layout.neighbours[dc].iter().copied());
    }
    false
}

export_strategy!(Tree);
