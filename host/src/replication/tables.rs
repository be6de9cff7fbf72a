//! The replication component's schema: its tables and their migrations.

use redb::WriteTransaction;

use crate::storage::meta::MetaResult;
use crate::storage::meta::schema::{Component, Migration};

/// Replication's tables, versioned on their own.
pub const REPLICATION: Component = Component {
    name: "replication",
    current: 2,
    migrations: &[
        Migration {
            from: 0,
            apply: create_v1,
        },
        Migration {
            from: 1,
            apply: add_metadata_versions,
        },
    ],
};

fn create_v1(tx: &WriteTransaction) -> MetaResult<()> {
    super::endpoints::create(tx)?;
    super::policies::create(tx)?;
    super::jobs::create(tx)?;
    Ok(())
}

/// Version 2: the versions of a dual-primary pair's metadata.
fn add_metadata_versions(tx: &WriteTransaction) -> MetaResult<()> {
    super::metadata::create(tx)
}
