//! Test stores: a redb database in a temporary directory, and a fresh database in a
//! throw-away PostgreSQL server (`berth-test-postgres`, which the end-to-end tests share).

use std::sync::Arc;

pub(crate) use berth_test_postgres::{fresh_database, tls_server};

use super::meta::Metadata;
use super::store::{Store, StoreResult};

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

/// Reads each table of the interface once, but the audit log's (a database of its own on
/// redb): every query's columns exist, on either backend.
pub(crate) fn read_every_table(tx: &dyn crate::storage::store::ReadTx) -> StoreResult<()> {
    tx.plugins().list()?;
    tx.plugins().secret_names()?;
    tx.auth().users()?;
    tx.auth().user_count()?;
    tx.auth().projects()?;
    tx.auth().members("p")?;
    tx.auth().role("p", "u")?;
    tx.auth().robots()?;
    tx.auth().revision()?;
    tx.auth().login_failures("k")?;
    tx.jobs().jobs("k", &Default::default(), 5)?;
    tx.cost().budgets(None)?;
    tx.cost().exchange_rates()?;
    tx.cost().accrual_cursors()?;
    tx.cost().budgets(Some("p"))?;
    tx.cost().budget_alerts("p", "2026-11")?;
    tx.cost().daily_totals(&Default::default())?;
    tx.jobs().tasks(1)?;
    tx.jobs().state("s")?;
    tx.replication().endpoints()?;
    tx.replication().policies()?;
    tx.replication().metadata_versions()?;
    tx.replication().metadata_version("user", "u")?;
    tx.replication().degraded_links()?;
    tx.replication().degraded_link("p", "e")?;
    let scheduling = tx.scheduling();
    scheduling.clusters()?;
    scheduling.cluster("c")?;
    scheduling.machine("m")?;
    scheduling.machine_by_token("p", "t")?;
    scheduling.machines(&Default::default())?;
    scheduling.transitions("m")?;
    scheduling.quota("p")?;
    scheduling.quotas()?;
    scheduling.pool_host("c", "h")?;
    scheduling.pool_hosts("c")?;
    let registry = tx.registry();
    registry.repository("r")?;
    registry.find_manifest("r", "t", true)?;
    registry.repositories(None, 10)?;
    registry.blob_link("r", "d")?;
    registry.blob_link_count("r")?;
    registry.all_blob_links()?;
    registry.manifest("r", "d")?;
    registry.manifest_bytes("r", "d")?;
    registry.manifest_count("r")?;
    registry.all_manifests()?;
    registry.tag("r", "t")?;
    registry.tags("r", Some("a"), 10)?;
    registry.tags_pointing_at("r", "d")?;
    registry.all_tags()?;
    registry.tag_history("r", "t")?;
    registry.tombstone("r", "t")?;
    registry.referrers("r", "d")?;
    registry.upload("u")?;
    registry.uploads()?;
    tx.events().events_after(0, 10)?;
    tx.events().last_event_seq()?;
    tx.events().unsequenced_events()?;
    tx.events().event_cursor("c")?;
    tx.events().event_cursors()?;
    Ok(())
}
