//! The engine and everything one host shares between plugins: compiling (with the
//! on-disk cache), linking each world's imports, loading, and running calls on the
//! runtime's own threads under each plugin's limits.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use sha2::{Digest as _, Sha256};
use tokio::sync::Semaphore;
use tracing::Instrument as _;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
};

use crate::cache::ArtifactCache;
use crate::error::{CallError, LOADING, LoadError};
use crate::inspect::{Inspection, inspect};
use crate::latest::types::PluginInfo;
use crate::limits::{CEILING, Exceeded};
use crate::plugin::{Plugin, PluginInner, WorldPre};
use crate::state::{CallScope, CallState, HostServices, SecretSource, Settings};
use crate::ticker::EpochTicker;
use crate::world::Kind;

/// A guest yields to the executor after this much fuel, so a busy plugin shares its
/// thread and its wall-time timer can fire.
const YIELD_EVERY_FUEL: u64 = 5_000_000;

/// How much of a sandbox's linear memory stays mapped between calls (see `Runtime::new`).
/// A Rust guest's memory starts past 1 MiB of stack and grows a heap beyond that, so 2 MiB
/// left the top of it to be unmapped and faulted in again on every call: 4 MiB took the
/// cost of a trivial call with 16 callers from 33–34 µs to 25–32 µs (2026-11-30). Only the
/// pages a call touched stay resident, so this costs little memory beyond what calls use.
const MEMORY_KEEP_RESIDENT: usize = 4 * 1024 * 1024;

/// How much of a call's fiber stack stays mapped between calls.
const STACK_KEEP_RESIDENT: usize = 256 * 1024;

/// The deepest WebAssembly stack a call may use; deeper recursion traps.
const MAX_WASM_STACK: usize = 1024 * 1024;

/// How the runtime is set up; the embedding host fills it from its configuration.
pub struct RuntimeOptions {
    /// Where compiled components are cached; `None` compiles on every load.
    pub cache_dir: Option<PathBuf>,
    /// Threads that run plugin code, apart from the host's request handlers, so a busy
    /// plugin slows other plugins, not the registry.
    pub worker_threads: usize,
    /// Calls that may run at once over all plugins (instance slots); the rest queue.
    pub max_concurrent_calls: u32,
    /// Where granted secrets are read.
    pub secrets: Arc<dyn SecretSource>,
}

/// A compiled, inspected component, not yet linked or called.
pub struct Compiled {
    /// `sha256:<hex>` of the component's bytes.
    pub digest: String,
    pub inspection: Inspection,
    /// Whether the native code came from the on-disk cache.
    pub from_cache: bool,
    component: Component,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("digest", &self.digest)
            .field("inspection", &self.inspection)
            .finish()
    }
}

/// The plugin runtime of one host.
pub struct Runtime {
    shared: Arc<Shared>,
    workers: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

struct Shared {
    engine: Engine,
    /// One linker per (package version, world).
    linkers: Vec<(&'static str, Kind, Linker<CallState>)>,
    cache: Option<ArtifactCache>,
    services: Arc<HostServices>,
    slots: Semaphore,
    ticker: EpochTicker,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Dropping a tokio runtime from inside another one's async context panics.
        if let Some(workers) = self.workers.take() {
            workers.shutdown_background();
        }
    }
}

/// With this variable set, plugins' compiled functions are listed in
/// `/tmp/perf-<pid>.map`, so that `perf report` names them.
pub const PERFMAP_VARIABLE: &str = "BERTH_PLUGIN_PERFMAP";

impl Runtime {
    /// Builds the engine, the linkers and the worker threads. The embedding host must have
    /// installed a rustls crypto provider (plugins' HTTP client is rustls without one).
    pub fn new(options: RuntimeOptions) -> anyhow::Result<Runtime> {
        let slots = options.max_concurrent_calls.max(1);
        let mut pool = PoolingAllocationConfig::new();
        // A Rust wasm32-wasip2 component is a handful of core instances (the program and
        // its adapter shims), one or two memories and a few tables.
        pool.total_component_instances(slots)
            .total_core_instances(slots * 8)
            .max_core_instances_per_component(16)
            .total_memories(slots * 2)
            .max_memories_per_component(4)
            .total_tables(slots * 8)
            .max_tables_per_component(16)
            .total_stacks(slots)
            .max_memory_size(CEILING.memory_bytes as usize)
            // Slots are reused, and resetting one is most of a call's fixed cost. With
            // PAGEMAP_SCAN (Linux 6.7+) only the pages a call dirtied are reset, in place,
            // so they stay mapped and the next call takes no page faults on them; without
            // it the first `keep_resident` bytes are zeroed whole and the rest unmapped.
            .pagemap_scan(Enabled::Auto)
            .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT)
            .table_keep_resident(64 * 1024)
            .async_stack_keep_resident(STACK_KEEP_RESIDENT);

        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(MAX_WASM_STACK)
            .async_stack_size(MAX_WASM_STACK + 1024 * 1024)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        // `perf` names a plugin's functions only from a perf map of the compiled code:
        // written to /tmp/perf-<pid>.map when asked for, for profiling a slow plugin.
        if std::env::var_os(PERFMAP_VARIABLE).is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config)?;

        let mut linkers = Vec::new();
        // Each world of each version links the sandbox's WASI and its own imports.
        macro_rules! link_version {
            ($v:ident) => {{
                let wasi = |engine: &Engine| -> anyhow::Result<Linker<CallState>> {
                    let mut linker = Linker::new(engine);
                    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
                    Ok(linker)
                };
                let mut provider = wasi(&engine)?;
                crate::$v::cloud_provider::CloudProvider::add_to_linker::<_, HasSelf<CallState>>(
                    &mut provider,
                    |s| s,
                )?;
                let mut strategy = wasi(&engine)?;
                crate::$v::replication_strategy::ReplicationStrategy::add_to_linker::<
                    _,
                    HasSelf<CallState>,
                >(&mut strategy, |s| s)?;
                let mut init = wasi(&engine)?;
                crate::$v::host_init::HostInit::add_to_linker::<_, HasSelf<CallState>>(
                    &mut init,
                    |s| s,
                )?;
                linkers.push((crate::$v::VERSION, Kind::CloudProvider, provider));
                linkers.push((crate::$v::VERSION, Kind::ReplicationStrategy, strategy));
                linkers.push((crate::$v::VERSION, Kind::HostInit, init));
            }};
        }
        link_version!(v0_1_0);
        link_version!(v0_2_0);
        link_version!(v0_3_0);

        let cache = match &options.cache_dir {
            Some(dir) => Some(ArtifactCache::open(dir, &engine)?),
            None => None,
        };
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("berth-plugin/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let services = Arc::new(HostServices {
            http,
            secrets: options.secrets,
            epoch: Instant::now(),
        });
        let ticker = EpochTicker::start(engine.clone())?;
        let workers = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(options.worker_threads.max(1))
            .thread_name("plugin-worker")
            .enable_all()
            .build()?;
        Ok(Runtime {
            shared: Arc::new(Shared {
                engine,
                linkers,
                cache,
                services,
                slots: Semaphore::new(slots as usize),
                ticker,
            }),
            workers: Some(workers),
        })
    }

    /// Compiles (or takes from the cache) and inspects `wasm`. CPU-heavy on a cache miss:
    /// call it from a blocking context, or use [`Runtime::compile_async`].
    pub fn compile(&self, wasm: &[u8]) -> Result<Compiled, LoadError> {
        self.shared.compile(wasm)
    }

    /// [`Runtime::compile`] on a blocking thread.
    pub async fn compile_async(&self, wasm: Vec<u8>) -> Result<Compiled, LoadError> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.compile(&wasm))
            .await
            .map_err(|e| LoadError::Invalid(format!("compiler task failed: {e}")))?
    }

    /// Links a compiled component against its world and asks it for its info.
    pub async fn load(&self, compiled: Compiled, settings: Settings) -> Result<Plugin, LoadError> {
        let (kind, version) = (
            compiled.inspection.kind,
            compiled.inspection.world_version.as_str(),
        );
        let Some((_, _, linker)) = self
            .shared
            .linkers
            .iter()
            .find(|(v, k, _)| *v == version && *k == kind)
        else {
            return Err(LoadError::Link(format!(
                "no linker for the {kind} world of berth:plugin@{version}"
            )));
        };
        let link = |e: wasmtime::Error| LoadError::Link(format!("{e:#}"));
        let instance_pre = linker.instantiate_pre(&compiled.component).map_err(link)?;
        let pre = WorldPre::new(version, kind, instance_pre).map_err(link)?;
        let short = compiled
            .digest
            .trim_start_matches("sha256:")
            .chars()
            .take(12)
            .collect::<String>();
        let loading = Plugin {
            inner: Arc::new(PluginInner {
                name: format!("{LOADING}{short})").into(),
                info: PluginInfo {
                    name: String::new(),
                    version: String::new(),
                    description: String::new(),
                },
                digest: compiled.digest.clone(),
                inspection: compiled.inspection.clone(),
                pre,
                settings: RwLock::new(Arc::new(settings)),
                in_flight: Default::default(),
                stats: Default::default(),
            }),
        };
        let info = self
            .call_raw(&loading, "info", true, |pre, store| {
                Box::pin(pre.info(store))
            })
            .await
            .map_err(LoadError::Info)?;
        crate::validate_info(&info).map_err(LoadError::BadInfo)?;
        let inner = Arc::into_inner(loading.inner).expect("no call holds the loading plugin");
        Ok(Plugin {
            inner: Arc::new(PluginInner {
                name: info.name.clone().into(),
                info,
                ..inner
            }),
        })
    }

    /// Runs `f` on a fresh sandbox for `plugin` (`f` instantiates the component in it), on
    /// the runtime's threads, under the plugin's limits; maps every failure to a
    /// [`CallError`] naming plugin and limit. The answer comes back before the sandbox is
    /// torn down, unless `settle` asks to return only once it is and the call's task holds
    /// nothing of the plugin any more (a load needs that).
    pub(crate) async fn call_raw<R, F>(
        &self,
        plugin: &Plugin,
        function: &str,
        settle: bool,
        f: F,
    ) -> Result<R, CallError>
    where
        R: Send + 'static,
        F: for<'a> FnOnce(
                &'a WorldPre,
                &'a mut Store<CallState>,
            ) -> BoxFuture<'a, wasmtime::Result<R>>
            + Send
            + 'static,
    {
        self.call_scoped(plugin, function, settle, None, f).await
    }

    /// [`Runtime::call_raw`], with what this call alone may reach.
    pub(crate) async fn call_scoped<R, F>(
        &self,
        plugin: &Plugin,
        function: &str,
        settle: bool,
        scope: Option<Arc<CallScope>>,
        f: F,
    ) -> Result<R, CallError>
    where
        R: Send + 'static,
        F: for<'a> FnOnce(
                &'a WorldPre,
                &'a mut Store<CallState>,
            ) -> BoxFuture<'a, wasmtime::Result<R>>
            + Send
            + 'static,
    {
        let shared = self.shared.clone();
        let counted = InFlight::enter(plugin);
        let (plugin_name, function_name) = (plugin.name().to_string(), function.to_string());
        let plugin = plugin.clone();
        let function = function.to_string();
        // The result goes back before the sandbox is torn down: resetting its memory is
        // the plugin threads' work, not something the caller waits for.
        let (reply, result) = tokio::sync::oneshot::channel();
        let task = async move {
            let _slot = shared.slots.acquire().await.expect("slots never close");
            let _clock = shared.ticker.running();
            let sandbox_started = Instant::now();
            let settings = plugin.settings();
            let limits = settings.limits;
            let state = CallState::new(
                plugin.inner.name.clone(),
                settings,
                scope,
                shared.services.clone(),
            );
            let mut store = Store::new(&shared.engine, state);
            store.limiter(|s| &mut s.limiter);
            let host_error = |e: wasmtime::Error| CallError::Host {
                plugin: plugin.name().to_string(),
                function: function.clone(),
                message: format!("{e:#}"),
            };
            let metered = store
                .set_fuel(limits.fuel)
                .and_then(|()| store.fuel_async_yield_interval(Some(YIELD_EVERY_FUEL)))
                .map(|()| {
                    // Yield at every tick of the epoch clock too, for the wall timer.
                    store.set_epoch_deadline(1);
                    store.epoch_deadline_async_yield_and_update(1);
                });
            if let Err(e) = metered {
                let _ = reply.send(Err(host_error(e)));
                counted.finish(true, sandbox_started.elapsed());
                return;
            }
            let setup = sandbox_started.elapsed();
            let run = f(&plugin.inner.pre, &mut store);
            let span = tracing::debug_span!("plugin_call", plugin = plugin.name(), function);
            let running = Instant::now();
            let (outcome, busy) = match tokio::time::timeout(
                Duration::from_millis(limits.wall_time_ms),
                Running::new(run.instrument(span)),
            )
            .await
            {
                Ok((Ok(value), busy)) => (Ok(value), busy),
                Ok((Err(e), busy)) => (
                    Err(classify(e, &store, plugin.name(), &function, limits.fuel)),
                    busy,
                ),
                Err(_) => (
                    Err(CallError::WallTime {
                        plugin: plugin.name().to_string(),
                        function: function.clone(),
                        limit_ms: limits.wall_time_ms,
                    }),
                    running.elapsed(),
                ),
            };
            let budget = store.data().log_budget;
            if budget.dropped_events > 0 {
                plugin
                    .inner
                    .stats
                    .record_dropped_logs(budget.dropped_events, budget.dropped_bytes);
                tracing::warn!(
                    plugin = plugin.name(),
                    function,
                    dropped_events = budget.dropped_events,
                    dropped_bytes = budget.dropped_bytes,
                    log_events = limits.log_events,
                    log_bytes = limits.log_bytes,
                    "the plugin wrote more to the log than one call may; the rest was dropped ({})",
                    crate::error::raise(plugin.name(), "--log-events N --log-bytes N")
                );
            }
            if let Err(e) = &outcome {
                tracing::warn!(error = %e, "plugin call failed");
            }
            let failed = outcome.is_err();
            let _ = reply.send(outcome);
            let answered = counted.started.elapsed();
            // Tearing the instance down (resetting its memory) is part of a call's cost in
            // the sandbox, after the caller has its answer.
            let teardown = Instant::now();
            drop(store);
            counted.finish_answered(failed, setup + busy + teardown.elapsed(), answered);
        };
        let handle = self
            .workers
            .as_ref()
            .expect("runtime is running")
            .spawn(task);
        // If the caller goes away (a client disconnects), the call is cancelled too.
        let cancel_on_drop = CancelOnDrop(Some(handle.abort_handle()));
        let answer = result.await;
        if settle {
            let _ = handle.await;
        }
        std::mem::forget(cancel_on_drop);
        answer.unwrap_or_else(|_| {
            Err(CallError::Host {
                plugin: plugin_name,
                function: function_name,
                message: "the call's task ended without an answer".to_string(),
            })
        })
    }
}

/// Counts a call in its plugin's `in_flight` for as long as it lives, and in its
/// statistics when it ends: a call dropped by its caller counts as failed.
struct InFlight {
    plugin: Plugin,
    started: Instant,
    finished: bool,
}

impl InFlight {
    fn enter(plugin: &Plugin) -> InFlight {
        plugin
            .inner
            .in_flight
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        InFlight {
            plugin: plugin.clone(),
            started: Instant::now(),
            finished: false,
        }
    }

    fn finish(self, failed: bool, sandbox: Duration) {
        let total = self.started.elapsed();
        self.finish_answered(failed, sandbox, total);
    }

    /// Records a call whose caller had its answer `total` after the call began.
    fn finish_answered(mut self, failed: bool, sandbox: Duration, total: Duration) {
        self.plugin.inner.stats.record(failed, sandbox, total);
        self.finished = true;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.finished {
            let total = self.started.elapsed();
            self.plugin.inner.stats.record(true, Duration::ZERO, total);
        }
        self.plugin
            .inner
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A call's future, with the time it actually ran: the sum of its polls. Sandboxes share
/// the plugin threads, so the wall time between a call's first and last poll includes
/// other calls running meanwhile; this is the call's own time (waiting on a host import,
/// such as an HTTP answer, is not counted either).
struct Running<F> {
    inner: F,
    busy: Duration,
}

impl<F> Running<F> {
    fn new(inner: F) -> Self {
        Running {
            inner,
            busy: Duration::ZERO,
        }
    }
}

impl<F: std::future::Future + Unpin> std::future::Future for Running<F> {
    type Output = (F::Output, Duration);

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let started = Instant::now();
        let poll = std::pin::Pin::new(&mut self.inner).poll(cx);
        self.busy += started.elapsed();
        let busy = self.busy;
        poll.map(|output| (output, busy))
    }
}

struct CancelOnDrop(Option<tokio::task::AbortHandle>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
        }
    }
}

impl Shared {
    fn compile(&self, wasm: &[u8]) -> Result<Compiled, LoadError> {
        if !wasm.starts_with(b"\0asm") {
            let shown: String = wasm.iter().take(8).map(|b| format!("{b:02x}")).collect();
            return Err(LoadError::NotWasm(format!(
                "it does not start with the WebAssembly magic number (starts with {})",
                if shown.is_empty() {
                    "nothing: the file is empty".to_string()
                } else {
                    shown
                }
            )));
        }
        // Bytes 4..8: version 1 layer 0 is a core module; components use layer 1.
        if wasm.get(4..8) == Some(&[1, 0, 0, 0]) {
            return Err(LoadError::CoreModule);
        }
        let digest_hex = hex::encode(Sha256::digest(wasm));
        let cached = self
            .cache
            .as_ref()
            .and_then(|c| c.load(&self.engine, &digest_hex));
        let from_cache = cached.is_some();
        let component = match cached {
            Some(component) => component,
            None => {
                let component = Component::new(&self.engine, wasm)
                    .map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
                if let Some(cache) = &self.cache {
                    cache.store(&digest_hex, &component);
                }
                component
            }
        };
        let inspection = inspect(&self.engine, &component)?;
        Ok(Compiled {
            digest: format!("sha256:{digest_hex}"),
            inspection,
            from_cache,
            component,
        })
    }
}

/// Turns a failed call into the error that names the limit or the fault.
fn classify(
    error: wasmtime::Error,
    store: &Store<CallState>,
    plugin: &str,
    function: &str,
    fuel: u64,
) -> CallError {
    let plugin = plugin.to_string();
    let function = function.to_string();
    match store.data().limiter.exceeded {
        Some(Exceeded::Memory { limit }) => {
            return CallError::Memory {
                plugin,
                function,
                limit_bytes: limit,
            };
        }
        Some(Exceeded::Table { limit }) => {
            return CallError::Table {
                plugin,
                function,
                limit,
            };
        }
        None => {}
    }
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return CallError::Exit {
            plugin,
            function,
            status: exit.0,
        };
    }
    // What the plugin printed is its own text: escaped before it reaches an error message
    // (and from there the log).
    let stderr = String::from_utf8_lossy(&store.data().stderr.contents()).into_owned();
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => CallError::Cpu {
            plugin,
            function,
            fuel,
        },
        Some(Trap::StackOverflow) => CallError::StackOverflow { plugin, function },
        Some(Trap::UnreachableCodeReached) if stderr.contains("panicked at") => CallError::Panic {
            plugin,
            function,
            message: crate::log::escape(&panic_message(&stderr)).into_owned(),
        },
        Some(trap) => {
            let mut message = trap.to_string();
            if !stderr.trim().is_empty() {
                message = format!("{message}; stderr: {}", crate::log::escape(stderr.trim()));
            }
            CallError::Trap {
                plugin,
                function,
                message,
            }
        }
        None => CallError::Host {
            plugin,
            function,
            message: format!("{error:#}"),
        },
    }
}

/// The panic's location and message from what Rust's panic handler printed, without the
/// backtrace hint.
fn panic_message(stderr: &str) -> String {
    let text = stderr.trim();
    let text = text.split("\nnote: run with").next().unwrap_or(text);
    let text = text
        .find("panicked at ")
        .map(|i| &text[i + "panicked at ".len()..])
        .unwrap_or(text);
    text.replace('\n', " ").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::panic_message;

    #[test]
    fn the_panic_message_keeps_location_and_text_only() {
        let stderr = "\nthread '<unnamed>' panicked at src/lib.rs:12:9:\nboom\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(panic_message(stderr), "src/lib.rs:12:9: boom");
    }
}
