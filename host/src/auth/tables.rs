//! The auth component's schema: its tables and their migrations.

use redb::WriteTransaction;

use crate::storage::meta::MetaResult;
use crate::storage::meta::schema::{Component, Migration};

/// Auth's tables, versioned on their own.
pub const AUTH: Component = Component {
    name: "auth",
    current: 1,
    migrations: &[Migration {
        from: 0,
        apply: create_v1,
    }],
};

fn create_v1(tx: &WriteTransaction) -> MetaResult<()> {
    super::users::create(tx)?;
    super::projects::create(tx)?;
    super::members::create(tx)?;
    super::robots::create(tx)?;
    Ok(())
}
