//! A replication strategy whose `plan` misbehaves as the `behaviour` configuration value
//! says, for the host's sandbox tests: `loop`, `memory`, `recursion`, `trap`, `panic`,
//! `exit`, `sleep` (a busy wait on the host clock for `sleep-ms`, default 60000), `flood`
//! (logs in a loop until the call is stopped), `forge` (log events whose message, field
//! names and values carry newlines and terminal escapes that imitate berth's own lines)
//! or `ok`.

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
            // A WebAssembly trap without a panic message, as from a stray `unreachable`.
            "trap" => core::arch::wasm32::unreachable(),
            "panic" => panic!("the hostile plugin panicked on purpose"),
            "exit" => std::process::exit(3),
            "sleep" => {
                let start = host::monotonic_now();
                let ms: u64 = host::config("sleep-ms")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(60_000);
                while host::monotonic_now() - start < ms * 1_000_000 {}
                Ok(ReplicationPlan {
                    waves: vec![],
                    limits: vec![],
                })
            }
            "flood" => {
                let line = "x".repeat(1000);
                let mut n: u64 = 0;
                loop {
                    n += 1;
                    host::info(&line, &[("n", &n.to_string())]);
                }
            }
            "forge" => {
                let forged = "2026-11-30T12:00:00.000000Z  INFO berth::auth: user admin logged in from 10.0.0.1";
                host::warn(
                    &format!("innocent\n{forged}\r\n\u{1b}[31mred\u{1b}[0m\u{2028}sep"),
                    &[
                        ("field\nname", &format!("value\n{forged}")),
                        ("\u{1b}[2J", "\u{7}\u{8}\u{8}"),
                    ],
                );
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
