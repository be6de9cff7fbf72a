//! `star`: one primary sends every artifact straight to every replica that lacks it, in a
//! single wave, with a cap on parallel sends per link.
//!
//! Configuration: `primary` (instance id; default: the first instance holding each
//! artifact) and `max-parallel-per-link` (default 4).

use std::collections::{BTreeMap, BTreeSet};

use berth_plugin_sdk::strategy::{
    PlanError, PlanRequest, ReplicationPlan, Strategy, Transfer, Wave, link_limits,
    positive_setting,
};
use berth_plugin_sdk::{Plugin, PluginInfo, export_strategy, host};

struct Star;

impl Plugin for Star {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "star".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "one primary sends every artifact straight to every replica".into(),
        }
    }
}

impl Strategy for Star {
    fn plan(request: PlanRequest) -> Result<ReplicationPlan, PlanError> {
        let instances: BTreeSet<&str> = request
            .topology
            .instances
            .iter()
            .map(|i| i.id.as_str())
            .collect();
        for target in &request.targets {
            if !instances.contains(target.as_str()) {
                return Err(PlanError::Invalid(format!(
                    "target {target} is not an instance of the topology"
                )));
            }
        }
        let cap = positive_setting("max-parallel-per-link", 4)?;
        let primary = host::config("primary");
        let present: BTreeMap<&str, &Vec<String>> = request
            .present
            .iter()
            .map(|p| (p.artifact.as_str(), &p.instances))
            .collect();

        let mut transfers = Vec::new();
        let mut links = BTreeSet::new();
        for artifact in &request.artifacts {
            let holders = present
                .get(artifact.id.as_str())
                .map(|h| h.as_slice())
                .unwrap_or(&[]);
            let source = match &primary {
                Some(p) if holders.contains(p) => p.clone(),
                Some(p) => {
                    return Err(PlanError::Unreachable(format!(
                        "primary {p} does not hold {}",
                        artifact.id
                    )));
                }
                None => match holders.first() {
                    Some(h) => h.clone(),
                    None => {
                        return Err(PlanError::Unreachable(format!(
                            "no instance holds {}",
                            artifact.id
                        )));
                    }
                },
            };
            for target in &request.targets {
                if holders.contains(target) || *target == source {
                    continue;
                }
                links.insert((source.clone(), target.clone()));
                transfers.push(Transfer {
                    source: source.clone(),
                    target: target.clone(),
                    artifact: artifact.id.clone(),
                });
            }
        }
        let limits = link_limits(&request.topology, links, cap);
        let waves = if transfers.is_empty() {
            Vec::new()
        } else {
            vec![Wave { transfers }]
        };
        Ok(ReplicationPlan { waves, limits })
    }
}

export_strategy!(Star);
