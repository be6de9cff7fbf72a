//! Test stores: a redb database in a temporary directory, and a fresh database in a
//! throw-away PostgreSQL server (`berth-test-postgres`, which the end-to-end tests share).

use std::sync::Arc;

pub(crate) use berth_test_postgres::{fresh_database, tls_server};

use super::meta::Metadata;
use super::store::Store;

/// A store over a new redb database; the directory lives as long as the store is used.
pub(crate) fn redb_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let meta = Arc::new(Metadata::open(&dir.path().join("berth.redb")).unwrap());
    (Store::redb(meta).unwrap(), dir)
}

/// A store over a new, empty PostgreSQL database.
pub(crate) fn postgres_store() -> Store {
    Store::postgres(&fresh_database(), 4).unwrap()
}
