//! A replication strategy built against the frozen `berth:plugin@0.1.0` directly (not the
//! SDK, which builds for the newest version): the host must keep loading it, calling it by
//! name, and planning replication with it. It sends every missing artifact from the first
//! instance holding it, and logs through 0.1.0's `host` import.

wit_bindgen::generate!({
    path: "../../../wit/v0.1.0",
    world: "replication-strategy",
    generate_all,
});

use berth::plugin::host;
use berth::plugin::types::LogLevel;
use exports::berth::plugin::meta::{Guest as Meta, PluginInfo};
use exports::berth::plugin::strategy::{
    Guest as StrategyGuest, PlanError, PlanRequest, ReplicationPlan, Transfer, Wave,
};

struct Legacy;

impl Meta for Legacy {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "legacy".into(),
            version: "0.1.0".into(),
            description: "built for berth:plugin@0.1.0".into(),
        }
    }
}

impl StrategyGuest for Legacy {
    fn plan(request: PlanRequest) -> Result<ReplicationPlan, PlanError> {
        let mut transfers = Vec::new();
        for placement in &request.present {
            let Some(source) = placement.instances.first() else {
                continue;
            };
            for target in &request.targets {
                if !placement.instances.contains(target) {
                    transfers.push(Transfer {
                        source: source.clone(),
                        target: target.clone(),
                        artifact: placement.artifact.clone(),
                    });
                }
            }
        }
        host::log(
            LogLevel::Info,
            "planned with the 0.1.0 bindings",
            &[("transfers".into(), transfers.len().to_string())],
        );
        Ok(ReplicationPlan {
            waves: vec![Wave { transfers }],
            limits: vec![],
        })
    }
}

export!(Legacy);
