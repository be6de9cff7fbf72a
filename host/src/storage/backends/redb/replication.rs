//! Replication's tables in redb: endpoints and policies as JSON records by name, metadata
//! versions and degraded links keyed by pairs. Its own job queue of versions 1 and 2 was taken over
//! by the shared jobs runner (`jobs.rs`), and version 3 drops it.

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::{RedbTx, backend};
use crate::storage::meta::schema::{Component, Migration};
use crate::storage::meta::{self, MetaResult, Reader, decode, encode};
use crate::storage::store::StoreResult;
use crate::storage::tables::replication::{
    DegradedLink, EndpointRecord, MetadataVersion, PolicyRecord, ReplicationRead, ReplicationWrite,
};

const ENDPOINTS: TableDefinition<&str, &[u8]> = TableDefinition::new("replication_endpoints");
const POLICIES: TableDefinition<&str, &[u8]> = TableDefinition::new("replication_policies");
const VERSIONS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("replication_metadata_versions");
const DEGRADED: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("replication_degraded");

/// Replication's tables, versioned on their own (the same component and versions as
/// before they moved behind the storage interface).
pub(super) const SCHEMA: Component = Component {
    name: "replication",
    current: 4,
    migrations: &[
        Migration {
            from: 0,
            apply: create_v1,
        },
        Migration {
            from: 1,
            apply: add_metadata_versions,
        },
        Migration {
            from: 2,
            apply: drop_own_queue,
        },
        Migration {
            from: 3,
            apply: add_degraded,
        },
    ],
};

fn create_v1(tx: &WriteTransaction) -> MetaResult<()> {
    tx.open_table(ENDPOINTS)?;
    tx.open_table(POLICIES)?;
    // Version 1 created the job queue here too; a database created since never uses it.
    Ok(())
}

/// Version 2: the versions of a dual-primary pair's metadata.
fn add_metadata_versions(tx: &WriteTransaction) -> MetaResult<()> {
    tx.open_table(VERSIONS)?;
    Ok(())
}

/// Version 3: the job queue belongs to the jobs runner, which converted its rows when it
/// was prepared (before this component).
fn drop_own_queue(tx: &WriteTransaction) -> MetaResult<()> {
    use super::jobs::{OLD_JOBS, OLD_STATE, OLD_TASKS};
    tx.delete_table(OLD_JOBS)?;
    tx.delete_table(OLD_TASKS)?;
    tx.delete_table(OLD_STATE)?;
    Ok(())
}

/// Version 4: degraded sync links, which were each process's own before.
fn add_degraded(tx: &WriteTransaction) -> MetaResult<()> {
    tx.open_table(DEGRADED)?;
    Ok(())
}

impl<T: Reader> ReplicationRead for RedbTx<T> {
    fn endpoint(&self, name: &str) -> StoreResult<Option<EndpointRecord>> {
        Ok(meta::get_named(
            &self.0,
            ENDPOINTS,
            "replication_endpoints",
            name,
        )?)
    }

    fn endpoints(&self) -> StoreResult<Vec<EndpointRecord>> {
        let named: Vec<(String, EndpointRecord)> =
            meta::list_named(&self.0, ENDPOINTS, "replication_endpoints")?;
        Ok(named.into_iter().map(|(_, r)| r).collect())
    }

    fn policy(&self, name: &str) -> StoreResult<Option<PolicyRecord>> {
        Ok(meta::get_named(
            &self.0,
            POLICIES,
            "replication_policies",
            name,
        )?)
    }

    fn policies(&self) -> StoreResult<Vec<PolicyRecord>> {
        let named: Vec<(String, PolicyRecord)> =
            meta::list_named(&self.0, POLICIES, "replication_policies")?;
        Ok(named.into_iter().map(|(_, r)| r).collect())
    }

    fn metadata_version(&self, kind: &str, key: &str) -> StoreResult<Option<MetadataVersion>> {
        match self.0.open(VERSIONS)?.get((kind, key)).map_err(backend)? {
            Some(v) => Ok(Some(decode("replication_metadata_versions", v.value())?)),
            None => Ok(None),
        }
    }

    fn metadata_versions(&self) -> StoreResult<Vec<(String, String, MetadataVersion)>> {
        let mut out = Vec::new();
        for entry in self.0.open(VERSIONS)?.iter().map_err(backend)? {
            let (k, v) = entry.map_err(backend)?;
            let (kind, key) = k.value();
            out.push((
                kind.to_owned(),
                key.to_owned(),
                decode("replication_metadata_versions", v.value())?,
            ));
        }
        Ok(out)
    }

    fn degraded_link(&self, policy: &str, endpoint: &str) -> StoreResult<Option<DegradedLink>> {
        match self
            .0
            .open(DEGRADED)?
            .get((policy, endpoint))
            .map_err(backend)?
        {
            Some(v) => Ok(Some(decode("replication_degraded", v.value())?)),
            None => Ok(None),
        }
    }

    fn degraded_links(&self) -> StoreResult<Vec<DegradedLink>> {
        let mut out = Vec::new();
        for entry in self.0.open(DEGRADED)?.iter().map_err(backend)? {
            let (_, v) = entry.map_err(backend)?;
            out.push(decode("replication_degraded", v.value())?);
        }
        Ok(out)
    }
}

impl ReplicationWrite for RedbTx<WriteTransaction> {
    fn put_endpoint(&self, record: &EndpointRecord) -> StoreResult<()> {
        self.0
            .open_table(ENDPOINTS)
            .map_err(backend)?
            .insert(record.name.as_str(), encode(record).as_slice())
            .map_err(backend)?;
        Ok(())
    }

    fn remove_endpoint(&self, name: &str) -> StoreResult<bool> {
        Ok(self
            .0
            .open_table(ENDPOINTS)
            .map_err(backend)?
            .remove(name)
            .map_err(backend)?
            .is_some())
    }

    fn put_policy(&self, record: &PolicyRecord) -> StoreResult<()> {
        self.0
            .open_table(POLICIES)
            .map_err(backend)?
            .insert(record.name.as_str(), encode(record).as_slice())
            .map_err(backend)?;
        Ok(())
    }

    fn remove_policy(&self, name: &str) -> StoreResult<bool> {
        Ok(self
            .0
            .open_table(POLICIES)
            .map_err(backend)?
            .remove(name)
            .map_err(backend)?
            .is_some())
    }

    fn put_metadata_version(
        &self,
        kind: &str,
        key: &str,
        version: &MetadataVersion,
    ) -> StoreResult<()> {
        self.0
            .open_table(VERSIONS)
            .map_err(backend)?
            .insert((kind, key), encode(version).as_slice())
            .map_err(backend)?;
        Ok(())
    }

    fn put_degraded_link(&self, link: &DegradedLink) -> StoreResult<()> {
        self.0
            .open_table(DEGRADED)
            .map_err(backend)?
            .insert(
                (link.policy.as_str(), link.endpoint.as_str()),
                encode(link).as_slice(),
            )
            .map_err(backend)?;
        Ok(())
    }

    fn remove_degraded_link(&self, policy: &str, endpoint: &str) -> StoreResult<bool> {
        Ok(self
            .0
            .open_table(DEGRADED)
            .map_err(backend)?
            .remove((policy, endpoint))
            .map_err(backend)?
            .is_some())
    }
}
