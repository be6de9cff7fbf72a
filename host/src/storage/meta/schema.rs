//! The schema version of the metadata database and the migrations between versions.
//!
//! A new database is created at [`CURRENT_VERSION`]. An older one is migrated step by step
//! in one transaction; a newer one (written by a later berth) is refused rather than
//! misread.

use redb::{ReadableDatabase, TableDefinition, WriteTransaction};

use super::{MetaError, MetaResult, Metadata};

/// The schema this build reads and writes.
pub const CURRENT_VERSION: u64 = 1;

const SCHEMA: TableDefinition<&str, u64> = TableDefinition::new("schema");
const VERSION_KEY: &str = "version";

/// One step: migrates a database at version `from` to `from + 1`.
struct Migration {
    from: u64,
    apply: fn(&WriteTransaction) -> MetaResult<()>,
}

/// Every migration, in order. Version 0 is "empty file": creating the tables is the first step.
const MIGRATIONS: &[Migration] = &[Migration {
    from: 0,
    apply: create_v1_tables,
}];

fn create_v1_tables(tx: &WriteTransaction) -> MetaResult<()> {
    super::repositories::create(tx)?;
    super::blob_links::create(tx)?;
    super::manifests::create(tx)?;
    super::tags::create(tx)?;
    super::referrers::create(tx)?;
    super::uploads::create(tx)?;
    Ok(())
}

/// The version recorded in the database (0 for a new file).
pub fn stored_version(meta: &Metadata) -> MetaResult<u64> {
    let tx = meta.db.begin_read()?;
    let table = match tx.open_table(SCHEMA) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    Ok(table.get(VERSION_KEY)?.map(|v| v.value()).unwrap_or(0))
}

/// Brings the database to [`CURRENT_VERSION`], or explains why it cannot.
pub fn prepare(meta: &Metadata) -> MetaResult<()> {
    let version = stored_version(meta)?;
    if version == CURRENT_VERSION {
        return Ok(());
    }
    if version > CURRENT_VERSION {
        return Err(MetaError::Schema(format!(
            "the metadata database has schema version {version}, written by a newer berth; this berth understands versions up to {CURRENT_VERSION}. Run the newer berth, or restore a backup."
        )));
    }
    meta.write(|tx| -> MetaResult<()> {
        for step in MIGRATIONS.iter().filter(|m| m.from >= version) {
            (step.apply)(tx)?;
            tracing::info!(
                from = step.from,
                to = step.from + 1,
                "migrated metadata schema"
            );
        }
        tx.open_table(SCHEMA)?
            .insert(VERSION_KEY, CURRENT_VERSION)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_database_is_created_at_the_current_version() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Metadata::open(&dir.path().join("m.redb")).unwrap();
        assert_eq!(stored_version(&meta).unwrap(), CURRENT_VERSION);
    }

    #[test]
    fn a_database_from_a_newer_berth_is_refused_with_both_versions_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.redb");
        let meta = Metadata::open(&path).unwrap();
        meta.write(|tx| -> MetaResult<()> {
            tx.open_table(SCHEMA)?
                .insert(VERSION_KEY, CURRENT_VERSION + 1)?;
            Ok(())
        })
        .unwrap();
        drop(meta);
        let err = Metadata::open(&path).unwrap_err().to_string();
        assert!(
            err.contains(&format!("schema version {}", CURRENT_VERSION + 1)),
            "{err}"
        );
        assert!(err.contains(&format!("up to {CURRENT_VERSION}")), "{err}");
    }
}
