//! The plugin host: keeps every plugin (the built-ins and those an admin loaded) in the
//! metadata store and the data directory, loads them into the plugin runtime on first
//! use, and carries out the admin API's and CLI's plugin commands.
//!
//! The runtime starts lazily: a registry that never calls a plugin never compiles one,
//! and pays nothing for them in memory.

pub mod builtin;
pub mod secrets;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use berth_plugin_runtime::{
    CallError, CallStats, Endpoint, Inspection, Limits, LoadError, Plugin, Runtime, RuntimeOptions,
    Settings,
};
use serde::{Deserialize, Serialize};

use crate::storage::paths::DataPaths;
use crate::storage::sealing::Sealer;
use crate::storage::store::{Store, StoreError, now_millis};
pub use crate::storage::tables::plugins::{PluginRecord, PluginSource};
use secrets::SecretBox;

/// Largest component `berth plugin load` accepts.
pub const MAX_COMPONENT_BYTES: usize = 64 * 1024 * 1024;

/// What can go wrong, mapped to HTTP statuses at the API's edge.
#[derive(Debug, thiserror::Error)]
pub enum PluginHostError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Refused(#[from] LoadError),
    #[error("{0}")]
    Call(#[from] CallError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("plugin storage: {0}")]
    Io(#[from] std::io::Error),
    #[error("the plugin runtime could not start: {0}")]
    Runtime(String),
}

type Result<T> = std::result::Result<T, PluginHostError>;

/// A plugin as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PluginStatus {
    pub name: String,
    pub record: PluginRecord,
    /// `ready`, or `failed` when the stored component no longer loads (see `error`).
    pub state: String,
    pub error: Option<String>,
    pub inspection: Option<Inspection>,
    /// Functions `berth plugin call` can invoke.
    pub functions: Vec<String>,
    /// Calls running or queued now.
    pub calls_in_flight: usize,
    /// What its finished calls have cost since it was loaded (zero when not loaded).
    pub calls: CallStats,
}

/// A change to one plugin's settings or state; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginUpdate {
    pub enabled: Option<bool>,
    /// New values for some limits.
    pub limits: Option<LimitsUpdate>,
    /// Configuration values to set (a string) or remove (null).
    #[schema(value_type = Option<BTreeMap<String, Option<String>>>)]
    pub config: Option<BTreeMap<String, Option<String>>>,
    /// Endpoints and secrets to grant.
    pub grant: Option<GrantChange>,
    /// Endpoints and secrets to revoke.
    pub revoke: Option<GrantChange>,
}

/// Some of a plugin's limits.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsUpdate {
    pub memory_bytes: Option<u64>,
    pub table_elements: Option<u64>,
    pub fuel: Option<u64>,
    pub wall_time_ms: Option<u64>,
    pub log_events: Option<u64>,
    pub log_bytes: Option<u64>,
}

impl LimitsUpdate {
    /// `base` with the values given here, checked.
    pub fn apply_to(&self, base: Limits) -> Result<Limits> {
        let limits = Limits {
            memory_bytes: self.memory_bytes.unwrap_or(base.memory_bytes),
            table_elements: self.table_elements.unwrap_or(base.table_elements),
            fuel: self.fuel.unwrap_or(base.fuel),
            wall_time_ms: self.wall_time_ms.unwrap_or(base.wall_time_ms),
            log_events: self.log_events.unwrap_or(base.log_events),
            log_bytes: self.log_bytes.unwrap_or(base.log_bytes),
        };
        limits.validate().map_err(PluginHostError::Invalid)?;
        Ok(limits)
    }
}

/// Whether a load may take the place of a loaded plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replace {
    /// A plugin of the same name must not exist.
    No,
    /// Whatever name the component gives itself.
    Any,
    /// The plugin of this name: the component must give itself this name, and describes
    /// itself under that plugin's limits.
    Named(String),
}

/// Endpoints (`https://host[:port]/path-prefix`, `*.` wildcards) and secret names.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantChange {
    #[serde(default)]
    pub endpoints: Vec<String>,
    #[serde(default)]
    pub secrets: Vec<String>,
}

/// How the runtime is sized; from `[plugins]` in the configuration.
#[derive(Debug, Clone)]
pub struct PluginHostOptions {
    pub worker_threads: usize,
    pub max_concurrent_calls: u32,
}

/// The plugin host of one berth.
pub struct PluginHost {
    store: Store,
    paths: DataPaths,
    secrets: Arc<SecretBox>,
    options: PluginHostOptions,
    started: tokio::sync::OnceCell<Started>,
    /// Serialises loads, updates and removals, so record and runtime agree.
    changes: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost").finish_non_exhaustive()
    }
}

struct Started {
    runtime: Runtime,
    loaded: RwLock<BTreeMap<String, Loaded>>,
}

#[derive(Clone)]
enum Loaded {
    Ready(Plugin),
    Failed(String),
}

impl PluginHost {
    /// Starts nothing: the runtime starts on first use. Secrets are sealed by `sealer`.
    pub fn new(
        store: Store,
        paths: DataPaths,
        sealer: Arc<Sealer>,
        options: PluginHostOptions,
    ) -> anyhow::Result<PluginHost> {
        let secrets = Arc::new(SecretBox::new(sealer, store.clone()));
        Ok(PluginHost {
            store,
            paths,
            secrets,
            options,
            started: tokio::sync::OnceCell::new(),
            changes: tokio::sync::Mutex::new(()),
        })
    }

    async fn started(&self) -> Result<&Started> {
        self.started.get_or_try_init(|| self.start()).await
    }

    async fn start(&self) -> Result<Started> {
        let runtime = Runtime::new(RuntimeOptions {
            cache_dir: Some(self.paths.plugin_compiled_dir()),
            worker_threads: self.options.worker_threads,
            max_concurrent_calls: self.options.max_concurrent_calls,
            secrets: self.secrets.clone(),
        })
        .map_err(|e| PluginHostError::Runtime(format!("{e:#}")))?;
        let mut loaded = BTreeMap::new();
        for (name, bytes) in builtin::BUILTINS {
            let stored = self.stored(name).await?;
            let settings = stored
                .as_ref()
                .map(|r| r.settings.clone())
                .unwrap_or_default();
            let compiled = runtime.compile_async(bytes.to_vec()).await?;
            let plugin = runtime.load(compiled, settings).await?;
            if plugin.name() != *name {
                return Err(PluginHostError::Runtime(format!(
                    "built-in {name} calls itself {}",
                    plugin.name()
                )));
            }
            let record = match stored {
                Some(mut record) => {
                    record.digest = plugin.digest().to_string();
                    record.version = plugin.info().version.clone();
                    record.description = plugin.info().description.clone();
                    record.world_version = plugin.inspection().world_version.clone();
                    record
                }
                None => PluginRecord {
                    kind: plugin.kind(),
                    world_version: plugin.inspection().world_version.clone(),
                    version: plugin.info().version.clone(),
                    description: plugin.info().description.clone(),
                    digest: plugin.digest().to_string(),
                    source: PluginSource::Builtin,
                    settings: Settings::default(),
                    enabled: true,
                    loaded_by: "berth".into(),
                    loaded_at: now_millis(),
                },
            };
            self.put(name, &record).await?;
            loaded.insert(name.to_string(), Loaded::Ready(plugin));
        }
        for (name, record) in self.records().await? {
            if record.source == PluginSource::Builtin {
                continue;
            }
            let state = match self.load_stored(&runtime, &record).await {
                Ok(plugin) => Loaded::Ready(plugin),
                Err(e) => {
                    tracing::error!(plugin = name, error = %e, "a stored plugin does not load");
                    Loaded::Failed(e.to_string())
                }
            };
            loaded.insert(name, state);
        }
        tracing::info!(plugins = loaded.len(), "plugin runtime started");
        Ok(Started {
            runtime,
            loaded: RwLock::new(loaded),
        })
    }

    async fn load_stored(&self, runtime: &Runtime, record: &PluginRecord) -> Result<Plugin> {
        let hex = record.digest.trim_start_matches("sha256:");
        let wasm = tokio::fs::read(self.paths.plugin_component(hex)).await?;
        let compiled = runtime.compile_async(wasm).await?;
        if compiled.digest != record.digest {
            return Err(PluginHostError::Invalid(format!(
                "the stored component is {} but the record says {}",
                compiled.digest, record.digest
            )));
        }
        Ok(runtime.load(compiled, record.settings.clone()).await?)
    }

    /// Every plugin, by name.
    pub async fn list(&self) -> Result<Vec<PluginStatus>> {
        let started = self.started().await?;
        let records = self.records().await?;
        Ok(records
            .into_iter()
            .map(|(name, record)| status(started, name, record))
            .collect())
    }

    /// One plugin.
    pub async fn get(&self, name: &str) -> Result<PluginStatus> {
        let started = self.started().await?;
        let record = self.record(name).await?;
        Ok(status(started, name.to_string(), record))
    }

    async fn record(&self, name: &str) -> Result<PluginRecord> {
        self.stored(name)
            .await?
            .ok_or_else(|| PluginHostError::NotFound(format!("no plugin named {name}")))
    }

    async fn stored(&self, name: &str) -> Result<Option<PluginRecord>> {
        let name = name.to_string();
        Ok(self.store.read(move |tx| tx.plugins().get(&name)).await?)
    }

    async fn records(&self) -> Result<Vec<(String, PluginRecord)>> {
        Ok(self.store.read(|tx| tx.plugins().list()).await?)
    }

    async fn put(&self, name: &str, record: &PluginRecord) -> Result<()> {
        let (name, record) = (name.to_string(), record.clone());
        Ok(self
            .store
            .write(move |tx| tx.plugins().put(&name, &record))
            .await?)
    }

    /// Compiles, checks and loads a component, then stores it. `replace` allows a new
    /// component for a plugin of the same name (its settings are kept); `stated` limits
    /// apply to the component's first call (its `info`, which names it) and then, for a
    /// new plugin or where given, to the plugin.
    ///
    /// Compiling and the `info` call run without the lock that orders changes, so a
    /// component that stalls holds up only its own load.
    pub async fn load(
        &self,
        wasm: Vec<u8>,
        source: PluginSource,
        by: &str,
        replace: Replace,
        stated: LimitsUpdate,
    ) -> Result<PluginStatus> {
        if wasm.len() > MAX_COMPONENT_BYTES {
            return Err(PluginHostError::Invalid(format!(
                "component larger than {MAX_COMPONENT_BYTES} bytes"
            )));
        }
        let started = self.started().await?;
        // The limits the first call runs under: the replaced plugin's when it is named,
        // else the defaults; what the admin stated overrides either.
        let base = match &replace {
            Replace::Named(name) => {
                let record = self.record(name).await?;
                if record.source == PluginSource::Builtin {
                    return Err(builtin_conflict(name));
                }
                record.settings.limits
            }
            Replace::No | Replace::Any => Limits::default(),
        };
        let info_limits = stated.apply_to(base)?;
        let compiled = started.runtime.compile_async(wasm.clone()).await?;
        let probe = started
            .runtime
            .load(
                compiled,
                Settings {
                    limits: info_limits,
                    ..Settings::default()
                },
            )
            .await?;
        let name = probe.name().to_string();
        if let Replace::Named(expected) = &replace
            && *expected != name
        {
            return Err(PluginHostError::Conflict(format!(
                "the component calls itself {name}, not {expected}; load it with `--replace={name}` or without a name"
            )));
        }

        let _changes = self.changes.lock().await;
        let existing = self.stored(&name).await?;
        if let Some(existing) = &existing {
            if existing.source == PluginSource::Builtin {
                return Err(builtin_conflict(&name));
            }
            if replace == Replace::No {
                return Err(PluginHostError::Conflict(format!(
                    "a plugin named {name} is loaded already ({}); pass --replace to load this one in its place",
                    existing.digest
                )));
            }
            if existing.kind != probe.kind() {
                return Err(PluginHostError::Conflict(format!(
                    "{name} is a {} plugin; this component is a {}",
                    existing.kind,
                    probe.kind()
                )));
            }
        }
        // A replaced plugin keeps its settings (limits the admin stated now excepted); a
        // new one starts from the defaults with the stated limits.
        let mut settings = existing
            .as_ref()
            .map(|r| r.settings.clone())
            .unwrap_or_default();
        settings.limits = stated.apply_to(settings.limits)?;
        probe.set_settings(settings.clone());
        let hex = probe.digest().trim_start_matches("sha256:").to_string();
        let path = self.paths.plugin_component(&hex);
        tokio::task::spawn_blocking(move || {
            crate::storage::blob::fs::write_file_durably(&path, &wasm, false)
        })
        .await
        .map_err(|e| PluginHostError::Runtime(e.to_string()))??;
        let record = PluginRecord {
            kind: probe.kind(),
            world_version: probe.inspection().world_version.clone(),
            version: probe.info().version.clone(),
            description: probe.info().description.clone(),
            digest: probe.digest().to_string(),
            source,
            settings,
            enabled: existing.as_ref().map(|r| r.enabled).unwrap_or(true),
            loaded_by: by.to_string(),
            loaded_at: now_millis(),
        };
        self.put(&name, &record).await?;
        started
            .loaded
            .write()
            .expect("plugins lock")
            .insert(name.clone(), Loaded::Ready(probe));
        if let Some(old) = existing.filter(|old| old.digest != record.digest) {
            self.forget_component(&old.digest).await?;
        }
        tracing::info!(plugin = name, digest = record.digest, kind = %record.kind, by, "plugin loaded");
        Ok(status(started, name, record))
    }

    /// Applies `update` to the plugin's record and, from its next call, to the plugin.
    pub async fn update(&self, name: &str, update: PluginUpdate) -> Result<PluginStatus> {
        let started = self.started().await?;
        let _changes = self.changes.lock().await;
        let mut record = self.record(name).await?;
        apply(&mut record, update)?;
        self.put(name, &record).await?;
        if let Some(Loaded::Ready(plugin)) = started.loaded.read().expect("plugins lock").get(name)
        {
            plugin.set_settings(record.settings.clone());
        }
        Ok(status(started, name.to_string(), record))
    }

    /// Removes a loaded plugin; calls in flight finish first. Built-ins can only be disabled.
    pub async fn remove(&self, name: &str) -> Result<()> {
        let started = self.started().await?;
        let _changes = self.changes.lock().await;
        let record = self.record(name).await?;
        if record.source == PluginSource::Builtin {
            return Err(PluginHostError::Conflict(format!(
                "{name} is built in and cannot be removed; disable it with `berth plugin disable {name}`"
            )));
        }
        let removed = name.to_string();
        self.store
            .write(move |tx| tx.plugins().remove(&removed))
            .await?;
        started.loaded.write().expect("plugins lock").remove(name);
        self.forget_component(&record.digest).await?;
        tracing::info!(plugin = name, "plugin removed");
        Ok(())
    }

    /// Deletes a component file no record refers to any more.
    async fn forget_component(&self, digest: &str) -> Result<()> {
        let still_used = self
            .records()
            .await?
            .iter()
            .any(|(_, r)| r.digest == digest);
        if !still_used {
            let path = self
                .paths
                .plugin_component(digest.trim_start_matches("sha256:"));
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        Ok(())
    }

    /// An enabled, loaded plugin, for calling.
    pub async fn plugin(&self, name: &str) -> Result<Plugin> {
        let started = self.started().await?;
        let record = self.record(name).await?;
        if !record.enabled {
            return Err(PluginHostError::Conflict(format!(
                "plugin {name} is disabled; enable it with `berth plugin enable {name}`"
            )));
        }
        match started.loaded.read().expect("plugins lock").get(name) {
            Some(Loaded::Ready(plugin)) => Ok(plugin.clone()),
            Some(Loaded::Failed(e)) => Err(PluginHostError::Conflict(format!(
                "plugin {name} failed to load: {e}"
            ))),
            None => Err(PluginHostError::NotFound(format!("no plugin named {name}"))),
        }
    }

    /// Cloud-provider plugin `name`, with the runtime that calls it: the scheduler calls
    /// providers through the runtime's typed provider calls
    /// (`berth_plugin_runtime::provider`), never through JSON.
    pub async fn provider(&self, name: &str) -> Result<(&Runtime, Plugin)> {
        let plugin = self.plugin(name).await?;
        if plugin.kind() != berth_plugin_runtime::Kind::CloudProvider {
            return Err(PluginHostError::Conflict(format!(
                "plugin {name} is a {} plugin, not a cloud provider",
                plugin.kind()
            )));
        }
        Ok((&self.started().await?.runtime, plugin))
    }

    /// Calls `function` of plugin `name` with JSON arguments.
    pub async fn invoke(
        &self,
        name: &str,
        function: &str,
        input: serde_json::Value,
    ) -> Result<serde_json::Value> {
        let plugin = self.plugin(name).await?;
        let started = self.started().await?;
        Ok(started.runtime.invoke(&plugin, function, input).await?)
    }

    /// Asks strategy plugin `name` for a replication plan. The outer error is the call's
    /// (no such plugin, disabled, not a strategy, a trap or limit); the inner one is the
    /// plugin's answer that it cannot plan this request.
    pub async fn plan_replication(
        &self,
        name: &str,
        request: berth_plugin_runtime::latest::strategy::PlanRequest,
    ) -> Result<
        std::result::Result<
            berth_plugin_runtime::latest::strategy::ReplicationPlan,
            berth_plugin_runtime::latest::strategy::PlanError,
        >,
    > {
        let plugin = self.plugin(name).await?;
        let started = self.started().await?;
        Ok(started.runtime.plan_replication(&plugin, request).await?)
    }

    /// Stores (or replaces) a secret's value, sealed.
    pub async fn set_secret(&self, name: &str, value: &str) -> Result<()> {
        check_secret_name(name)?;
        let sealed = self.secrets.seal(name, value);
        let name = name.to_string();
        Ok(self
            .store
            .write(move |tx| tx.plugins().put_secret(&name, &sealed))
            .await?)
    }

    /// Deletes a secret.
    pub async fn remove_secret(&self, name: &str) -> Result<()> {
        let removed = name.to_string();
        let existed = self
            .store
            .write(move |tx| tx.plugins().remove_secret(&removed))
            .await?;
        if !existed {
            return Err(PluginHostError::NotFound(format!("no secret named {name}")));
        }
        Ok(())
    }

    /// The names of the stored secrets (never their values).
    pub async fn secret_names(&self) -> Result<Vec<String>> {
        Ok(self.store.read(|tx| tx.plugins().secret_names()).await?)
    }
}

fn status(started: &Started, name: String, record: PluginRecord) -> PluginStatus {
    let loaded = started
        .loaded
        .read()
        .expect("plugins lock")
        .get(&name)
        .cloned();
    let (state, error, inspection, calls_in_flight, calls) = match loaded {
        Some(Loaded::Ready(plugin)) => (
            "ready",
            None,
            Some(plugin.inspection().clone()),
            plugin.calls_in_flight(),
            plugin.call_stats(),
        ),
        Some(Loaded::Failed(e)) => ("failed", Some(e), None, 0, CallStats::default()),
        None => (
            "failed",
            Some("not loaded".to_string()),
            None,
            0,
            CallStats::default(),
        ),
    };
    let functions = berth_plugin_runtime::calls::functions(record.kind, &record.world_version)
        .iter()
        .map(|f| f.to_string())
        .collect();
    PluginStatus {
        name,
        record,
        state: state.into(),
        error,
        inspection,
        functions,
        calls_in_flight,
        calls,
    }
}

fn apply(record: &mut PluginRecord, update: PluginUpdate) -> Result<()> {
    let settings = &mut record.settings;
    if let Some(enabled) = update.enabled {
        record.enabled = enabled;
    }
    if let Some(l) = update.limits {
        settings.limits = l.apply_to(settings.limits)?;
    }
    for (key, value) in update.config.unwrap_or_default() {
        if key.is_empty() || key.len() > 128 {
            return Err(PluginHostError::Invalid(format!(
                "config key {key:?} must be 1 to 128 characters"
            )));
        }
        match value {
            Some(value) => settings.config.insert(key, value),
            None => settings.config.remove(&key),
        };
    }
    if let Some(grant) = update.grant {
        for text in grant.endpoints {
            let endpoint = Endpoint::parse(&text).map_err(PluginHostError::Invalid)?;
            if !settings.grants.endpoints.contains(&endpoint) {
                settings.grants.endpoints.push(endpoint);
            }
        }
        for name in grant.secrets {
            check_secret_name(&name)?;
            settings.grants.secrets.insert(name);
        }
    }
    if let Some(revoke) = update.revoke {
        let endpoints: BTreeSet<Endpoint> = revoke
            .endpoints
            .iter()
            .map(|t| Endpoint::parse(t).map_err(PluginHostError::Invalid))
            .collect::<Result<_>>()?;
        for endpoint in &endpoints {
            if !settings.grants.endpoints.contains(endpoint) {
                return Err(PluginHostError::NotFound(format!(
                    "{endpoint} is not granted to this plugin"
                )));
            }
        }
        settings.grants.endpoints.retain(|e| !endpoints.contains(e));
        for name in revoke.secrets {
            if !settings.grants.secrets.remove(&name) {
                return Err(PluginHostError::NotFound(format!(
                    "secret {name} is not granted to this plugin"
                )));
            }
        }
    }
    Ok(())
}

fn builtin_conflict(name: &str) -> PluginHostError {
    PluginHostError::Conflict(format!(
        "{name} is a built-in plugin; a loaded plugin cannot take its name"
    ))
}

fn check_secret_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'));
    if ok {
        Ok(())
    } else {
        Err(PluginHostError::Invalid(format!(
            "secret name {name:?} must be 1 to 128 letters, digits, '.', '_', '-' or '/'"
        )))
    }
}
