//! Table `plugins`: every plugin the host knows, with where it came from, what it is, and
//! the settings (limits, grants, configuration) and state (enabled) an admin gave it.

use berth_plugin_runtime::{Kind, Settings};
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::storage::meta::schema::{Component, Migration};
use crate::storage::meta::{self, MetaResult, Reader, encode};

const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("plugins");
const SECRETS: TableDefinition<&str, &[u8]> = TableDefinition::new("plugin_secrets");

/// The plugin host's tables, versioned on their own.
pub const PLUGINS: Component = Component {
    name: "plugins",
    current: 1,
    migrations: &[Migration {
        from: 0,
        apply: create_v1,
    }],
};

fn create_v1(tx: &WriteTransaction) -> MetaResult<()> {
    tx.open_table(TABLE)?;
    tx.open_table(SECRETS)?;
    Ok(())
}

/// Where a plugin's component came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Source {
    /// Compiled into this binary.
    Builtin,
    /// Uploaded as a file (the name the client gave, for the record).
    File { filename: Option<String> },
    /// Pulled from a registry by the client; `reference` is pinned by digest.
    Oci { reference: String },
}

/// One stored plugin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PluginRecord {
    pub kind: Kind,
    pub world_version: String,
    pub version: String,
    pub description: String,
    /// `sha256:<hex>` of the component.
    pub digest: String,
    pub source: Source,
    pub settings: Settings,
    pub enabled: bool,
    pub loaded_by: String,
    /// ms since the epoch.
    pub loaded_at: u64,
}

pub fn get(reader: &impl Reader, name: &str) -> MetaResult<Option<PluginRecord>> {
    meta::get_named(reader, TABLE, "plugins", name)
}

pub fn list(reader: &impl Reader) -> MetaResult<Vec<(String, PluginRecord)>> {
    meta::list_named(reader, TABLE, "plugins")
}

pub fn put(tx: &WriteTransaction, name: &str, record: &PluginRecord) -> MetaResult<()> {
    tx.open_table(TABLE)?
        .insert(name, encode(record).as_slice())?;
    Ok(())
}

pub fn remove(tx: &WriteTransaction, name: &str) -> MetaResult<bool> {
    Ok(tx.open_table(TABLE)?.remove(name)?.is_some())
}

/// A sealed secret value (see `secrets.rs`).
pub fn secret(reader: &impl Reader, name: &str) -> MetaResult<Option<Vec<u8>>> {
    Ok(reader.open(SECRETS)?.get(name)?.map(|v| v.value().to_vec()))
}

pub fn secret_names(reader: &impl Reader) -> MetaResult<Vec<String>> {
    let mut out = Vec::new();
    for entry in reader.open(SECRETS)?.iter()? {
        out.push(entry?.0.value().to_string());
    }
    Ok(out)
}

pub fn put_secret(tx: &WriteTransaction, name: &str, sealed: &[u8]) -> MetaResult<()> {
    tx.open_table(SECRETS)?.insert(name, sealed)?;
    Ok(())
}

pub fn remove_secret(tx: &WriteTransaction, name: &str) -> MetaResult<bool> {
    Ok(tx.open_table(SECRETS)?.remove(name)?.is_some())
}
