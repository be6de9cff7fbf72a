//! A replication strategy whose `plan` misbehaves as the `behaviour` configuration value
//! says, for the host's sandbox tests: `loop`, `memory`, `recursion`, `trap`, `panic`,
//! `exit`, `sleep` (a busy wait on the host clock) or `ok`.

use berth_plugin_sdk::strategy::{PlanError, PlanRequest, ReplicationPlan, Strategy};
use berth_plugin_sdk::{Plugin, PluginInfo, export_strategy, host};

struct Hostile;

impl Plugin for Hostile {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "hostile".into(),
            version: "0.1.0".into(),
            description: "misbehaves on purpose".into(),
        }
    }
}

#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(depth: u64, sink: &mut [u64; 16]) -> u64 {
    sink[(depth % 16) as usize] = depth;
    // The work after the call keeps this from becoming a loop.
    recurse(depth + 1, sink).wrapping_add(sink[(depth % 7) as usize])
}

impl Strategy for Hostile {
    fn plan(_request: PlanRequest) -> Result<ReplicationPlan, PlanError> {
        match host::config("behaviour").as_deref().unwrap_or("ok") {
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 16 * 1024 * 1024]);
                    std::hint::black_box(&hoard);
                }
            }
            "recursion" => {
                let mut sink = [0u64; 16];
                let n = recurse(0, &mut sink);
                Err(PlanError::Invalid(format!("unreachable {n}")))
            }
            "trap" => {
                let divisor = std::hint::black_box(0u32);
                #[allow(unconditional_panic)]
                let n = std::hint::black_box(1u32) / divisor;
                Err(PlanError::Invalid(format!("unreachable {n}")))
            }
            "panic" => panic!("the hostile plugin panicked on purpose"),
            "exit" => std::process::exit(3),
            "sleep" => {
                let start = host::monotonic_now();
                while host::monotonic_now() - start < 60_000_000_000 {}
                Ok(ReplicationPlan {
                    waves: vec![],
                    limits: vec![],
                })
            }
            "ok" => Ok(ReplicationPlan {
                waves: vec![],
                limits: vec![],
            }),
            other => Err(PlanError::Invalid(format!("unknown behaviour {other}"))),
        }
    }
}

export_strategy!(Hostile);
