//! Conformance cases of the jobs runner's tables.

use serde_json::json;

use crate::storage::store::{Durability, Store, StoreError, WriteTx};
use crate::storage::tables::jobs::{JobFilter, JobRow, Lease, RunState, TaskRow};

fn new_job(kind: &str, subject: &str, n: u64) -> JobRow {
    JobRow {
        id: 0,
        kind: kind.into(),
        subject: subject.into(),
        state: RunState::Pending,
        detail: json!({"n": n, "text": "ü \"quoted\"\n", "nested": {"list": [1, 2, 3]}}),
        created_at: 1_764_000_000_000 + n,
        started_at: None,
        finished_at: None,
        error: None,
        lease: None,
        cancel_requested: false,
    }
}

fn write<T>(store: &Store, f: impl FnMut(&dyn WriteTx) -> Result<T, StoreError>) -> T {
    store.write_blocking(Durability::Immediate, f).unwrap()
}

pub(super) fn jobs_get_increasing_ids_and_round_trip_every_field(store: &Store) {
    let ids: Vec<u64> = write(store, |tx| {
        (0..3)
            .map(|n| tx.jobs().insert_job(&new_job("replication", "p", n)))
            .collect()
    });
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let later = write(store, |tx| {
        tx.jobs().insert_job(&new_job("machine", "m1", 9))
    });
    assert!(later > ids[2]);
    let mut full = new_job("replication", "p", 1);
    full.id = ids[1];
    full.state = RunState::Running;
    full.started_at = Some(1_764_000_000_500);
    full.finished_at = Some(1_764_000_000_900);
    full.error = Some("task 3 failed:\nno route".into());
    full.lease = Some(Lease {
        node: "node-a".into(),
        until: 1_764_000_030_000,
    });
    full.cancel_requested = true;
    write(store, |tx| tx.jobs().put_job(&full));
    assert_eq!(
        store.read_blocking(|tx| tx.jobs().job(ids[1])).unwrap(),
        Some(full)
    );
    assert_eq!(
        store
            .read_blocking(|tx| tx.jobs().job(later + 100))
            .unwrap(),
        None
    );
}

pub(super) fn jobs_are_listed_newest_first_by_kind_subject_and_state(store: &Store) {
    let mut ids = Vec::new();
    for (kind, subject, state) in [
        ("replication", "a", RunState::Succeeded),
        ("replication", "b", RunState::Pending),
        ("machine", "a", RunState::Pending),
        ("replication", "a", RunState::Running),
        ("replication", "a", RunState::Failed),
    ] {
        let mut row = new_job(kind, subject, 0);
        row.state = state;
        ids.push(write(store, |tx| tx.jobs().insert_job(&row)));
    }
    let list = |filter: JobFilter, limit: usize| -> Vec<u64> {
        store
            .read_blocking(|tx| tx.jobs().jobs("replication", &filter, limit))
            .unwrap()
            .into_iter()
            .map(|j| j.id)
            .collect()
    };
    assert_eq!(
        list(JobFilter::default(), 10),
        [ids[4], ids[3], ids[1], ids[0]]
    );
    assert_eq!(list(JobFilter::default(), 2), [ids[4], ids[3]]);
    let subject_a = JobFilter {
        subject: Some("a".into()),
        ..JobFilter::default()
    };
    assert_eq!(list(subject_a.clone(), 10), [ids[4], ids[3], ids[0]]);
    let unfinished = JobFilter {
        unfinished: true,
        ..JobFilter::default()
    };
    assert_eq!(list(unfinished, 10), [ids[3], ids[1]]);
    let finished_a = JobFilter {
        finished: true,
        ..subject_a
    };
    assert_eq!(list(finished_a, 10), [ids[4], ids[0]]);
    let pending = JobFilter {
        state: Some(RunState::Pending),
        ..JobFilter::default()
    };
    assert_eq!(list(pending.clone(), 10), [ids[1]]);
    // A node skips the jobs it runs already; the limit counts only what is listed.
    let unfinished_elsewhere = JobFilter {
        unfinished: true,
        except: [ids[3], ids[4]].into(),
        ..JobFilter::default()
    };
    assert_eq!(list(unfinished_elsewhere, 1), [ids[1]]);

    // A job that ends leaves the unfinished; one that is removed leaves every listing.
    let unfinished = JobFilter {
        unfinished: true,
        ..JobFilter::default()
    };
    let mut ended = store
        .read_blocking(|tx| tx.jobs().job(ids[3]))
        .unwrap()
        .unwrap();
    ended.state = RunState::Succeeded;
    write(store, |tx| tx.jobs().put_job(&ended));
    assert_eq!(list(unfinished.clone(), 10), [ids[1]]);
    write(store, |tx| tx.jobs().remove_job(ids[1]));
    assert_eq!(list(unfinished, 10), Vec::<u64>::new());
    assert_eq!(list(pending, 10), Vec::<u64>::new());
    assert_eq!(list(JobFilter::default(), 10), [ids[4], ids[3], ids[0]]);
    let subject_b = JobFilter {
        subject: Some("b".into()),
        ..JobFilter::default()
    };
    assert_eq!(list(subject_b, 10), Vec::<u64>::new());
    // Another kind's jobs are another kind's.
    let machine = store
        .read_blocking(|tx| tx.jobs().jobs("machine", &JobFilter::default(), 10))
        .unwrap();
    assert_eq!(machine.iter().map(|j| j.id).collect::<Vec<_>>(), [ids[2]]);
}

pub(super) fn tasks_come_in_index_order_and_go_with_their_job(store: &Store) {
    let (first, second) = write(store, |tx| {
        Ok((
            tx.jobs().insert_job(&new_job("replication", "p", 1))?,
            tx.jobs().insert_job(&new_job("replication", "p", 2))?,
        ))
    });
    let task = |job: u64, index: u32| TaskRow {
        job,
        index,
        wave: index / 2,
        state: if index == 1 {
            RunState::Failed
        } else {
            RunState::Pending
        },
        attempts: index,
        not_before: 1_764_000_000_000 + u64::from(index),
        started_at: (index > 0).then_some(1_764_000_000_100),
        finished_at: (index == 1).then_some(1_764_000_000_200),
        error: (index == 1).then(|| "refused".to_string()),
        detail: json!({"op": {"type": "copy", "repository": format!("r{index}")}}),
    };
    write(store, |tx| {
        for index in [2, 0, 10, 1] {
            tx.jobs().put_task(&task(first, index))?;
            tx.jobs().put_task(&task(second, index))?;
        }
        Ok(())
    });
    let tasks = store.read_blocking(|tx| tx.jobs().tasks(first)).unwrap();
    assert_eq!(
        tasks,
        vec![
            task(first, 0),
            task(first, 1),
            task(first, 2),
            task(first, 10)
        ]
    );
    write(store, |tx| tx.jobs().remove_job(first));
    assert_eq!(
        store.read_blocking(|tx| tx.jobs().tasks(first)).unwrap(),
        vec![]
    );
    assert_eq!(
        store.read_blocking(|tx| tx.jobs().job(first)).unwrap(),
        None
    );
    assert_eq!(
        store
            .read_blocking(|tx| tx.jobs().tasks(second))
            .unwrap()
            .len(),
        4
    );
}

pub(super) fn producer_state_counts_and_forgets(store: &Store) {
    assert_eq!(
        store
            .read_blocking(|tx| tx.jobs().state("change_cursor"))
            .unwrap(),
        0
    );
    write(store, |tx| {
        tx.jobs().set_state("change_cursor", 41)?;
        tx.jobs().set_state("schedule/p", u64::from(u32::MAX) * 4)?;
        tx.jobs().set_state("change_cursor", 42)
    });
    assert_eq!(
        store
            .read_blocking(|tx| tx.jobs().state("change_cursor"))
            .unwrap(),
        42
    );
    assert_eq!(
        store
            .read_blocking(|tx| tx.jobs().state("schedule/p"))
            .unwrap(),
        u64::from(u32::MAX) * 4
    );
    write(store, |tx| tx.jobs().remove_state("schedule/p"));
    assert_eq!(
        store
            .read_blocking(|tx| tx.jobs().state("schedule/p"))
            .unwrap(),
        0
    );
}
