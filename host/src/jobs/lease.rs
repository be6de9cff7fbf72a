//! Leases: which node works on a job. A node claims a job before working on it and renews
//! the claim while it works; a claim lapses if its node stops renewing (it died, or lost
//! the database), and another node may then take the job over. An operator's cancellation
//! is stored on the job and reaches the node holding it at its next renewal.

use super::{Lease, RunState};
use crate::storage::store::{StoreResult, WriteTx};

/// What claiming a job gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This node holds the job now. `taken_over_from` names the node whose lease had
    /// lapsed (or this node's own, from before a restart): work it left running was
    /// abandoned and must be started again.
    Taken {
        /// The previous holder, if any.
        taken_over_from: Option<String>,
    },
    /// Another node holds a lease that has not lapsed.
    HeldElsewhere,
    /// The job is over or gone.
    Over,
}

/// What renewing a lease said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// Still this node's, for another term.
    Held,
    /// Another node took the job over (this node's lease had lapsed): stop working on it.
    Lost,
    /// The job was cancelled, finished or removed: stop working on it.
    Stop,
}

/// Claims job `id` for `node` until `now + term_ms`. A job this node holds already is
/// taken again: the caller asks only for jobs it is not working on, so such a lease is
/// left from before a restart.
pub fn claim(tx: &dyn WriteTx, id: u64, node: &str, now: u64, term_ms: u64) -> StoreResult<Claim> {
    Ok(take(tx, id, node, now, term_ms, false)?.0)
}

/// Claims job `id` as [`claim`] does and, when taken, marks it running, started at `now`
/// unless an earlier claim started it. Answers the claim and whether the job had been
/// started before: then an earlier try may have done part of its work (and sent what it
/// sends), and the kind must look before it acts again.
pub fn claim_to_run(
    tx: &dyn WriteTx,
    id: u64,
    node: &str,
    now: u64,
    term_ms: u64,
) -> StoreResult<(Claim, bool)> {
    take(tx, id, node, now, term_ms, true)
}

fn take(
    tx: &dyn WriteTx,
    id: u64,
    node: &str,
    now: u64,
    term_ms: u64,
    start: bool,
) -> StoreResult<(Claim, bool)> {
    let Some(mut job) = tx.jobs().job(id)? else {
        return Ok((Claim::Over, false));
    };
    if job.state.is_final() || job.cancel_requested {
        return Ok((Claim::Over, false));
    }
    if let Some(lease) = &job.lease
        && lease.node != node
        && lease.until > now
    {
        return Ok((Claim::HeldElsewhere, false));
    }
    let taken_over_from = job.lease.take().map(|l| l.node);
    job.lease = Some(Lease {
        node: node.to_string(),
        until: now + term_ms,
    });
    let started_before = job.started_at.is_some();
    if start {
        job.started_at.get_or_insert(now);
        job.state = RunState::Running;
    }
    tx.jobs().put_job(&job)?;
    Ok((Claim::Taken { taken_over_from }, started_before))
}

/// Extends `node`'s lease on job `id` to `now + term_ms`, or says why it should stop.
pub fn renew(
    tx: &dyn WriteTx,
    id: u64,
    node: &str,
    now: u64,
    term_ms: u64,
) -> StoreResult<Renewal> {
    let Some(mut job) = tx.jobs().job(id)? else {
        return Ok(Renewal::Stop);
    };
    if job.state.is_final() || job.cancel_requested {
        return Ok(Renewal::Stop);
    }
    match &job.lease {
        Some(lease) if lease.node == node => {}
        _ => return Ok(Renewal::Lost),
    }
    job.lease = Some(Lease {
        node: node.to_string(),
        until: now + term_ms,
    });
    tx.jobs().put_job(&job)?;
    Ok(Renewal::Held)
}

/// Gives up `node`'s lease on job `id` (the job ended, or this node stops).
pub fn release(tx: &dyn WriteTx, id: u64, node: &str) -> StoreResult<()> {
    if let Some(mut job) = tx.jobs().job(id)?
        && job.lease.as_ref().is_some_and(|l| l.node == node)
    {
        job.lease = None;
        tx.jobs().put_job(&job)?;
    }
    Ok(())
}

/// Asks for job `id` to stop: stored, so the node working on it (whichever) learns it.
pub fn request_cancel(tx: &dyn WriteTx, id: u64) -> StoreResult<bool> {
    let Some(mut job) = tx.jobs().job(id)? else {
        return Ok(false);
    };
    job.cancel_requested = true;
    tx.jobs().put_job(&job)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::queue;
    use crate::storage::store::{Durability, Store};

    fn write<T>(store: &Store, f: impl FnMut(&dyn WriteTx) -> StoreResult<T>) -> T {
        store.write_blocking(Durability::Immediate, f).unwrap()
    }

    /// Two nodes and an operator over one store: claims exclude each other until a lease
    /// lapses, renewals tell a node it lost the job or must stop.
    fn leases_exclude_lapse_and_carry_cancellation(store: &Store) {
        let id = write(store, |tx| {
            Ok(queue::enqueue(tx, "replication", "p", serde_json::json!({}), 1_000)?.id)
        });
        let term = 30_000;
        let at = |t: u64| 1_000_000 + t;
        assert_eq!(
            write(store, |tx| claim(tx, id, "a", at(0), term)),
            Claim::Taken {
                taken_over_from: None
            }
        );
        assert_eq!(
            write(store, |tx| claim(tx, id, "b", at(10_000), term)),
            Claim::HeldElsewhere
        );
        assert_eq!(
            write(store, |tx| renew(tx, id, "a", at(20_000), term)),
            Renewal::Held
        );
        // Renewed at 20 s: still held at 45 s, lapsed at 51 s.
        assert_eq!(
            write(store, |tx| claim(tx, id, "b", at(45_000), term)),
            Claim::HeldElsewhere
        );
        assert_eq!(
            write(store, |tx| claim(tx, id, "b", at(51_000), term)),
            Claim::Taken {
                taken_over_from: Some("a".into())
            }
        );
        assert_eq!(
            write(store, |tx| renew(tx, id, "a", at(52_000), term)),
            Renewal::Lost
        );
        // A node that restarted claims its own lease back at once.
        assert_eq!(
            write(store, |tx| claim(tx, id, "b", at(53_000), term)),
            Claim::Taken {
                taken_over_from: Some("b".into())
            }
        );
        assert!(write(store, |tx| request_cancel(tx, id)));
        assert_eq!(
            write(store, |tx| renew(tx, id, "b", at(54_000), term)),
            Renewal::Stop
        );
        assert_eq!(
            write(store, |tx| claim(tx, id, "a", at(99_000), term)),
            Claim::Over
        );
        write(store, |tx| release(tx, id, "b"));
        let job = store
            .read_blocking(|tx| queue::job(tx, id))
            .unwrap()
            .unwrap();
        assert_eq!(job.lease, None);
        assert!(job.cancel_requested);
        assert_eq!(
            write(store, |tx| claim(tx, id + 1, "a", at(0), term)),
            Claim::Over
        );
    }

    /// A claim to run marks the job running from its first claim on, and a later claim
    /// (a takeover, a restart) says that the job was started before.
    fn claims_to_run_say_whether_the_job_started_before(store: &Store) {
        let id = write(store, |tx| {
            Ok(queue::enqueue(tx, "machine-create", "m", serde_json::json!({}), 1_000)?.id)
        });
        assert_eq!(
            write(store, |tx| claim_to_run(tx, id, "a", 2_000, 30_000)),
            (
                Claim::Taken {
                    taken_over_from: None
                },
                false
            )
        );
        let job = store
            .read_blocking(|tx| queue::job(tx, id))
            .unwrap()
            .unwrap();
        assert_eq!(
            (job.state, job.started_at),
            (RunState::Running, Some(2_000))
        );
        assert_eq!(
            write(store, |tx| claim_to_run(tx, id, "b", 3_000, 30_000)),
            (Claim::HeldElsewhere, false)
        );
        assert_eq!(
            write(store, |tx| claim_to_run(tx, id, "b", 40_000, 30_000)),
            (
                Claim::Taken {
                    taken_over_from: Some("a".into())
                },
                true
            )
        );
        let job = store
            .read_blocking(|tx| queue::job(tx, id))
            .unwrap()
            .unwrap();
        assert_eq!(job.started_at, Some(2_000), "the first start stands");
    }

    #[test]
    fn on_redb() {
        let (store, _dir) = crate::storage::testing::redb_store();
        leases_exclude_lapse_and_carry_cancellation(&store);
        claims_to_run_say_whether_the_job_started_before(&store);
    }

    #[test]
    fn on_postgres() {
        let store = crate::storage::testing::postgres_store();
        leases_exclude_lapse_and_carry_cancellation(&store);
        claims_to_run_say_whether_the_job_started_before(&store);
    }

    /// Nodes racing for one job on PostgreSQL: exactly one wins.
    #[test]
    fn of_nodes_claiming_at_once_one_wins() {
        let store = crate::storage::testing::postgres_store();
        let id = write(&store, |tx| {
            Ok(queue::enqueue(tx, "replication", "p", serde_json::json!({}), 1)?.id)
        });
        let wins: Vec<bool> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..6)
                .map(|n| {
                    let store = store.clone();
                    s.spawn(move || {
                        let node = format!("node-{n}");
                        matches!(
                            write(&store, |tx| claim(tx, id, &node, 1_000, 30_000)),
                            Claim::Taken { .. }
                        )
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(wins.iter().filter(|w| **w).count(), 1, "{wins:?}");
    }
}
