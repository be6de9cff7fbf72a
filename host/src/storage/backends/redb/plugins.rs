//! The plugin host's tables in redb: records by name, encoded as JSON.

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::{RedbTx, backend};
use crate::storage::meta::schema::{Component, Migration};
use crate::storage::meta::{self, MetaResult, Reader, encode};
use crate::storage::store::StoreResult;
use crate::storage::tables::plugins::{PluginRecord, PluginsRead, PluginsWrite};

const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("plugins");
const SECRETS: TableDefinition<&str, &[u8]> = TableDefinition::new("plugin_secrets");

/// The plugin host's tables, versioned on their own.
pub(super) const SCHEMA: Component = Component {
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

impl<T: Reader> PluginsRead for RedbTx<T> {
    fn get(&self, name: &str) -> StoreResult<Option<PluginRecord>> {
        Ok(meta::get_named(&self.0, TABLE, "plugins", name)?)
    }

    fn list(&self) -> StoreResult<Vec<(String, PluginRecord)>> {
        Ok(meta::list_named(&self.0, TABLE, "plugins")?)
    }

    fn secret(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        let table = self.0.open(SECRETS)?;
        Ok(table
            .get(name)
            .map_err(backend)?
            .map(|v| v.value().to_vec()))
    }

    fn secret_names(&self) -> StoreResult<Vec<String>> {
        let mut out = Vec::new();
        for entry in self.0.open(SECRETS)?.iter().map_err(backend)? {
            out.push(entry.map_err(backend)?.0.value().to_string());
        }
        Ok(out)
    }
}

impl PluginsWrite for RedbTx<WriteTransaction> {
    fn put(&self, name: &str, record: &PluginRecord) -> StoreResult<()> {
        let mut table = self.0.open_table(TABLE).map_err(backend)?;
        table
            .insert(name, encode(record).as_slice())
            .map_err(backend)?;
        Ok(())
    }

    fn remove(&self, name: &str) -> StoreResult<bool> {
        let mut table = self.0.open_table(TABLE).map_err(backend)?;
        Ok(table.remove(name).map_err(backend)?.is_some())
    }

    fn put_secret(&self, name: &str, sealed: &[u8]) -> StoreResult<()> {
        let mut table = self.0.open_table(SECRETS).map_err(backend)?;
        table.insert(name, sealed).map_err(backend)?;
        Ok(())
    }

    fn remove_secret(&self, name: &str) -> StoreResult<bool> {
        let mut table = self.0.open_table(SECRETS).map_err(backend)?;
        Ok(table.remove(name).map_err(backend)?.is_some())
    }
}
