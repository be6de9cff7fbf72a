//! A loaded plugin: its compiled, pre-linked component, what it said about itself, and
//! the settings its next call will run under.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use wasmtime::Store;

use crate::inspect::Inspection;
use crate::state::{CallState, Settings};
use crate::v0_1_0::types::PluginInfo;
use crate::v0_1_0::{cloud_provider, host_init, replication_strategy};
use crate::world::Kind;

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
    /// Time spent in sandboxes: creating the fresh instance, the call itself and tearing
    /// the instance down, summed over all calls.
    pub sandbox_time: Duration,
    /// Time from each call's start to its result, summed: the sandbox time plus waiting
    /// for a free slot and the hand-over to and from the plugin threads.
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

/// A component linked against one world's imports, ready to instantiate per call.
pub(crate) enum WorldPre {
    Provider(cloud_provider::CloudProviderPre<CallState>),
    Strategy(replication_strategy::ReplicationStrategyPre<CallState>),
    Init(host_init::HostInitPre<CallState>),
}

/// One call's instance.
pub(crate) enum WorldInstance {
    Provider(cloud_provider::CloudProvider),
    Strategy(replication_strategy::ReplicationStrategy),
    Init(host_init::HostInit),
}

impl WorldPre {
    /// The component linked against its world's imports.
    pub(crate) fn instance_pre(&self) -> &wasmtime::component::InstancePre<CallState> {
        match self {
            WorldPre::Provider(pre) => pre.instance_pre(),
            WorldPre::Strategy(pre) => pre.instance_pre(),
            WorldPre::Init(pre) => pre.instance_pre(),
        }
    }

    pub(crate) async fn instantiate(
        &self,
        store: &mut Store<CallState>,
    ) -> wasmtime::Result<WorldInstance> {
        Ok(match self {
            WorldPre::Provider(pre) => WorldInstance::Provider(pre.instantiate_async(store).await?),
            WorldPre::Strategy(pre) => WorldInstance::Strategy(pre.instantiate_async(store).await?),
            WorldPre::Init(pre) => WorldInstance::Init(pre.instantiate_async(store).await?),
        })
    }
}

impl WorldInstance {
    pub(crate) async fn info(&self, store: &mut Store<CallState>) -> wasmtime::Result<PluginInfo> {
        match self {
            WorldInstance::Provider(w) => w.berth_plugin_meta().call_info(store).await,
            WorldInstance::Strategy(w) => w.berth_plugin_meta().call_info(store).await,
            WorldInstance::Init(w) => w.berth_plugin_meta().call_info(store).await,
        }
    }
}
