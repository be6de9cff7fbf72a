//! Scheduling's tables in redb: clusters, machines and quotas as JSON records by name;
//! a machine's transitions keyed by `(machine, seq)`; pool hosts by `(cluster, name)`;
//! and indexes of machines written with each machine: by `(project, client token)`, and
//! by state, `(project, state)` and `(cluster, state)` (version 2), so that what runs on
//! every create and every engine round — a project's quota use, the draining machines,
//! a cluster's living machines — reads the machines it names, not every machine kept.

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::{RedbTx, backend};
use crate::storage::meta::schema::{Component, Migration};
use crate::storage::meta::{self, MetaResult, Reader, decode, encode};
use crate::storage::store::StoreResult;
use crate::storage::tables::scheduling::{
    ClusterRecord, MachineFilter, MachineRecord, PoolHostRecord, QuotaRecord, SchedulingRead,
    SchedulingWrite, TransitionRecord,
};

const CLUSTERS: TableDefinition<&str, &[u8]> = TableDefinition::new("clusters");
const MACHINES: TableDefinition<&str, &[u8]> = TableDefinition::new("machines");
const MACHINES_BY_TOKEN: TableDefinition<(&str, &str), &str> =
    TableDefinition::new("machines_by_token");
const TRANSITIONS: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("machine_transitions");
const QUOTAS: TableDefinition<&str, &[u8]> = TableDefinition::new("quotas");
/// `(state, id)` of every machine.
const BY_STATE: TableDefinition<(&str, &str), ()> = TableDefinition::new("machines_by_state");
/// `(project, state, id)` of every machine.
const BY_PROJECT: TableDefinition<(&str, &str, &str), ()> =
    TableDefinition::new("machines_by_project");
/// `(cluster, state, id)` of every machine.
const BY_CLUSTER: TableDefinition<(&str, &str, &str), ()> =
    TableDefinition::new("machines_by_cluster");
const POOL_HOSTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("pool_hosts");

/// Scheduling's tables, versioned on their own.
pub(super) const SCHEMA: Component = Component {
    name: "scheduling",
    current: 2,
    migrations: &[
        Migration {
            from: 0,
            apply: create_v1,
        },
        Migration {
            from: 1,
            apply: index_v2,
        },
    ],
};

fn create_v1(tx: &WriteTransaction) -> MetaResult<()> {
    tx.open_table(CLUSTERS)?;
    tx.open_table(MACHINES)?;
    tx.open_table(MACHINES_BY_TOKEN)?;
    tx.open_table(TRANSITIONS)?;
    tx.open_table(QUOTAS)?;
    tx.open_table(POOL_HOSTS)?;
    Ok(())
}

/// Indexes every machine kept by state, project and cluster.
fn index_v2(tx: &WriteTransaction) -> MetaResult<()> {
    // Made here even when no machine is kept yet: reads open them.
    tx.open_table(BY_STATE)?;
    tx.open_table(BY_PROJECT)?;
    tx.open_table(BY_CLUSTER)?;
    let machines = tx.open_table(MACHINES)?;
    for entry in machines.iter()? {
        let (_, v) = entry?;
        let machine: MachineRecord = decode("machines", v.value())?;
        index_machine(tx, &machine, true)?;
    }
    Ok(())
}

/// Adds (`present`) or removes machine `m`'s entries in the state, project and cluster
/// indexes.
fn index_machine(
    tx: &WriteTransaction,
    m: &MachineRecord,
    present: bool,
) -> Result<(), redb::Error> {
    let state = m.state.as_str();
    let id = m.id.as_str();
    let mut by_state = tx.open_table(BY_STATE)?;
    let mut by_project = tx.open_table(BY_PROJECT)?;
    let mut by_cluster = tx.open_table(BY_CLUSTER)?;
    if present {
        by_state.insert((state, id), ())?;
        by_project.insert((m.project.as_str(), state, id), ())?;
        by_cluster.insert((m.cluster.as_str(), state, id), ())?;
    } else {
        by_state.remove((state, id))?;
        by_project.remove((m.project.as_str(), state, id))?;
        by_cluster.remove((m.cluster.as_str(), state, id))?;
    }
    Ok(())
}

/// The ids in `table` under `(first, state)` for each of `states`, or under `first` in
/// every state when `states` is empty.
fn ids_under<'k, R: Reader>(
    tx: &R,
    table: TableDefinition<(&'static str, &'static str, &'static str), ()>,
    first: &'k str,
    states: &[&'k str],
) -> StoreResult<Vec<String>> {
    let table = tx.open(table)?;
    let mut ids = Vec::new();
    let mut take = |state: Option<&str>| -> StoreResult<()> {
        let range = table
            .range((first, state.unwrap_or(""), "")..)
            .map_err(backend)?;
        for entry in range {
            let (k, _) = entry.map_err(backend)?;
            let (f, s, id) = k.value();
            if f != first || state.is_some_and(|state| s != state) {
                break;
            }
            ids.push(id.to_owned());
        }
        Ok(())
    };
    if states.is_empty() {
        take(None)?;
    } else {
        for state in states {
            take(Some(state))?;
        }
    }
    Ok(ids)
}

impl<T: Reader> SchedulingRead for RedbTx<T> {
    fn cluster(&self, name: &str) -> StoreResult<Option<ClusterRecord>> {
        Ok(meta::get_named(&self.0, CLUSTERS, "clusters", name)?)
    }

    fn clusters(&self) -> StoreResult<Vec<ClusterRecord>> {
        let named: Vec<(String, ClusterRecord)> = meta::list_named(&self.0, CLUSTERS, "clusters")?;
        Ok(named.into_iter().map(|(_, r)| r).collect())
    }

    fn machine(&self, id: &str) -> StoreResult<Option<MachineRecord>> {
        Ok(meta::get_named(&self.0, MACHINES, "machines", id)?)
    }

    fn machine_by_token(
        &self,
        project: &str,
        client_token: &str,
    ) -> StoreResult<Option<MachineRecord>> {
        let id = self
            .0
            .open(MACHINES_BY_TOKEN)?
            .get((project, client_token))
            .map_err(backend)?
            .map(|v| v.value().to_owned());
        match id {
            Some(id) => self.machine(&id),
            None => Ok(None),
        }
    }

    fn machines(&self, filter: &MachineFilter) -> StoreResult<Vec<MachineRecord>> {
        let states: Vec<&str> = filter.states.iter().map(|s| s.as_str()).collect();
        // The narrowest index the filter allows names the candidates.
        let mut ids: Vec<String> = if let Some(project) = &filter.project {
            ids_under(&self.0, BY_PROJECT, project, &states)?
        } else if let Some(cluster) = &filter.cluster {
            ids_under(&self.0, BY_CLUSTER, cluster, &states)?
        } else if !states.is_empty() {
            let table = self.0.open(BY_STATE)?;
            let mut ids = Vec::new();
            for state in &states {
                for entry in table.range((*state, "")..).map_err(backend)? {
                    let (k, _) = entry.map_err(backend)?;
                    let (s, id) = k.value();
                    if s != *state {
                        break;
                    }
                    ids.push(id.to_owned());
                }
            }
            ids
        } else {
            let named: Vec<(String, MachineRecord)> =
                meta::list_named(&self.0, MACHINES, "machines")?;
            return Ok(named.into_iter().map(|(_, m)| m).collect());
        };
        // In id order, as a scan would give them.
        ids.sort_unstable();
        ids.dedup();
        let table = self.0.open(MACHINES)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(v) = table.get(id.as_str()).map_err(backend)? {
                let m: MachineRecord = decode("machines", v.value())?;
                if filter.cluster.as_ref().is_none_or(|c| &m.cluster == c)
                    && filter.project.as_ref().is_none_or(|p| &m.project == p)
                    && (filter.states.is_empty() || filter.states.contains(&m.state))
                {
                    out.push(m);
                }
            }
        }
        Ok(out)
    }

    fn transitions(&self, machine: &str) -> StoreResult<Vec<TransitionRecord>> {
        let table = self.0.open(TRANSITIONS)?;
        let mut out = Vec::new();
        for entry in table
            .range((machine, 0)..=(machine, u64::MAX))
            .map_err(backend)?
        {
            let (_, v) = entry.map_err(backend)?;
            out.push(decode("machine_transitions", v.value())?);
        }
        Ok(out)
    }

    fn quota(&self, project: &str) -> StoreResult<Option<QuotaRecord>> {
        Ok(meta::get_named(&self.0, QUOTAS, "quotas", project)?)
    }

    fn quotas(&self) -> StoreResult<Vec<(String, QuotaRecord)>> {
        Ok(meta::list_named(&self.0, QUOTAS, "quotas")?)
    }

    fn pool_host(&self, cluster: &str, name: &str) -> StoreResult<Option<PoolHostRecord>> {
        match self
            .0
            .open(POOL_HOSTS)?
            .get((cluster, name))
            .map_err(backend)?
        {
            Some(v) => Ok(Some(decode("pool_hosts", v.value())?)),
            None => Ok(None),
        }
    }

    fn pool_hosts(&self, cluster: &str) -> StoreResult<Vec<PoolHostRecord>> {
        let table = self.0.open(POOL_HOSTS)?;
        let mut out = Vec::new();
        // Every name of the cluster sorts at or after `(cluster, "")`; the range ends at
        // the first key of another cluster.
        for entry in table.range((cluster, "")..).map_err(backend)? {
            let (k, v) = entry.map_err(backend)?;
            if k.value().0 != cluster {
                break;
            }
            out.push(decode("pool_hosts", v.value())?);
        }
        Ok(out)
    }
}

impl SchedulingWrite for RedbTx<WriteTransaction> {
    fn put_cluster(&self, record: &ClusterRecord) -> StoreResult<()> {
        self.0
            .open_table(CLUSTERS)
            .map_err(backend)?
            .insert(record.name.as_str(), encode(record).as_slice())
            .map_err(backend)?;
        Ok(())
    }

    fn remove_cluster(&self, name: &str) -> StoreResult<bool> {
        Ok(self
            .0
            .open_table(CLUSTERS)
            .map_err(backend)?
            .remove(name)
            .map_err(backend)?
            .is_some())
    }

    fn put_machine(&self, record: &MachineRecord) -> StoreResult<()> {
        let before: Option<MachineRecord> = self
            .0
            .open_table(MACHINES)
            .map_err(backend)?
            .insert(record.id.as_str(), encode(record).as_slice())
            .map_err(backend)?
            .map(|v| decode("machines", v.value()))
            .transpose()?;
        // Index entries are rewritten only when what they are keyed by moved: most puts
        // change an address or a reason, and rewriting unchanged entries dirties pages.
        let moved = before.as_ref().is_none_or(|b| {
            (b.state, &b.project, &b.cluster) != (record.state, &record.project, &record.cluster)
        });
        if moved {
            if let Some(before) = &before {
                index_machine(&self.0, before, false).map_err(backend)?;
            }
            index_machine(&self.0, record, true).map_err(backend)?;
        }
        let retokened = before.as_ref().is_none_or(|b| {
            (&b.project, &b.client_token) != (&record.project, &record.client_token)
        });
        if retokened {
            self.0
                .open_table(MACHINES_BY_TOKEN)
                .map_err(backend)?
                .insert(
                    (record.project.as_str(), record.client_token.as_str()),
                    record.id.as_str(),
                )
                .map_err(backend)?;
        }
        Ok(())
    }

    fn add_transition(&self, record: &TransitionRecord) -> StoreResult<()> {
        self.0
            .open_table(TRANSITIONS)
            .map_err(backend)?
            .insert(
                (record.machine.as_str(), record.seq),
                encode(record).as_slice(),
            )
            .map_err(backend)?;
        Ok(())
    }

    fn put_quota(&self, project: &str, quota: &QuotaRecord) -> StoreResult<()> {
        self.0
            .open_table(QUOTAS)
            .map_err(backend)?
            .insert(project, encode(quota).as_slice())
            .map_err(backend)?;
        Ok(())
    }

    fn remove_quota(&self, project: &str) -> StoreResult<bool> {
        Ok(self
            .0
            .open_table(QUOTAS)
            .map_err(backend)?
            .remove(project)
            .map_err(backend)?
            .is_some())
    }

    fn put_pool_host(&self, record: &PoolHostRecord) -> StoreResult<()> {
        self.0
            .open_table(POOL_HOSTS)
            .map_err(backend)?
            .insert(
                (record.cluster.as_str(), record.name.as_str()),
                encode(record).as_slice(),
            )
            .map_err(backend)?;
        Ok(())
    }

    fn remove_pool_host(&self, cluster: &str, name: &str) -> StoreResult<bool> {
        Ok(self
            .0
            .open_table(POOL_HOSTS)
            .map_err(backend)?
            .remove((cluster, name))
            .map_err(backend)?
            .is_some())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::storage::meta::Metadata;
    use crate::storage::meta::schema;
    use crate::storage::store::Store;
    use crate::storage::tables::scheduling::MachineState;

    /// A data directory whose machines were kept before the indexes opens with every
    /// machine found by state, project and cluster.
    #[test]
    fn machines_kept_before_the_indexes_are_indexed_on_upgrade() {
        const V1: Component = Component {
            name: "scheduling",
            current: 1,
            migrations: &[Migration {
                from: 0,
                apply: create_v1,
            }],
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.redb");
        {
            let meta = Metadata::open(&path).unwrap();
            schema::prepare(&meta, &V1).unwrap();
            meta.write(|tx| -> MetaResult<()> {
                let mut table = tx.open_table(MACHINES)?;
                for (id, state) in [("m-1", "online"), ("m-2", "draining"), ("m-3", "retired")] {
                    let record = serde_json::json!({
                        "id": id, "cluster": "rack", "project": "team", "provider_id": null,
                        "client_token": id, "spec": {"cpus": 1, "memory_mib": 512},
                        "addresses": [], "labels": {}, "state": state, "reason": null,
                        "created_by": "ada", "created_at": 1, "updated_at": 2,
                    });
                    table.insert(id, serde_json::to_vec(&record).unwrap().as_slice())?;
                }
                Ok(())
            })
            .unwrap();
        }
        let store = Store::redb(Arc::new(Metadata::open(&path).unwrap())).unwrap();
        let ids = |filter: MachineFilter| -> Vec<String> {
            store
                .read_blocking(move |tx| tx.scheduling().machines(&filter))
                .unwrap()
                .into_iter()
                .map(|m| m.id)
                .collect()
        };
        let draining = MachineFilter {
            states: vec![MachineState::Draining],
            ..MachineFilter::default()
        };
        assert_eq!(ids(draining), ["m-2"]);
        let living = MachineFilter {
            project: Some("team".into()),
            states: vec![MachineState::Online, MachineState::Draining],
            ..MachineFilter::default()
        };
        assert_eq!(ids(living), ["m-1", "m-2"]);
        let rack = MachineFilter {
            cluster: Some("rack".into()),
            ..MachineFilter::default()
        };
        assert_eq!(ids(rack), ["m-1", "m-2", "m-3"]);
    }
}
