//! The jobs runner's tables in redb: jobs by id and tasks by `(job, index)` as JSON rows,
//! producers' counters and cursors by key. Ids count on from `jobs/next_id`.
//!
//! Version 1 takes over replication's own job queue (`replication_jobs`,
//! `replication_tasks`, `replication_state`), converting its rows: a data directory
//! upgraded with jobs in flight resumes them. Version 2 adds three indexes — a kind's
//! jobs, a kind's unfinished jobs, a subject's jobs — so that what the runners ask on
//! every round reads the jobs it names, not every job ever kept.

use redb::{ReadableTable, TableDefinition, TableHandle, WriteTransaction};
use serde_json::{Map, Value, json};

use super::{RedbTx, backend};
use crate::storage::meta::schema::{Component, Migration};
use crate::storage::meta::{MetaError, MetaResult, Reader, decode, encode};
use crate::storage::store::StoreResult;
use crate::storage::tables::jobs::{JobFilter, JobRow, JobsRead, JobsWrite, TaskRow};

const JOBS: TableDefinition<u64, &[u8]> = TableDefinition::new("jobs");
const TASKS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("job_tasks");
pub(super) const STATE: TableDefinition<&str, u64> = TableDefinition::new("job_state");
/// `(kind, id)` of every job.
const BY_KIND: TableDefinition<(&str, u64), ()> = TableDefinition::new("jobs_by_kind");
/// `(kind, id)` of every job not over yet.
const UNFINISHED: TableDefinition<(&str, u64), ()> = TableDefinition::new("jobs_unfinished");
/// `(kind, subject, id)` of every job.
const BY_SUBJECT: TableDefinition<(&str, &str, u64), ()> = TableDefinition::new("jobs_by_subject");

/// The counter job ids come from.
const NEXT_ID: &str = "jobs/next_id";

/// The jobs runner's tables, versioned on their own. Prepared before replication's, whose
/// version 3 drops the queue tables this takes over.
pub(super) const SCHEMA: Component = Component {
    name: "jobs",
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

/// Replication's queue before the shared runner.
pub(super) const OLD_JOBS: TableDefinition<u64, &[u8]> = TableDefinition::new("replication_jobs");
pub(super) const OLD_TASKS: TableDefinition<(u64, u32), &[u8]> =
    TableDefinition::new("replication_tasks");
pub(super) const OLD_STATE: TableDefinition<&str, u64> = TableDefinition::new("replication_state");

fn create_v1(tx: &WriteTransaction) -> MetaResult<()> {
    tx.open_table(JOBS)?;
    tx.open_table(TASKS)?;
    tx.open_table(STATE)?;
    let existing: Vec<String> = tx
        .list_tables()
        .map_err(|e| MetaError::Db(e.into()))?
        .map(|t| t.name().to_string())
        .collect();
    if existing.iter().any(|t| t == OLD_JOBS.name()) {
        take_over_replication_queue(tx)?;
    }
    Ok(())
}

/// Converts replication's job rows (its job record with the queue's fields among them)
/// into the runner's (the shared fields as columns, the rest as `detail`).
fn take_over_replication_queue(tx: &WriteTransaction) -> MetaResult<()> {
    let bad =
        |table: &'static str| move |e: serde_json::Error| MetaError::Decode { table, source: e };
    let mut jobs = tx.open_table(JOBS)?;
    for entry in tx.open_table(OLD_JOBS)?.iter()? {
        let (_, v) = entry?;
        let mut old: Map<String, Value> =
            serde_json::from_slice(v.value()).map_err(bad("replication_jobs"))?;
        let mut take = |key: &str| old.remove(key).unwrap_or(Value::Null);
        let row = json!({
            "id": take("id"),
            "kind": "replication",
            "subject": take("policy"),
            "state": take("status"),
            "created_at": take("created_at"),
            "started_at": take("started_at"),
            "finished_at": take("finished_at"),
            "error": take("error"),
            "lease": null,
            "cancel_requested": false,
            "detail": {
                "trigger": take("trigger"),
                "scope": take("scope"),
                "plan": take("plan"),
                "tasks": take("tasks"),
                "progress": take("progress"),
            },
        });
        let row: JobRow = serde_json::from_value(row).map_err(bad("replication_jobs"))?;
        jobs.insert(row.id, encode(&row).as_slice())?;
    }
    let mut tasks = tx.open_table(TASKS)?;
    for entry in tx.open_table(OLD_TASKS)?.iter()? {
        let (_, v) = entry?;
        let mut old: Map<String, Value> =
            serde_json::from_slice(v.value()).map_err(bad("replication_tasks"))?;
        let mut take = |key: &str| old.remove(key).unwrap_or(Value::Null);
        let or_zero = |v: Value| if v.is_null() { json!(0) } else { v };
        let row = json!({
            "job": take("job"),
            "index": take("index"),
            "wave": take("wave"),
            "state": take("status"),
            "attempts": or_zero(take("attempts")),
            "not_before": or_zero(take("not_before")),
            "started_at": take("started_at"),
            "finished_at": take("finished_at"),
            "error": take("error"),
            "detail": {
                "source": take("source"),
                "target": take("target"),
                "op": take("op"),
                "note": take("note"),
                "progress": take("progress"),
            },
        });
        let row: TaskRow = serde_json::from_value(row).map_err(bad("replication_tasks"))?;
        tasks.insert((row.job, row.index), encode(&row).as_slice())?;
    }
    let mut state = tx.open_table(STATE)?;
    for entry in tx.open_table(OLD_STATE)?.iter()? {
        let (k, v) = entry?;
        let key = match k.value() {
            "next_job" => NEXT_ID.to_string(),
            other => other.to_string(),
        };
        state.insert(key.as_str(), v.value())?;
    }
    Ok(())
}

/// Indexes every job kept.
fn index_v2(tx: &WriteTransaction) -> MetaResult<()> {
    let jobs = tx.open_table(JOBS)?;
    let (mut by_kind, mut unfinished, mut by_subject) = (
        tx.open_table(BY_KIND)?,
        tx.open_table(UNFINISHED)?,
        tx.open_table(BY_SUBJECT)?,
    );
    for entry in jobs.iter()? {
        let (_, v) = entry?;
        let row: JobRow =
            serde_json::from_slice(v.value()).map_err(|source| MetaError::Decode {
                table: "jobs",
                source,
            })?;
        by_kind.insert((row.kind.as_str(), row.id), ())?;
        by_subject.insert((row.kind.as_str(), row.subject.as_str(), row.id), ())?;
        if !row.state.is_final() {
            unfinished.insert((row.kind.as_str(), row.id), ())?;
        }
    }
    Ok(())
}

fn matches(row: &JobRow, kind: &str, filter: &JobFilter) -> bool {
    row.kind == kind
        && filter.subject.as_ref().is_none_or(|s| &row.subject == s)
        && filter.state.is_none_or(|s| row.state == s)
        && (!filter.unfinished || !row.state.is_final())
        && (!filter.finished || row.state.is_final())
}

impl<T: Reader> JobsRead for RedbTx<T> {
    fn job(&self, id: u64) -> StoreResult<Option<JobRow>> {
        match self.0.open(JOBS)?.get(id).map_err(backend)? {
            Some(v) => Ok(Some(decode("jobs", v.value())?)),
            None => Ok(None),
        }
    }

    fn jobs(&self, kind: &str, filter: &JobFilter, limit: usize) -> StoreResult<Vec<JobRow>> {
        // The narrowest index the filter allows names the candidates, newest first.
        let ids: Vec<u64> = if let Some(subject) = &filter.subject {
            let table = self.0.open(BY_SUBJECT)?;
            let range = table
                .range((kind, subject.as_str(), 0)..=(kind, subject.as_str(), u64::MAX))
                .map_err(backend)?;
            range
                .rev()
                .map(|e| e.map(|(k, _)| k.value().2).map_err(backend))
                .collect::<StoreResult<_>>()?
        } else {
            let table = if filter.unfinished {
                self.0.open(UNFINISHED)?
            } else {
                self.0.open(BY_KIND)?
            };
            let range = table.range((kind, 0)..=(kind, u64::MAX)).map_err(backend)?;
            range
                .rev()
                .map(|e| e.map(|(k, _)| k.value().1).map_err(backend))
                .collect::<StoreResult<_>>()?
        };
        let jobs = self.0.open(JOBS)?;
        let mut out = Vec::new();
        for id in ids {
            if out.len() >= limit {
                break;
            }
            if filter.except.contains(&id) {
                continue;
            }
            if let Some(v) = jobs.get(id).map_err(backend)? {
                let row: JobRow = decode("jobs", v.value())?;
                if matches(&row, kind, filter) {
                    out.push(row);
                }
            }
        }
        Ok(out)
    }

    fn tasks(&self, job: u64) -> StoreResult<Vec<TaskRow>> {
        let mut out = Vec::new();
        for entry in self
            .0
            .open(TASKS)?
            .range((job, 0)..=(job, u32::MAX))
            .map_err(backend)?
        {
            let (_, v) = entry.map_err(backend)?;
            out.push(decode("job_tasks", v.value())?);
        }
        Ok(out)
    }

    fn state(&self, key: &str) -> StoreResult<u64> {
        Ok(self
            .0
            .open(STATE)?
            .get(key)
            .map_err(backend)?
            .map(|v| v.value())
            .unwrap_or(0))
    }
}

impl JobsWrite for RedbTx<WriteTransaction> {
    fn insert_job(&self, row: &JobRow) -> StoreResult<u64> {
        let id = self.state(NEXT_ID)? + 1;
        self.set_state(NEXT_ID, id)?;
        let row = JobRow { id, ..row.clone() };
        self.put_job(&row)?;
        Ok(id)
    }

    fn put_job(&self, row: &JobRow) -> StoreResult<()> {
        self.0
            .open_table(JOBS)
            .map_err(backend)?
            .insert(row.id, encode(row).as_slice())
            .map_err(backend)?;
        // A job's kind and subject never change: its first put indexes them, and later
        // puts (every lease renewal, every progress step) write only what moved, so an
        // update does not rewrite index pages for nothing.
        let kind = row.kind.as_str();
        let mut by_kind = self.0.open_table(BY_KIND).map_err(backend)?;
        if by_kind.get((kind, row.id)).map_err(backend)?.is_none() {
            by_kind.insert((kind, row.id), ()).map_err(backend)?;
            self.0
                .open_table(BY_SUBJECT)
                .map_err(backend)?
                .insert((kind, row.subject.as_str(), row.id), ())
                .map_err(backend)?;
        }
        let mut unfinished = self.0.open_table(UNFINISHED).map_err(backend)?;
        let listed = unfinished.get((kind, row.id)).map_err(backend)?.is_some();
        match (row.state.is_final(), listed) {
            (true, true) => {
                unfinished.remove((kind, row.id)).map_err(backend)?;
            }
            (false, false) => {
                unfinished.insert((kind, row.id), ()).map_err(backend)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn put_task(&self, row: &TaskRow) -> StoreResult<()> {
        self.0
            .open_table(TASKS)
            .map_err(backend)?
            .insert((row.job, row.index), encode(row).as_slice())
            .map_err(backend)?;
        Ok(())
    }

    fn remove_job(&self, id: u64) -> StoreResult<()> {
        let removed = self
            .0
            .open_table(JOBS)
            .map_err(backend)?
            .remove(id)
            .map_err(backend)?
            .map(|v| decode::<JobRow>("jobs", v.value()))
            .transpose()?;
        if let Some(row) = removed {
            let kind = row.kind.as_str();
            self.0
                .open_table(BY_KIND)
                .map_err(backend)?
                .remove((kind, id))
                .map_err(backend)?;
            self.0
                .open_table(UNFINISHED)
                .map_err(backend)?
                .remove((kind, id))
                .map_err(backend)?;
            self.0
                .open_table(BY_SUBJECT)
                .map_err(backend)?
                .remove((kind, row.subject.as_str(), id))
                .map_err(backend)?;
        }
        self.0
            .open_table(TASKS)
            .map_err(backend)?
            .retain_in((id, 0)..=(id, u32::MAX), |_, _| false)
            .map_err(backend)?;
        Ok(())
    }

    fn set_state(&self, key: &str, value: u64) -> StoreResult<()> {
        self.0
            .open_table(STATE)
            .map_err(backend)?
            .insert(key, value)
            .map_err(backend)?;
        Ok(())
    }

    fn remove_state(&self, key: &str) -> StoreResult<()> {
        self.0
            .open_table(STATE)
            .map_err(backend)?
            .remove(key)
            .map_err(backend)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::storage::backends::redb::replication;
    use crate::storage::meta::Metadata;
    use crate::storage::meta::schema::{self, Migration};
    use crate::storage::store::Store;
    use crate::storage::tables::jobs::RunState;

    /// Replication's schema as berth shipped it before the shared runner: version 2, with
    /// its own job queue.
    fn old_replication_v1(tx: &WriteTransaction) -> MetaResult<()> {
        tx.open_table(TableDefinition::<&str, &[u8]>::new("replication_endpoints"))?;
        tx.open_table(TableDefinition::<&str, &[u8]>::new("replication_policies"))?;
        tx.open_table(OLD_JOBS)?;
        tx.open_table(OLD_TASKS)?;
        tx.open_table(OLD_STATE)?;
        Ok(())
    }

    fn old_replication_v2(tx: &WriteTransaction) -> MetaResult<()> {
        tx.open_table(TableDefinition::<(&str, &str), &[u8]>::new(
            "replication_metadata_versions",
        ))?;
        Ok(())
    }

    const OLD_REPLICATION: Component = Component {
        name: "replication",
        current: 2,
        migrations: &[
            Migration {
                from: 0,
                apply: old_replication_v1,
            },
            Migration {
                from: 1,
                apply: old_replication_v2,
            },
        ],
    };

    /// A data directory of the previous release with a job in flight opens with the job,
    /// its tasks and the producers' cursors where they were, and ids go on from its own.
    #[test]
    fn replications_own_queue_is_taken_over_with_jobs_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.redb");
        {
            let meta = Metadata::open(&path).unwrap();
            schema::prepare(&meta, &OLD_REPLICATION).unwrap();
            meta.write(|tx| -> MetaResult<()> {
                let job = json!({
                    "id": 7, "policy": "edge",
                    "trigger": {"type": "manual", "by": "admin"},
                    "status": "running", "scope": {"type": "all"},
                    "created_at": 1000, "started_at": 1100,
                    "plan": {"strategy": "star", "waves": 1, "artifacts": 2, "limits": []},
                    "tasks": {"total": 2, "pending": 1, "running": 1, "succeeded": 0, "failed": 0, "cancelled": 0},
                    "progress": {"bytes": 5, "blobs_copied": 1, "blobs_skipped": 0, "manifests_copied": 0, "manifests_skipped": 0}
                });
                tx.open_table(OLD_JOBS)?
                    .insert(7, serde_json::to_vec(&job).unwrap().as_slice())?;
                for (index, status) in [(0u32, "running"), (1, "pending")] {
                    let task = json!({
                        "job": 7, "index": index, "wave": 0,
                        "source": "local", "target": "dc2",
                        "op": {"type": "copy", "repository": "team/app", "reference": "v1", "destination": "team/app"},
                        "status": status, "attempts": 1, "not_before": 0,
                        "progress": {"bytes": 5, "blobs_copied": 1, "blobs_skipped": 0, "manifests_copied": 0, "manifests_skipped": 0},
                        "started_at": 1200
                    });
                    tx.open_table(OLD_TASKS)?
                        .insert((7, index), serde_json::to_vec(&task).unwrap().as_slice())?;
                }
                let mut state = tx.open_table(OLD_STATE)?;
                state.insert("next_job", 7)?;
                state.insert("change_cursor", 99)?;
                state.insert("schedule/edge", 123_456)?;
                Ok(())
            })
            .unwrap();
        }
        let meta = Arc::new(Metadata::open(&path).unwrap());
        let store = Store::redb(meta.clone()).unwrap();
        assert_eq!(
            schema::stored_version(&meta, "jobs").unwrap(),
            SCHEMA.current
        );
        assert_eq!(
            schema::stored_version(&meta, "replication").unwrap(),
            replication::SCHEMA.current
        );
        let job = store.read_blocking(|tx| tx.jobs().job(7)).unwrap().unwrap();
        assert_eq!(
            (job.kind.as_str(), job.subject.as_str(), job.state),
            ("replication", "edge", RunState::Running)
        );
        assert_eq!(job.started_at, Some(1100));
        assert_eq!(job.detail["trigger"]["by"], "admin");
        assert_eq!(job.detail["plan"]["artifacts"], 2);
        assert_eq!(job.detail["tasks"]["total"], 2);
        let tasks = store.read_blocking(|tx| tx.jobs().tasks(7)).unwrap();
        assert_eq!(tasks.len(), 2);
        assert_eq!(tasks[0].state, RunState::Running);
        assert_eq!(tasks[0].detail["target"], "dc2");
        assert_eq!(tasks[0].detail["op"]["reference"], "v1");
        assert_eq!(tasks[1].attempts, 1);
        store
            .read_blocking(|tx| -> StoreResult<()> {
                // The change cursor went on to the event feed, as replication's cursor.
                assert_eq!(tx.jobs().state("change_cursor")?, 0);
                assert_eq!(tx.events().event_cursor("replication")?, Some(99));
                assert_eq!(tx.jobs().state("schedule/edge")?, 123_456);
                Ok(())
            })
            .unwrap();
        let next = store
            .write_blocking(crate::storage::store::Durability::Immediate, |tx| {
                tx.jobs().insert_job(&job)
            })
            .unwrap();
        assert_eq!(next, 8);
        // The old queue is gone.
        let tx = meta.read().unwrap();
        assert!(tx.open_table(OLD_JOBS).is_err());
    }
}
