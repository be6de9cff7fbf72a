//! The data of one call's store: the plugin's settings as they were when the call began,
//! an empty WASI context, the limiter, and what the host imports need.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::grants::Grants;
use crate::limits::{Limiter, Limits};
use crate::log::LogBudget;

/// How much of a plugin's stderr (a panic message, usually) is kept for the error report.
pub(crate) const STDERR_CAPTURE: usize = 8 * 1024;

/// What an admin set for one plugin. A change takes effect from the next call.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub limits: Limits,
    pub grants: Grants,
    /// The plugin's own configuration, read through `host.config`.
    pub config: BTreeMap<String, String>,
}

/// Where granted secrets' values come from; the embedding host stores them.
pub trait SecretSource: Send + Sync + 'static {
    /// The value stored under `name`, if any.
    fn secret(&self, name: &str) -> Option<String>;
}

/// A source with no secrets, for hosts and tests that grant none.
#[derive(Debug, Default)]
pub struct NoSecrets;

impl SecretSource for NoSecrets {
    fn secret(&self, _name: &str) -> Option<String> {
        None
    }
}

/// What one call may reach beyond the plugin's own grants: for a provider call about a
/// cluster, the cluster's endpoint and its credentials. It lives as long as the call, so
/// a plugin reaches one cluster's endpoint and secrets only while serving that cluster.
#[derive(Clone, Default)]
pub struct CallScope {
    /// Endpoints granted for this call only.
    pub grants: Grants,
    /// Secrets handed out for this call only, by name.
    pub secrets: BTreeMap<String, String>,
}

impl std::fmt::Debug for CallScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets' values.
        f.debug_struct("CallScope")
            .field("grants", &self.grants)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Services a call's host imports use, shared by every call.
pub(crate) struct HostServices {
    pub(crate) http: reqwest::Client,
    pub(crate) secrets: Arc<dyn SecretSource>,
    /// The origin of `host.monotonic-now`.
    pub(crate) epoch: Instant,
}

pub(crate) struct CallState {
    pub(crate) plugin: Arc<str>,
    pub(crate) settings: Arc<Settings>,
    /// What this call alone may reach, if anything.
    pub(crate) scope: Option<Arc<CallScope>>,
    pub(crate) services: Arc<HostServices>,
    pub(crate) limiter: Limiter,
    pub(crate) log_budget: LogBudget,
    pub(crate) stderr: MemoryOutputPipe,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl CallState {
    pub(crate) fn new(
        plugin: Arc<str>,
        settings: Arc<Settings>,
        scope: Option<Arc<CallScope>>,
        services: Arc<HostServices>,
    ) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE);
        // The sandbox's own WASI: no arguments, environment, files, sockets or name
        // lookups, and clocks that read zero. A wasm32-wasip2 guest imports these
        // interfaces whether it uses them or not; the `host` interface is the real one.
        let wasi = WasiCtx::builder()
            .stderr(stderr.clone())
            .wall_clock(ZeroClock)
            .monotonic_clock(ZeroClock)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let limiter = Limiter::new(settings.limits);
        let log_budget = LogBudget::new(&settings.limits);
        CallState {
            plugin,
            settings,
            scope,
            services,
            limiter,
            log_budget,
            stderr,
            wasi,
            table: ResourceTable::new(),
        }
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// WASI's clocks inside the sandbox: always zero, so time reaches a plugin only through
/// the `host` interface.
struct ZeroClock;

impl wasmtime_wasi::HostWallClock for ZeroClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1)
    }
    fn now(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for ZeroClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}
