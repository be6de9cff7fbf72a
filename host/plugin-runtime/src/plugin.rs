//! A loaded plugin: its compiled, pre-linked component, what it said about itself, and
//! the settings its next call will run under.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

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
