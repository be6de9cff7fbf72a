//! The embedded backend: every table in the data directory's redb database, one write
//! transaction at a time (redb's single writer), snapshots for reads that never wait.

mod audit;
mod auth;
mod cost;
mod events;
mod group_commit;
mod jobs;
mod plugins;
mod registry;
mod replication;
mod scheduling;

use std::sync::Arc;

use redb::{ReadTransaction, WriteTransaction};

use crate::storage::meta::{Metadata, schema};
use crate::storage::store::{Durability, ReadTx, StoreError, StoreResult, WriteTx};
use crate::storage::tables::audit::{AuditRead, AuditWrite};
use crate::storage::tables::auth::{AuthRead, AuthWrite};
use crate::storage::tables::cost::{CostRead, CostWrite};
use crate::storage::tables::events::{EventsRead, EventsWrite};
use crate::storage::tables::jobs::{JobsRead, JobsWrite};
use crate::storage::tables::plugins::{PluginsRead, PluginsWrite};
use crate::storage::tables::registry::{RegistryRead, RegistryWrite};
use crate::storage::tables::replication::{ReplicationRead, ReplicationWrite};
use crate::storage::tables::scheduling::{SchedulingRead, SchedulingWrite};

/// The components whose tables this backend keeps through the storage interface, each
/// versioned on its own (`storage::meta::schema`).
/// The jobs runner comes before replication, whose queue it takes over, and before the
/// event feed, which takes replication's cursor over from it.
const COMPONENTS: &[&schema::Component] = &[
    &auth::SCHEMA,
    &plugins::SCHEMA,
    &registry::SCHEMA,
    &jobs::SCHEMA,
    &events::SCHEMA,
    &replication::SCHEMA,
    &scheduling::SCHEMA,
    &cost::SCHEMA,
];

/// The redb side of [`crate::storage::store::Store`].
pub struct RedbStore {
    meta: Arc<Metadata>,
    group: group_commit::GroupCommit,
}

/// A redb transaction seen through the table traits.
pub(crate) struct RedbTx<T>(pub(crate) T);

impl RedbStore {
    /// Brings each component's tables in `meta` to this build's schema.
    pub fn open(meta: Arc<Metadata>) -> StoreResult<RedbStore> {
        RedbStore::open_with(meta, COMPONENTS)
    }

    /// The audit log's own database (`audit.redb`), which holds its table alone.
    pub fn open_audit_log(meta: Arc<Metadata>) -> StoreResult<RedbStore> {
        RedbStore::open_with(meta, &[&audit::SCHEMA])
    }

    fn open_with(meta: Arc<Metadata>, components: &[&schema::Component]) -> StoreResult<RedbStore> {
        for component in components {
            schema::prepare(&meta, component)?;
        }
        let group = group_commit::GroupCommit::start(meta.clone())?;
        Ok(RedbStore { meta, group })
    }

    pub fn read<T, E>(&self, f: impl FnOnce(&dyn ReadTx) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let tx = self.meta.read().map_err(StoreError::from)?;
        f(&RedbTx(tx))
    }

    pub fn write<T, E>(
        &self,
        durability: Durability,
        mut f: impl FnMut(&dyn WriteTx) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let durability = match durability {
            Durability::Immediate | Durability::Patient => redb::Durability::Immediate,
            Durability::Lazy => redb::Durability::None,
        };
        let tx = RedbTx(
            self.meta
                .begin_write(durability)
                .map_err(StoreError::from)?,
        );
        // Dropping an uncommitted redb transaction aborts it.
        let out = f(&tx)?;
        tx.0.commit().map_err(backend)?;
        Ok(out)
    }

    /// A write from async code, committed together with the writes queued beside it (one
    /// fsync for them all, or none for lazy writes alone: `group_commit`).
    pub async fn write_grouped<T, E>(
        &self,
        durability: Durability,
        f: impl FnMut(&dyn WriteTx) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.group.write(durability, f).await
    }
}

/// The table accessors of a transaction seen as a read: a snapshot, or a write
/// transaction whose reads see its own writes.
macro_rules! read_accessors {
    () => {
        fn audit(&self) -> &dyn AuditRead {
            self
        }

        fn auth(&self) -> &dyn AuthRead {
            self
        }

        fn cost(&self) -> &dyn CostRead {
            self
        }

        fn events(&self) -> &dyn EventsRead {
            self
        }

        fn jobs(&self) -> &dyn JobsRead {
            self
        }

        fn plugins(&self) -> &dyn PluginsRead {
            self
        }

        fn registry(&self) -> &dyn RegistryRead {
            self
        }

        fn replication(&self) -> &dyn ReplicationRead {
            self
        }

        fn scheduling(&self) -> &dyn SchedulingRead {
            self
        }
    };
}

impl ReadTx for RedbTx<ReadTransaction> {
    read_accessors!();
}

impl ReadTx for RedbTx<WriteTransaction> {
    read_accessors!();
}

impl WriteTx for RedbTx<WriteTransaction> {
    fn audit(&self) -> &dyn AuditWrite {
        self
    }

    fn auth(&self) -> &dyn AuthWrite {
        self
    }

    fn cost(&self) -> &dyn CostWrite {
        self
    }

    fn events(&self) -> &dyn EventsWrite {
        self
    }

    fn jobs(&self) -> &dyn JobsWrite {
        self
    }

    fn plugins(&self) -> &dyn PluginsWrite {
        self
    }

    fn read(&self) -> &dyn ReadTx {
        self
    }

    fn registry(&self) -> &dyn RegistryWrite {
        self
    }

    fn replication(&self) -> &dyn ReplicationWrite {
        self
    }

    fn scheduling(&self) -> &dyn SchedulingWrite {
        self
    }
}

/// Any redb error as the interface's.
pub(crate) fn backend(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Backend(e.into().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every component's migrations, started from each earlier version (the components
    /// before it current, as a start-up prepares them in order), end at the current one
    /// with tables the store can use.
    #[test]
    fn every_component_migrates_from_every_earlier_version() {
        for (position, component) in COMPONENTS.iter().enumerate() {
            for from in 0..component.current {
                let dir = tempfile::tempdir().unwrap();
                let meta = Arc::new(Metadata::open(&dir.path().join("berth.redb")).unwrap());
                for earlier in &COMPONENTS[..position] {
                    schema::prepare(&meta, earlier).unwrap();
                }
                let stopped_at = schema::Component {
                    name: component.name,
                    current: from,
                    migrations: component.migrations,
                };
                schema::prepare(&meta, &stopped_at).unwrap();
                assert_eq!(schema::stored_version(&meta, component.name).unwrap(), from);
                let store = crate::storage::store::Store::redb(meta.clone()).unwrap();
                assert_eq!(
                    schema::stored_version(&meta, component.name).unwrap(),
                    component.current,
                    "{} from {from}",
                    component.name
                );
                store
                    .read_blocking(crate::storage::testing::read_every_table)
                    .unwrap_or_else(|e| panic!("{} from {from}: {e}", component.name));
            }
        }
    }
}
