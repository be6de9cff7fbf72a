//! Plugin runtime figures, in process, with the built-in `star` strategy:
//! - first load (compile, inspect, pre-link, `info`) against a cached load (a new engine
//!   over the same artifact cache, as after a restart), in milliseconds;
//! - per-call overhead of a trivial planner (one artifact, two instances), sequentially:
//!   the sandbox (fresh instance, call, teardown, timed on the plugin thread) and the whole
//!   call as a caller on another runtime sees it (the sandbox plus the hand-over to and
//!   from the plugin threads); then with 16 concurrent callers, quiet and with the other
//!   core kept busy: the sandbox per call, the cost per call (wall time / calls) and the
//!   mean wait of one caller (Little's law: 16 callers share 2 cores);
//! - a planner run over 10,000 artifacts × 50 targets (500,000 transfers).
//!
//! Run: `cargo bench --bench plugins`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_plugin_runtime::latest::strategy::{
    Artifact, Datacenter, Instance, Placement, PlanRequest, Topology,
};
use berth_plugin_runtime::{Limits, NoSecrets, Plugin, Runtime, RuntimeOptions, Settings};

fn request(artifacts: usize, targets: usize) -> PlanRequest {
    let mut instances = vec![Instance {
        id: "primary".into(),
        datacenter: "dc".into(),
    }];
    instances.extend((0..targets).map(|i| Instance {
        id: format!("replica-{i}"),
        datacenter: "dc".into(),
    }));
    PlanRequest {
        topology: Topology {
            datacenters: vec![Datacenter {
                id: "dc".into(),
                parent: None,
            }],
            instances,
            links: vec![],
        },
        artifacts: (0..artifacts)
            .map(|i| Artifact {
                id: format!("sha256:{i:064x}"),
                size: 1 << 20,
            })
            .collect(),
        present: (0..artifacts)
            .map(|i| Placement {
                artifact: format!("sha256:{i:064x}"),
                instances: vec!["primary".into()],
            })
            .collect(),
        targets: (0..targets).map(|i| format!("replica-{i}")).collect(),
    }
}

/// The plugin's statistics once every call is in them: a call is counted when its sandbox
/// is torn down, just after its caller has the answer.
async fn settled(plugin: &Plugin) -> berth_plugin_runtime::CallStats {
    while plugin.calls_in_flight() > 0 {
        tokio::task::yield_now().await;
    }
    plugin.call_stats()
}

/// Per-call figures of 16 callers calling at once.
struct Concurrent {
    /// Mean time a call spent in its sandbox (from the plugin's statistics).
    sandbox_us: f64,
    /// Mean time from a call's start to its result, as one caller waits for it: with 16
    /// callers on 2 cores, mostly waiting for the other 15.
    latency_us: f64,
    /// Wall time over calls: what one call costs the machine.
    cost_us: f64,
}

async fn concurrent(
    runtime: &Arc<Runtime>,
    plugin: &Plugin,
    tiny: &PlanRequest,
    each: u64,
) -> Concurrent {
    const CALLERS: u64 = 16;
    let before = settled(plugin).await;
    let started = Instant::now();
    let workers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (runtime, plugin, tiny) = (runtime.clone(), plugin.clone(), tiny.clone());
            tokio::spawn(async move {
                for _ in 0..each {
                    runtime
                        .plan_replication(&plugin, tiny.clone())
                        .await
                        .unwrap()
                        .unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let wall = started.elapsed();
    let after = settled(plugin).await;
    assert_eq!(after.calls - before.calls, CALLERS * each);
    let calls = (CALLERS * each) as f64;
    Concurrent {
        sandbox_us: (after.sandbox_time - before.sandbox_time).as_secs_f64() * 1e6 / calls,
        latency_us: (after.total_time - before.total_time).as_secs_f64() * 1e6 / calls,
        cost_us: wall.as_secs_f64() * 1e6 / calls,
    }
}

fn options(cache: &std::path::Path) -> RuntimeOptions {
    RuntimeOptions {
        cache_dir: Some(cache.to_path_buf()),
        worker_threads: 2,
        max_concurrent_calls: 64,
        secrets: Arc::new(NoSecrets),
    }
}

async fn load(runtime: &Runtime, wasm: &[u8], settings: Settings) -> (Plugin, bool, Duration) {
    let started = Instant::now();
    let compiled = runtime.compile_async(wasm.to_vec()).await.unwrap();
    let from_cache = compiled.from_cache;
    let plugin = runtime.load(compiled, settings).await.unwrap();
    (plugin, from_cache, started.elapsed())
}

fn main() {
    // Plugins' HTTP client needs a rustls provider, as in `berth serve`.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let star = berth::plugins::builtin::BUILTINS
        .iter()
        .find(|(n, _)| *n == "star")
        .unwrap()
        .1;
    let cache = tempfile::tempdir().unwrap();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let settings = Settings {
            limits: Limits {
                memory_bytes: 2 * 1024 * 1024 * 1024,
                ..Limits::default()
            },
            ..Settings::default()
        };
        let runtime = Runtime::new(options(cache.path())).unwrap();
        let (_, cached, first) = load(&runtime, star, settings.clone()).await;
        assert!(!cached);
        drop(runtime);
        let runtime = Runtime::new(options(cache.path())).unwrap();
        let (plugin, cached, again) = load(&runtime, star, settings).await;
        assert!(cached, "the second engine found the compiled artifact");

        let tiny = request(1, 1);
        // For a profiler: only calls, `BENCH_PROFILE_CALLS` of them from 16 callers.
        if let Some(n) = std::env::var("BENCH_PROFILE_CALLS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            let figures = concurrent(&Arc::new(runtime), &plugin, &tiny, n / 16).await;
            println!("{n} calls: {:.1} µs each", figures.cost_us);
            return;
        }
        for _ in 0..200 {
            runtime
                .plan_replication(&plugin, tiny.clone())
                .await
                .unwrap()
                .unwrap();
        }
        let calls = 5000;
        let before = settled(&plugin).await;
        let started = Instant::now();
        for _ in 0..calls {
            runtime
                .plan_replication(&plugin, tiny.clone())
                .await
                .unwrap()
                .unwrap();
        }
        let per_call_us = started.elapsed().as_secs_f64() * 1e6 / calls as f64;
        let after = settled(&plugin).await;
        assert_eq!(after.calls - before.calls, calls);
        let sandbox_us =
            (after.sandbox_time - before.sandbox_time).as_secs_f64() * 1e6 / calls as f64;

        let runtime = Arc::new(runtime);
        let quiet = concurrent(&runtime, &plugin, &tiny, 1000).await;
        // The same with the other core kept busy by another process's worth of work.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let hog = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let mut x = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            }
        });
        let busy = concurrent(&runtime, &plugin, &tiny, 1000).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        hog.join().unwrap();

        let big = request(10_000, 50);
        let started = Instant::now();
        let plan = runtime
            .plan_replication(&plugin, big)
            .await
            .unwrap()
            .unwrap();
        let big_ms = started.elapsed().as_secs_f64() * 1e3;
        let transfers: usize = plan.waves.iter().map(|w| w.transfers.len()).sum();
        assert_eq!(transfers, 500_000);

        println!("| plugin runtime (star strategy) | figure |");
        println!("|---|---:|");
        println!(
            "| first load: compile + inspect + pre-link + info | {:.1} ms |",
            first.as_secs_f64() * 1e3
        );
        println!(
            "| cached load (new engine, same cache) | {:.1} ms |",
            again.as_secs_f64() * 1e3
        );
        println!(
            "| per call in the sandbox: fresh instance + trivial plan + teardown | {sandbox_us:.1} µs |"
        );
        println!(
            "| per call as the caller sees it (sandbox + hand-over to the plugin threads) | {per_call_us:.1} µs |"
        );
        for (label, c) in [("", &quiet), (", one core kept busy", &busy)] {
            println!(
                "| 16 concurrent callers{label}: per call in the sandbox | {:.1} µs |",
                c.sandbox_us
            );
            println!(
                "| 16 concurrent callers{label}: cost per call (wall time / calls) | {:.1} µs ({:.0} calls/s) |",
                c.cost_us,
                1e6 / c.cost_us
            );
            println!(
                "| 16 concurrent callers{label}: mean wait of one caller (queueing included) | {:.1} µs |",
                c.latency_us
            );
        }
        println!(
            "| plan over 10,000 artifacts × 50 targets ({transfers} transfers) | {big_ms:.0} ms |"
        );
    });
}
