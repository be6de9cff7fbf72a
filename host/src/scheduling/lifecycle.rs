//! A machine's lifecycle, as MAAS and Cluster API keep one: which moves between states
//! are allowed, and the one function that makes a move — in the caller's transaction, so
//! that the machine's record, its history (who, why, when) and the event that tells the
//! rest of berth are written together or not at all.
//!
//! ```text
//! requested → provisioning → initializing → online ⇄ draining → drained
//!                                            online ⇄ offline
//! online | draining | drained | offline → stopping → stopped → starting → initializing
//! any living state → retiring → retired;  requested … retiring → failed (with a reason)
//! ```
//!
//! `retired` is final. `failed` may only be cleaned up (retiring, or retired when nothing
//! is left at the provider). A machine deleted out of band goes to `retired` from
//! wherever it was; one stopped out of band goes straight to `stopped` from any running
//! state, and one started out of band from `stopped` to `starting`. A stop the provider
//! refuses leaves the machine `offline` (it still runs); a start it refuses, `stopped`.

use crate::events::{self, Event};
use crate::storage::store::{StoreError, WriteTx};
use crate::storage::tables::events::MachineTransition;
use crate::storage::tables::scheduling::{MachineRecord, MachineState, TransitionRecord};

use MachineState::*;

/// Why a move was refused.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// There is no such machine.
    #[error("no machine {0}")]
    NotFound(String),
    /// The move is not one the lifecycle allows.
    #[error("machine {machine} is {from}; it cannot go to {to} from there")]
    NotAllowed {
        /// The machine.
        machine: String,
        /// Where it is.
        from: &'static str,
        /// Where it was asked to go.
        to: &'static str,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whether a machine may move from `from` to `to`. Staying where it is is not a move.
pub fn allowed(from: MachineState, to: MachineState) -> bool {
    match from {
        Requested => matches!(to, Provisioning | Retiring | Failed),
        Provisioning => matches!(to, Initializing | Retiring | Retired | Failed),
        Initializing => matches!(to, Online | Offline | Retiring | Retired | Failed),
        Online => matches!(
            to,
            Draining | Offline | Stopping | Stopped | Retiring | Retired | Failed
        ),
        Draining => matches!(
            to,
            Drained | Online | Offline | Stopping | Stopped | Retiring | Retired | Failed
        ),
        Drained => matches!(
            to,
            Online | Offline | Stopping | Stopped | Retiring | Retired | Failed
        ),
        Offline => matches!(
            to,
            Online | Initializing | Stopping | Stopped | Retiring | Retired | Failed
        ),
        Stopping => matches!(to, Stopped | Offline | Retiring | Retired | Failed),
        Stopped => matches!(to, Starting | Retiring | Retired | Failed),
        Starting => matches!(to, Initializing | Stopped | Retiring | Retired | Failed),
        Retiring => matches!(to, Retired | Failed),
        Retired => false,
        Failed => matches!(to, Retiring | Retired),
    }
}

/// Whether a machine in `state` counts against its project's quota: everything that may
/// still hold (or be about to hold) resources at the provider.
pub fn holds_resources(state: MachineState) -> bool {
    !matches!(state, Retired | Failed)
}

/// Records a new machine (in state `requested`, or whatever `machine.state` says for one
/// registered as it is) with the first entry of its history, and publishes it.
pub fn record_new(
    tx: &dyn WriteTx,
    machine: &MachineRecord,
    actor: &str,
    reason: Option<&str>,
) -> Result<(), LifecycleError> {
    tx.scheduling().put_machine(machine)?;
    write_history(tx, machine, None, 1, actor, reason, machine.created_at)
}

/// Moves machine `id` to `to` in `tx`: checks the move, stores the machine with its new
/// state and reason, appends to its history and publishes the transition. Returns the
/// machine as it now is. `reason` replaces the machine's reason (none clears it).
pub fn transition(
    tx: &dyn WriteTx,
    id: &str,
    to: MachineState,
    actor: &str,
    reason: Option<&str>,
    now: u64,
) -> Result<MachineRecord, LifecycleError> {
    let mut machine = tx
        .scheduling()
        .machine(id)?
        .ok_or_else(|| LifecycleError::NotFound(id.to_owned()))?;
    let from = machine.state;
    if !allowed(from, to) {
        return Err(LifecycleError::NotAllowed {
            machine: id.to_owned(),
            from: from.as_str(),
            to: to.as_str(),
        });
    }
    machine.state = to;
    machine.reason = reason.map(str::to_owned);
    machine.updated_at = now;
    tx.scheduling().put_machine(&machine)?;
    let seq = tx
        .scheduling()
        .transitions(id)?
        .last()
        .map_or(1, |t| t.seq + 1);
    write_history(tx, &machine, Some(from), seq, actor, reason, now)?;
    Ok(machine)
}

fn write_history(
    tx: &dyn WriteTx,
    machine: &MachineRecord,
    from: Option<MachineState>,
    seq: u64,
    actor: &str,
    reason: Option<&str>,
    at: u64,
) -> Result<(), LifecycleError> {
    tx.scheduling().add_transition(&TransitionRecord {
        machine: machine.id.clone(),
        seq,
        from,
        to: machine.state,
        actor: actor.to_owned(),
        reason: reason.map(str::to_owned),
        at,
    })?;
    events::publish(
        tx,
        Event::Machine(MachineTransition {
            machine: machine.id.clone(),
            cluster: machine.cluster.clone(),
            project: machine.project.clone(),
            from,
            to: machine.state,
            actor: actor.to_owned(),
            reason: reason.map(str::to_owned),
            at,
        }),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::store::{Durability, Store};
    use crate::storage::tables::scheduling::MachineSpec;

    /// The moves the lifecycle diagram draws, and a few it must refuse.
    #[test]
    fn the_allowed_moves_are_the_diagrams() {
        let path = [
            Requested,
            Provisioning,
            Initializing,
            Online,
            Draining,
            Drained,
        ];
        for pair in path.windows(2) {
            assert!(allowed(pair[0], pair[1]), "{:?} -> {:?}", pair[0], pair[1]);
        }
        for (from, to) in [
            (Drained, Online),
            (Online, Offline),
            (Offline, Online),
            (Online, Stopping),
            (Stopping, Stopped),
            (Stopped, Starting),
            (Starting, Initializing),
            // Out of band, as reconciliation sees it.
            (Drained, Stopped),
            // A refused stop or start.
            (Stopping, Offline),
            (Starting, Stopped),
        ] {
            assert!(allowed(from, to), "{from:?} -> {to:?}");
        }
        for state in MachineState::ALL {
            assert!(!allowed(state, state), "{state:?} stays");
            assert!(!allowed(Retired, state), "retired is final: {state:?}");
            if !matches!(state, Retired | Failed) {
                assert!(
                    allowed(state, Retiring) || state == Retiring,
                    "{state:?} -> retiring"
                );
                assert!(allowed(state, Failed), "{state:?} -> failed");
            }
        }
        for (from, to) in [
            (Requested, Online),
            (Provisioning, Online),
            (Online, Requested),
            (Failed, Online),
            (Retiring, Online),
            (Offline, Draining),
            (Stopped, Online),
            (Stopped, Offline),
            (Stopping, Online),
            (Starting, Online),
            (Provisioning, Stopping),
            (Requested, Stopped),
        ] {
            assert!(!allowed(from, to), "{from:?} -> {to:?} must be refused");
        }
    }

    fn machine(id: &str) -> MachineRecord {
        MachineRecord {
            id: id.into(),
            cluster: "pool".into(),
            project: "team".into(),
            provider_id: None,
            region: None,
            zone: None,
            client_token: format!("t-{id}"),
            spec: MachineSpec {
                cpus: 4,
                memory_mib: 8192,
                ..MachineSpec::default()
            },
            addresses: Vec::new(),
            labels: Default::default(),
            state: Requested,
            reason: None,
            host_key_fingerprint: None,
            billing_started_at: None,
            created_by: "alice".into(),
            created_at: 1_000,
            updated_at: 1_000,
        }
    }

    /// A machine's moves are stored with its history and published, in one transaction
    /// each; a refused move writes nothing.
    fn moves_are_recorded_published_and_refused_whole(store: &Store) {
        let write = |f: &mut dyn FnMut(&dyn WriteTx) -> Result<MachineRecord, LifecycleError>| {
            store.write_blocking(Durability::Immediate, |tx| f(tx))
        };
        write(&mut |tx| {
            record_new(tx, &machine("m-1"), "alice", None)?;
            Ok(machine("m-1"))
        })
        .unwrap();
        write(&mut |tx| transition(tx, "m-1", Provisioning, "berth", None, 2_000)).unwrap();
        let failed = write(&mut |tx| {
            transition(
                tx,
                "m-1",
                Failed,
                "berth",
                Some("InsufficientInstanceCapacity"),
                3_000,
            )
        })
        .unwrap();
        assert_eq!(failed.state, Failed);
        assert_eq!(
            failed.reason.as_deref(),
            Some("InsufficientInstanceCapacity")
        );
        let refused = write(&mut |tx| transition(tx, "m-1", Online, "alice", None, 4_000));
        assert!(
            matches!(
                refused,
                Err(LifecycleError::NotAllowed {
                    from: "failed",
                    to: "online",
                    ..
                })
            ),
            "{refused:?}"
        );
        assert!(matches!(
            write(&mut |tx| transition(tx, "m-9", Online, "alice", None, 4_000)),
            Err(LifecycleError::NotFound(_))
        ));
        // PostgreSQL numbers events once committed (redb as they are written): number
        // them, then read the machine, its history and the feed.
        events::Feed::new(store.clone()).sequence().unwrap();
        let (now, history, events) = store
            .read_blocking(|tx| {
                Ok::<_, StoreError>((
                    tx.scheduling().machine("m-1")?,
                    tx.scheduling().transitions("m-1")?,
                    events::read(tx, "lifecycle-test", 100)?.events,
                ))
            })
            .unwrap();
        assert_eq!(now.unwrap().updated_at, 3_000);
        let moves: Vec<_> = history.iter().map(|t| (t.seq, t.from, t.to)).collect();
        assert_eq!(
            moves,
            [
                (1, None, Requested),
                (2, Some(Requested), Provisioning),
                (3, Some(Provisioning), Failed)
            ]
        );
        assert_eq!(
            history[2].reason.as_deref(),
            Some("InsufficientInstanceCapacity")
        );
        assert_eq!(history[0].actor, "alice");
        let published: Vec<_> = events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Machine(t) => Some((t.machine.as_str(), t.from, t.to)),
                Event::Registry(_) | Event::Budget(_) => None,
            })
            .collect();
        assert_eq!(
            published,
            [
                ("m-1", None, Requested),
                ("m-1", Some(Requested), Provisioning),
                ("m-1", Some(Provisioning), Failed)
            ]
        );
    }

    #[test]
    fn on_redb() {
        let (store, _dir) = crate::storage::testing::redb_store();
        moves_are_recorded_published_and_refused_whole(&store);
    }

    #[test]
    fn on_postgres() {
        moves_are_recorded_published_and_refused_whole(&crate::storage::testing::postgres_store());
    }
}
