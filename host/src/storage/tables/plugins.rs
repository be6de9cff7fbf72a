//! Tables of the plugin host (`host/src/plugins/`): `plugins`, every plugin it knows with
//! where it came from and the settings and state an admin gave it, and `plugin_secrets`,
//! sealed values that plugins are granted by name.

use berth_plugin_runtime::{Kind, Settings};
use serde::{Deserialize, Serialize};

use crate::storage::store::StoreResult;

/// Where a plugin's component came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum PluginSource {
    /// Compiled into this binary.
    Builtin,
    /// Uploaded as a file (the name the client gave, for the record).
    File { filename: Option<String> },
    /// Pulled from a registry by the client; `reference` is pinned by digest.
    Oci { reference: String },
}

/// One stored plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginRecord {
    pub kind: Kind,
    pub world_version: String,
    pub version: String,
    pub description: String,
    /// `sha256:<hex>` of the component.
    pub digest: String,
    pub source: PluginSource,
    pub settings: Settings,
    pub enabled: bool,
    pub loaded_by: String,
    /// ms since the epoch.
    pub loaded_at: u64,
}

/// Reads of the plugin host's tables.
pub trait PluginsRead {
    /// The plugin named `name`.
    fn get(&self, name: &str) -> StoreResult<Option<PluginRecord>>;
    /// Every plugin with its name, in name order.
    fn list(&self) -> StoreResult<Vec<(String, PluginRecord)>>;
    /// The sealed value stored as secret `name`.
    fn secret(&self, name: &str) -> StoreResult<Option<Vec<u8>>>;
    /// The names of every secret, in order.
    fn secret_names(&self) -> StoreResult<Vec<String>>;
}

/// Writes of the plugin host's tables.
pub trait PluginsWrite: PluginsRead {
    /// Stores `record` as plugin `name`, replacing what was there.
    fn put(&self, name: &str, record: &PluginRecord) -> StoreResult<()>;
    /// Removes plugin `name`; false if there was none.
    fn remove(&self, name: &str) -> StoreResult<bool>;
    /// Stores a sealed secret value under `name`, replacing what was there.
    fn put_secret(&self, name: &str, sealed: &[u8]) -> StoreResult<()>;
    /// Removes secret `name`; false if there was none.
    fn remove_secret(&self, name: &str) -> StoreResult<bool>;
}
