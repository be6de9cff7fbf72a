//! A replication strategy whose `info` (the call that names a component while it is
//! loaded) busy-waits for three seconds on the host clock: a load that takes long must
//! hold up nothing but itself.

use berth_plugin_sdk::strategy::{PlanError, PlanRequest, ReplicationPlan, Strategy};
use berth_plugin_sdk::{Plugin, PluginInfo, export_strategy, host};

/// How long `info` takes.
const STALL_MS: u64 = 3_000;

struct Stall;

impl Plugin for Stall {
    fn info() -> PluginInfo {
        let start = host::monotonic_now();
        while host::monotonic_now() - start < STALL_MS * 1_000_000 {}
        PluginInfo {
            name: "stall".into(),
            version: "0.1.0".into(),
            description: "takes three seconds to say its name".into(),
        }
    }
}

impl Strategy for Stall {
    fn plan(_request: PlanRequest) -> Result<ReplicationPlan, PlanError> {
        Ok(ReplicationPlan {
            waves: vec![],
            limits: vec![],
        })
    }
}

export_strategy!(Stall);
