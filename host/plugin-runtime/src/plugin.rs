//! A loaded plugin: its compiled, pre-linked component, what it said about itself, and
//! the settings its next call will run under.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use wasmtime::Store;
use wasmtime::component::InstancePre;

use crate::inspect::Inspection;
use crate::latest::types::PluginInfo;
use crate::state::{CallState, Settings};
use crate::world::Kind;
use crate::{v0_1_0, v0_2_0, v0_3_0};

/// A plugin ready to be called. Cheap to clone; a call in flight holds a clone, so
/// removing a plugin never cuts a call short.
#[derive(Clone)]
pub struct Plugin {
    pub(crate) inner: Arc<PluginInner>,
}

pub(crate) struct PluginInner {
    pub(crate) name: Arc<str>,
    pub(crate) info: PluginInfo,
    pub(crate) digest: String,
    pub(crate) inspection: Inspection,
    pub(crate) pre: WorldPre,
    pub(crate) settings: RwLock<Arc<Settings>>,
    /// Calls started and not yet finished (queued for a slot included).
    pub(crate) in_flight: AtomicUsize,
    pub(crate) stats: StatsCounters,
}

/// What a plugin's finished calls have cost since it was loaded, so an operator can see
/// which plugin is slow or failing, and where the time goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CallStats {
    /// Calls finished, successfully or not.
    pub calls: u64,
    /// Calls that ended in an error: a trap, a limit, a failed host call, a cancellation.
    pub failures: u64,
    /// Time spent in sandboxes: creating the fresh instance, running the call (its own
    /// running time: not other calls that ran on the same threads meanwhile, nor waiting
    /// for a host import's answer) and tearing the instance down, summed over all calls.
    pub sandbox_time: Duration,
    /// Time from each call's start until its caller had the result, summed: waiting for a
    /// free slot and a plugin thread, the sandbox up to the answer, and the hand-over back
    /// (the sandbox's teardown comes after the answer, so it is not in here).
    pub total_time: Duration,
    /// Log events dropped because a call had used up its log budget.
    pub log_events_dropped: u64,
    /// The bytes of those events.
    pub log_bytes_dropped: u64,
}

impl CallStats {
    /// The mean sandbox time of one call, if there was any call.
    pub fn mean_sandbox_time(&self) -> Option<Duration> {
        mean(self.sandbox_time, self.calls)
    }

    /// The mean time from start to result of one call, if there was any call.
    pub fn mean_total_time(&self) -> Option<Duration> {
        mean(self.total_time, self.calls)
    }
}

fn mean(sum: Duration, count: u64) -> Option<Duration> {
    (count > 0).then(|| Duration::from_nanos((sum.as_nanos() / u128::from(count)) as u64))
}

/// The counters behind [`CallStats`]; relaxed atomics, as a snapshot may mix two calls.
#[derive(Default)]
pub(crate) struct StatsCounters {
    calls: AtomicU64,
    failures: AtomicU64,
    sandbox_nanos: AtomicU64,
    total_nanos: AtomicU64,
    log_events_dropped: AtomicU64,
    log_bytes_dropped: AtomicU64,
}

impl StatsCounters {
    pub(crate) fn record(&self, failed: bool, sandbox: Duration, total: Duration) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        self.sandbox_nanos
            .fetch_add(sandbox.as_nanos() as u64, Ordering::Relaxed);
        self.total_nanos
            .fetch_add(total.as_nanos() as u64, Ordering::Relaxed);
    }

    pub(crate) fn record_dropped_logs(&self, events: u64, bytes: u64) {
        if events > 0 {
            self.log_events_dropped.fetch_add(events, Ordering::Relaxed);
            self.log_bytes_dropped.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    fn snapshot(&self) -> CallStats {
        CallStats {
            calls: self.calls.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            sandbox_time: Duration::from_nanos(self.sandbox_nanos.load(Ordering::Relaxed)),
            total_time: Duration::from_nanos(self.total_nanos.load(Ordering::Relaxed)),
            log_events_dropped: self.log_events_dropped.load(Ordering::Relaxed),
            log_bytes_dropped: self.log_bytes_dropped.load(Ordering::Relaxed),
        }
    }
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.inner.name)
            .field("kind", &self.kind())
            .field("digest", &self.inner.digest)
            .finish()
    }
}

impl Plugin {
    /// The name it gave itself.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Name, version and description, as the plugin reported them at load time.
    pub fn info(&self) -> &PluginInfo {
        &self.inner.info
    }

    pub fn kind(&self) -> Kind {
        self.inner.inspection.kind
    }

    /// `sha256:<hex>` of the component's bytes.
    pub fn digest(&self) -> &str {
        &self.inner.digest
    }

    /// Imports, exports, kind and world version.
    pub fn inspection(&self) -> &Inspection {
        &self.inner.inspection
    }

    /// Calls of this plugin running or waiting for a sandbox slot now.
    pub fn calls_in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::Relaxed)
    }

    /// What its finished calls have cost since it was loaded.
    pub fn call_stats(&self) -> CallStats {
        self.inner.stats.snapshot()
    }

    /// The settings the next call starts with.
    pub fn settings(&self) -> Arc<Settings> {
        self.inner.settings.read().expect("settings lock").clone()
    }

    /// Replaces the settings; calls already running keep the ones they started with.
    pub fn set_settings(&self, settings: Settings) {
        *self.inner.settings.write().expect("settings lock") = Arc::new(settings);
    }
}

/// A component linked against one world of one package version's imports, ready to
/// instantiate per call.
pub(crate) enum WorldPre {
    Provider010(v0_1_0::cloud_provider::CloudProviderPre<CallState>),
    Strategy010(v0_1_0::replication_strategy::ReplicationStrategyPre<CallState>),
    Init010(v0_1_0::host_init::HostInitPre<CallState>),
    Provider020(v0_2_0::cloud_provider::CloudProviderPre<CallState>),
    Strategy020(v0_2_0::replication_strategy::ReplicationStrategyPre<CallState>),
    Init020(v0_2_0::host_init::HostInitPre<CallState>),
    Provider030(v0_3_0::cloud_provider::CloudProviderPre<CallState>),
    Strategy030(v0_3_0::replication_strategy::ReplicationStrategyPre<CallState>),
    Init030(v0_3_0::host_init::HostInitPre<CallState>),
}

/// Runs `$body` with `$pre` bound to whichever world and version a [`WorldPre`] holds.
macro_rules! each_pre {
    ($value:expr, $pre:ident => $body:expr) => {
        match $value {
            WorldPre::Provider010($pre) => $body,
            WorldPre::Strategy010($pre) => $body,
            WorldPre::Init010($pre) => $body,
            WorldPre::Provider020($pre) => $body,
            WorldPre::Strategy020($pre) => $body,
            WorldPre::Init020($pre) => $body,
            WorldPre::Provider030($pre) => $body,
            WorldPre::Strategy030($pre) => $body,
            WorldPre::Init030($pre) => $body,
        }
    };
}

impl WorldPre {
    /// Checks `instance_pre` against the bindings of `kind` in package `version`.
    pub(crate) fn new(
        version: &str,
        kind: Kind,
        instance_pre: InstancePre<CallState>,
    ) -> wasmtime::Result<WorldPre> {
        Ok(match (version, kind) {
            (v0_1_0::VERSION, Kind::CloudProvider) => {
                WorldPre::Provider010(v0_1_0::cloud_provider::CloudProviderPre::new(instance_pre)?)
            }
            (v0_1_0::VERSION, Kind::ReplicationStrategy) => WorldPre::Strategy010(
                v0_1_0::replication_strategy::ReplicationStrategyPre::new(instance_pre)?,
            ),
            (v0_1_0::VERSION, Kind::HostInit) => {
                WorldPre::Init010(v0_1_0::host_init::HostInitPre::new(instance_pre)?)
            }
            (v0_2_0::VERSION, Kind::CloudProvider) => {
                WorldPre::Provider020(v0_2_0::cloud_provider::CloudProviderPre::new(instance_pre)?)
            }
            (v0_2_0::VERSION, Kind::ReplicationStrategy) => WorldPre::Strategy020(
                v0_2_0::replication_strategy::ReplicationStrategyPre::new(instance_pre)?,
            ),
            (v0_2_0::VERSION, Kind::HostInit) => {
                WorldPre::Init020(v0_2_0::host_init::HostInitPre::new(instance_pre)?)
            }
            (v0_3_0::VERSION, Kind::CloudProvider) => {
                WorldPre::Provider030(v0_3_0::cloud_provider::CloudProviderPre::new(instance_pre)?)
            }
            (v0_3_0::VERSION, Kind::ReplicationStrategy) => WorldPre::Strategy030(
                v0_3_0::replication_strategy::ReplicationStrategyPre::new(instance_pre)?,
            ),
            (v0_3_0::VERSION, Kind::HostInit) => {
                WorldPre::Init030(v0_3_0::host_init::HostInitPre::new(instance_pre)?)
            }
            (other, _) => wasmtime::bail!("no bindings for berth:plugin@{other}"),
        })
    }

    /// The component linked against its world's imports.
    pub(crate) fn instance_pre(&self) -> &InstancePre<CallState> {
        each_pre!(self, pre => pre.instance_pre())
    }

    /// A fresh instance's `meta.info`, in the newest version's terms.
    pub(crate) async fn info(&self, store: &mut Store<CallState>) -> wasmtime::Result<PluginInfo> {
        each_pre!(self, pre => {
            let world = pre.instantiate_async(&mut *store).await?;
            let info = world.berth_plugin_meta().call_info(&mut *store).await?;
            Ok(PluginInfo {
                name: info.name,
                version: info.version,
                description: info.description,
            })
        })
    }
}
