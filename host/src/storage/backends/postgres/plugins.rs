//! The plugin host's tables in PostgreSQL: a column per field that is looked up or shown,
//! `jsonb` for the nested settings and source.

use postgres::Row;
use postgres::types::Json;

use super::schema::Component;
use super::{PgTx, decode_error, millis, timestamp};
use crate::storage::store::StoreResult;
use crate::storage::tables::plugins::{PluginRecord, PluginSource, PluginsRead, PluginsWrite};

pub(super) const SCHEMA: Component = Component {
    name: "plugins",
    steps: &[r#"
        CREATE TABLE plugins (
            name text COLLATE "C" PRIMARY KEY,
            kind text NOT NULL,
            world_version text NOT NULL,
            version text NOT NULL,
            description text NOT NULL,
            digest text NOT NULL,
            source jsonb NOT NULL,
            settings jsonb NOT NULL,
            enabled boolean NOT NULL,
            loaded_by text NOT NULL,
            loaded_at timestamptz NOT NULL
        );
        CREATE INDEX plugins_by_digest ON plugins (digest);
        CREATE TABLE plugin_secrets (
            name text COLLATE "C" PRIMARY KEY,
            sealed bytea NOT NULL
        );
    "#],
};

macro_rules! columns {
    () => {
        "name, kind, world_version, version, description, digest, source, settings, enabled, loaded_by, loaded_at"
    };
}

fn record(row: &Row) -> StoreResult<(String, PluginRecord)> {
    let kind: String = row.get("kind");
    let Json(source): Json<PluginSource> = row
        .try_get("source")
        .map_err(|e| decode_error("plugins", e))?;
    let Json(settings) = row
        .try_get("settings")
        .map_err(|e| decode_error("plugins", e))?;
    Ok((
        row.get("name"),
        PluginRecord {
            kind: serde_json::from_value(serde_json::Value::String(kind))
                .map_err(|e| decode_error("plugins", e))?,
            world_version: row.get("world_version"),
            version: row.get("version"),
            description: row.get("description"),
            digest: row.get("digest"),
            source,
            settings,
            enabled: row.get("enabled"),
            loaded_by: row.get("loaded_by"),
            loaded_at: millis(row.get("loaded_at")),
        },
    ))
}

impl PluginsRead for PgTx<'_> {
    fn get(&self, name: &str) -> StoreResult<Option<PluginRecord>> {
        const SQL: &str = concat!("SELECT ", columns!(), " FROM plugins WHERE name = $1");
        self.query_opt(SQL, &[&name])?
            .map(|row| record(&row).map(|(_, r)| r))
            .transpose()
    }

    fn list(&self) -> StoreResult<Vec<(String, PluginRecord)>> {
        const SQL: &str = concat!("SELECT ", columns!(), " FROM plugins ORDER BY name");
        self.query(SQL, &[])?.iter().map(record).collect()
    }

    fn secret(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self
            .query_opt(
                "SELECT sealed FROM plugin_secrets WHERE name = $1",
                &[&name],
            )?
            .map(|row| row.get(0)))
    }

    fn secret_names(&self) -> StoreResult<Vec<String>> {
        Ok(self
            .query("SELECT name FROM plugin_secrets ORDER BY name", &[])?
            .iter()
            .map(|row| row.get(0))
            .collect())
    }
}

impl PluginsWrite for PgTx<'_> {
    fn put(&self, name: &str, r: &PluginRecord) -> StoreResult<()> {
        let kind = serde_json::to_value(r.kind).expect("kinds serialize");
        let kind = kind.as_str().expect("a kind is a string");
        self.execute(
            "INSERT INTO plugins (name, kind, world_version, version, description, digest, source, settings, enabled, loaded_by, loaded_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (name) DO UPDATE SET
                 kind = EXCLUDED.kind, world_version = EXCLUDED.world_version,
                 version = EXCLUDED.version, description = EXCLUDED.description,
                 digest = EXCLUDED.digest, source = EXCLUDED.source,
                 settings = EXCLUDED.settings, enabled = EXCLUDED.enabled,
                 loaded_by = EXCLUDED.loaded_by, loaded_at = EXCLUDED.loaded_at",
            &[
                &name,
                &kind,
                &r.world_version,
                &r.version,
                &r.description,
                &r.digest,
                &Json(&r.source),
                &Json(&r.settings),
                &r.enabled,
                &r.loaded_by,
                &timestamp(r.loaded_at),
            ],
        )?;
        Ok(())
    }

    fn remove(&self, name: &str) -> StoreResult<bool> {
        Ok(self.execute("DELETE FROM plugins WHERE name = $1", &[&name])? > 0)
    }

    fn put_secret(&self, name: &str, sealed: &[u8]) -> StoreResult<()> {
        self.execute(
            "INSERT INTO plugin_secrets (name, sealed) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET sealed = EXCLUDED.sealed",
            &[&name, &sealed],
        )?;
        Ok(())
    }

    fn remove_secret(&self, name: &str) -> StoreResult<bool> {
        Ok(self.execute("DELETE FROM plugin_secrets WHERE name = $1", &[&name])? > 0)
    }
}
