//! Schema versions of the metadata database and the migrations between them.
//!
//! Each component that owns tables (the registry's storage, auth, …) has its own version
//! and its own list of migrations, so a component can evolve its tables without the others
//! knowing. A new database starts every component at version 0 ("no tables") and migrates
//! up; a component stored at a newer version than this build knows is refused rather than
//! misread.

use redb::{ReadableDatabase, TableDefinition, WriteTransaction};

use super::{MetaError, MetaResult, Metadata};

const SCHEMA: TableDefinition<&str, u64> = TableDefinition::new("schema");

/// One step: migrates a component at version `from` to `from + 1`.
#[derive(Debug)]
pub struct Migration {
    /// The version this step starts from.
    pub from: u64,
    /// The step itself, run inside the migration's write transaction.
    pub apply: fn(&WriteTransaction) -> MetaResult<()>,
}

/// A component's schema: its name, the version this build writes, and how to get there.
#[derive(Debug)]
pub struct Component {
    /// Key in the schema table, e.g. `registry`.
    pub name: &'static str,
    /// The version this build reads and writes.
    pub current: u64,
    /// Every step from 0 to `current`, in order.
    pub migrations: &'static [Migration],
}

/// The version recorded for `component` (0 when it has no tables yet).
pub fn stored_version(meta: &Metadata, component: &str) -> MetaResult<u64> {
    let tx = meta.db.begin_read()?;
    let table = match tx.open_table(SCHEMA) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    Ok(table.get(component)?.map(|v| v.value()).unwrap_or(0))
}

/// Brings `component` to its current version, or explains why it cannot.
pub fn prepare(meta: &Metadata, component: &Component) -> MetaResult<()> {
    let version = stored_version(meta, component.name)?;
    if version == component.current {
        return Ok(());
    }
    if version > component.current {
        return Err(MetaError::Schema(format!(
            "the metadata database has {} schema version {version}, written by a newer berth; this berth understands versions up to {}. Run the newer berth, or restore a backup.",
            component.name, component.current
        )));
    }
    meta.write(|tx| -> MetaResult<()> {
        for step in component
            .migrations
            .iter()
            .filter(|m| m.from >= version && m.from < component.current)
        {
            (step.apply)(tx)?;
            tracing::info!(
                component = component.name,
                from = step.from,
                to = step.from + 1,
                "migrated metadata schema"
            );
        }
        tx.open_table(SCHEMA)?
            .insert(component.name, component.current)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create_probe(tx: &WriteTransaction) -> MetaResult<()> {
        tx.open_table(TableDefinition::<&str, u64>::new("probe"))?;
        Ok(())
    }

    const PROBE: Component = Component {
        name: "probe",
        current: 1,
        migrations: &[Migration {
            from: 0,
            apply: create_probe,
        }],
    };

    #[test]
    fn a_new_database_is_created_at_the_current_version() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Metadata::open(&dir.path().join("m.redb")).unwrap();
        prepare(&meta, &PROBE).unwrap();
        assert_eq!(stored_version(&meta, "probe").unwrap(), PROBE.current);
    }

    #[test]
    fn a_database_from_a_newer_berth_is_refused_with_both_versions_named() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Metadata::open(&dir.path().join("m.redb")).unwrap();
        meta.write(|tx| -> MetaResult<()> {
            tx.open_table(SCHEMA)?.insert("probe", PROBE.current + 1)?;
            Ok(())
        })
        .unwrap();
        let err = prepare(&meta, &PROBE).unwrap_err().to_string();
        assert!(
            err.contains(&format!("probe schema version {}", PROBE.current + 1)),
            "{err}"
        );
        assert!(err.contains(&format!("up to {}", PROBE.current)), "{err}");
    }

    #[test]
    fn migrations_run_in_order_from_the_stored_version() {
        fn step1(tx: &WriteTransaction) -> MetaResult<()> {
            tx.open_table(TableDefinition::<&str, u64>::new("probe"))?
                .insert("v", 1)?;
            Ok(())
        }
        fn step2(tx: &WriteTransaction) -> MetaResult<()> {
            use redb::ReadableTable;
            let mut t = tx.open_table(TableDefinition::<&str, u64>::new("probe"))?;
            let v = t.get("v")?.map(|v| v.value()).unwrap_or(0);
            t.insert("v", v * 10 + 2)?;
            Ok(())
        }
        const V1: Component = Component {
            name: "probe",
            current: 1,
            migrations: &[Migration {
                from: 0,
                apply: step1,
            }],
        };
        const V2: Component = Component {
            name: "probe",
            current: 2,
            migrations: &[
                Migration {
                    from: 0,
                    apply: step1,
                },
                Migration {
                    from: 1,
                    apply: step2,
                },
            ],
        };
        let dir = tempfile::tempdir().unwrap();
        let meta = Metadata::open(&dir.path().join("m.redb")).unwrap();
        prepare(&meta, &V1).unwrap();
        prepare(&meta, &V2).unwrap();
        prepare(&meta, &V2).unwrap(); // idempotent
        assert_eq!(stored_version(&meta, "probe").unwrap(), 2);
        let tx = meta.read().unwrap();
        let v = tx
            .open_table(TableDefinition::<&str, u64>::new("probe"))
            .unwrap()
            .get("v")
            .unwrap()
            .unwrap()
            .value();
        assert_eq!(v, 12, "step 1 then step 2, each once");
    }
}
