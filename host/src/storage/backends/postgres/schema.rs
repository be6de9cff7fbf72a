//! Schema versions of the PostgreSQL database and the migrations between them: per
//! component, as in redb (`storage::meta::schema`), so components evolve apart. Every node
//! that starts migrates under one advisory lock, in one transaction: two nodes starting
//! together migrate once, and a failed migration leaves the previous schema whole.
//!
//! Text keys are `COLLATE "C"`: rows come back in byte order, as redb returns them.

use postgres::Client;

use super::error;
use crate::storage::store::{StoreError, StoreResult};

/// One component's tables: step `i` migrates version `i` to `i + 1`.
#[derive(Debug)]
pub(crate) struct Component {
    pub name: &'static str,
    pub steps: &'static [&'static str],
}

impl Component {
    /// The version this build reads and writes.
    pub fn current(&self) -> i64 {
        self.steps.len() as i64
    }
}

/// Every component this backend keeps, in the order they are prepared.
pub(crate) const COMPONENTS: &[&Component] = &[
    &super::audit::SCHEMA,
    &super::auth::SCHEMA,
    &super::cost::SCHEMA,
    &super::events::SCHEMA,
    &super::jobs::SCHEMA,
    &super::plugins::SCHEMA,
    &super::registry::SCHEMA,
    &super::replication::SCHEMA,
    &super::scheduling::SCHEMA,
];

/// Serialises schema changes between nodes (an arbitrary constant: "berth" in ASCII).
const MIGRATION_LOCK: i64 = 0x0062_6572_7468;

/// Brings every component to this build's version, or explains why it cannot.
pub(crate) fn prepare(client: &mut Client) -> StoreResult<()> {
    prepare_components(client, COMPONENTS)
}

pub(crate) fn prepare_components(
    client: &mut Client,
    components: &[&Component],
) -> StoreResult<()> {
    let mut tx = client.transaction().map_err(error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(error)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS berth_schema (
             component text COLLATE \"C\" PRIMARY KEY,
             version bigint NOT NULL
         )",
    )
    .map_err(error)?;
    for component in components {
        let stored: i64 = tx
            .query_opt(
                "SELECT version FROM berth_schema WHERE component = $1",
                &[&component.name],
            )
            .map_err(error)?
            .map(|row| row.get(0))
            .unwrap_or(0);
        if stored > component.current() {
            return Err(StoreError::Schema(format!(
                "the PostgreSQL database has {} schema version {stored}, written by a newer berth; this berth understands versions up to {}. Run the newer berth, or restore a backup.",
                component.name,
                component.current()
            )));
        }
        if stored == component.current() {
            continue;
        }
        for (from, step) in component.steps.iter().enumerate().skip(stored as usize) {
            tx.batch_execute(step).map_err(|e| {
                StoreError::Schema(format!(
                    "migrating {} from version {from}: {}",
                    component.name,
                    error(e)
                ))
            })?;
            tracing::info!(
                component = component.name,
                from,
                to = from + 1,
                "migrated PostgreSQL schema"
            );
        }
        tx.execute(
            "INSERT INTO berth_schema (component, version) VALUES ($1, $2)
             ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version",
            &[&component.name, &component.current()],
        )
        .map_err(error)?;
    }
    tx.commit().map_err(error)
}

/// The version stored for `component` (0 when it has no tables yet).
#[cfg(test)]
pub(crate) fn stored_version(client: &mut Client, component: &str) -> StoreResult<i64> {
    let exists: bool = client
        .query_one("SELECT to_regclass('berth_schema') IS NOT NULL", &[])
        .map_err(error)?
        .get(0);
    if !exists {
        return Ok(0);
    }
    Ok(client
        .query_opt(
            "SELECT version FROM berth_schema WHERE component = $1",
            &[&component],
        )
        .map_err(error)?
        .map(|row| row.get(0))
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testing::fresh_database;

    fn connect(url: &str) -> Client {
        Client::connect(url, postgres::NoTls).unwrap()
    }

    /// Every component's migrations, started from each earlier version, end at the current
    /// one with tables the store can use.
    #[test]
    fn every_component_migrates_from_every_earlier_version() {
        for component in COMPONENTS {
            for from in 0..component.steps.len() {
                let url = fresh_database();
                let mut client = connect(&url);
                let earlier = Component {
                    name: component.name,
                    steps: &component.steps[..from],
                };
                prepare_components(&mut client, &[&earlier]).unwrap();
                assert_eq!(
                    stored_version(&mut client, component.name).unwrap(),
                    from as i64
                );
                let store = crate::storage::store::Store::postgres(&url, 2).unwrap();
                assert_eq!(
                    stored_version(&mut client, component.name).unwrap(),
                    component.current()
                );
                store
                    .read_blocking(|tx| {
                        tx.audit().page(&Default::default(), 10)?;
                        crate::storage::testing::read_every_table(tx)
                    })
                    .unwrap();
            }
        }
    }

    #[test]
    fn a_database_from_a_newer_berth_is_refused_with_both_versions_named() {
        let url = fresh_database();
        drop(crate::storage::store::Store::postgres(&url, 1).unwrap());
        connect(&url)
            .execute(
                "UPDATE berth_schema SET version = version + 1 WHERE component = 'plugins'",
                &[],
            )
            .unwrap();
        let err = crate::storage::store::Store::postgres(&url, 1)
            .unwrap_err()
            .to_string();
        let current = super::super::plugins::SCHEMA.current();
        assert!(
            err.contains(&format!("plugins schema version {}", current + 1)),
            "{err}"
        );
        assert!(err.contains(&format!("up to {current}")), "{err}");
    }

    /// Nodes starting together migrate once, under the advisory lock.
    #[test]
    fn nodes_starting_together_migrate_once() {
        let url = fresh_database();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| crate::storage::store::Store::postgres(&url, 1).unwrap());
            }
        });
        let mut client = connect(&url);
        for component in COMPONENTS {
            assert_eq!(
                stored_version(&mut client, component.name).unwrap(),
                component.current()
            );
        }
    }
}
