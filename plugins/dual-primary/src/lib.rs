//! `dual-primary`: a pair of primaries in two datacenters, each accepting pushes and
//! sending what it has to the other. The topology must hold exactly two instances; every
//! artifact one of them lacks comes from the other, in one wave.
//!
//! Loop prevention and conflict resolution are the host's: content that arrived from the
//! peer is never planned back to it, and a tag moved on both sides converges by its
//! hybrid logical clock.
//!
//! Configuration: `max-parallel` (default 8), transfers the link between the two takes at
//! once.

use berth_plugin_sdk::strategy::{
    LinkLimit, PlanError, PlanRequest, ReplicationPlan, Strategy, Transfer, Wave, positive_setting,
};
use berth_plugin_sdk::{Plugin, PluginInfo, export_strategy};

struct DualPrimary;

impl Plugin for DualPrimary {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "dual-primary".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "two primaries, each sending what it has to the other".into(),
        }
    }
}

impl Strategy for DualPrimary {
    fn plan(request: PlanRequest) -> Result<ReplicationPlan, PlanError> {
        let instances = &request.topology.instances;
        let [a, b] = instances.as_slice() else {
            return Err(PlanError::Invalid(format!(
                "a dual-primary pair has exactly two instances, not {}",
                instances.len()
            )));
        };
        for target in &request.targets {
            if *target != a.id && *target != b.id {
                return Err(PlanError::Invalid(format!(
                    "target {target} is not one of the pair ({} and {})",
                    a.id, b.id
                )));
            }
        }
        let cap = positive_setting("max-parallel", 8)?;
        let mut transfers = Vec::new();
        for placement in &request.present {
            let has = |id: &str| placement.instances.iter().any(|i| i == id);
            let (source, target) = match (has(&a.id), has(&b.id)) {
                (true, false) => (&a.id, &b.id),
                (false, true) => (&b.id, &a.id),
                (true, true) => continue,
                (false, false) => {
                    return Err(PlanError::Unreachable(format!(
                        "neither {} nor {} holds {}",
                        a.id, b.id, placement.artifact
                    )));
                }
            };
            if request.targets.contains(target) {
                transfers.push(Transfer {
                    source: source.clone(),
                    target: target.clone(),
                    artifact: placement.artifact.clone(),
                });
            }
        }
        let mut limits = Vec::new();
        for (source, target) in [(&a.id, &b.id), (&b.id, &a.id)] {
            if transfers.iter().any(|t| t.source == *source) {
                limits.push(LinkLimit {
                    source: source.clone(),
                    target: target.clone(),
                    max_parallel: cap,
                });
            }
        }
        let waves = if transfers.is_empty() {
            Vec::new()
        } else {
            vec![Wave { transfers }]
        };
        Ok(ReplicationPlan { waves, limits })
    }
}

export_strategy!(DualPrimary);
