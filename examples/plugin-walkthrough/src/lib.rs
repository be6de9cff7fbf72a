//! `nearest-first`: a replication strategy that feeds each target from the nearest
//! instance holding the artifact (same datacenter, then the parent datacenter, then
//! anywhere), in waves, so an instance that received an artifact in one wave can pass it
//! on in the next.

use std::collections::{BTreeMap, BTreeSet};

use berth_plugin_sdk::strategy::{PlanError, PlanRequest, ReplicationPlan, Strategy, Transfer, Wave};
use berth_plugin_sdk::{Plugin, PluginInfo, export_strategy};

struct NearestFirst;

impl Plugin for NearestFirst {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "nearest-first".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "each target pulls from the nearest holder, wave by wave".into(),
        }
    }
}

impl Strategy for NearestFirst {
    fn plan(request: PlanRequest) -> Result<ReplicationPlan, PlanError> {
        let datacenter: BTreeMap<&str, &str> =
            request.topology.instances.iter().map(|i| (i.id.as_str(), i.datacenter.as_str())).collect();
        let parent: BTreeMap<&str, Option<&str>> =
            request.topology.datacenters.iter().map(|d| (d.id.as_str(), d.parent.as_deref())).collect();
        // How far apart two instances are: 0 same datacenter, 1 parent/child, 2 otherwise.
        let distance = |a: &str, b: &str| {
            let (da, db) = (datacenter[a], datacenter[b]);
            if da == db {
                0
            } else if parent.get(da) == Some(&Some(db)) || parent.get(db) == Some(&Some(da)) {
                1
            } else {
                2
            }
        };
        for target in &request.targets {
            if !datacenter.contains_key(target.as_str()) {
                return Err(PlanError::Invalid(format!("unknown target {target}")));
            }
        }

        let mut holders: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for placement in &request.present {
            holders.entry(&placement.artifact).or_default().extend(placement.instances.iter().map(String::as_str));
        }
        let mut waves = Vec::new();
        loop {
            let mut transfers = Vec::new();
            let mut received: Vec<(&str, &str)> = Vec::new();
            for artifact in &request.artifacts {
                let have = holders.entry(&artifact.id).or_default();
                if have.is_empty() {
                    return Err(PlanError::Unreachable(format!("no instance holds {}", artifact.id)));
                }
                for target in request.targets.iter().map(String::as_str).filter(|t| !have.contains(t)) {
                    // Only sources one step away move in this wave; farther targets wait
                    // for a nearer copy unless nothing nearer will ever come.
                    let source = *have.iter().min_by_key(|h| (distance(h, target), **h)).unwrap();
                    if distance(source, target) <= 1 || waves.len() >= 2 {
                        transfers.push(Transfer { source: source.into(), target: target.into(), artifact: artifact.id.clone() });
                        received.push((artifact.id.as_str(), target));
                    }
                }
            }
            if transfers.is_empty() {
                if request.artifacts.iter().all(|a| request.targets.iter().all(|t| holders[a.id.as_str()].contains(t.as_str()))) {
                    break;
                }
                waves.push(Wave { transfers: Vec::new() });
                continue;
            }
            for (artifact, target) in received {
                holders.get_mut(artifact).unwrap().insert(target);
            }
            waves.push(Wave { transfers });
        }
        waves.retain(|w| !w.transfers.is_empty());
        Ok(ReplicationPlan { waves, limits: Vec::new() })
    }
}

export_strategy!(NearestFirst);
