//! Stop and start: a machine switched off at its provider (or, on a physical pool, by its
//! host's BMC) keeps its disks, its provider id and its pool host, and costs its stopped
//! (disk) price where its cluster charges one (`ledger::billed_phase`). A stop or start
//! is recorded with its job (`machine-stop`, `machine-start`) in one transaction; the job
//! looks at where the machine is before it acts, so one resumed after a crash or a
//! takeover goes on from there, and switching is idempotent at every provider.

use std::time::Duration;

use berth_plugin_runtime::provider::{self as wire, AddressKind, ErrorKind, Power};

use super::engine::{self, BERTH, OperationError, Silence};
use super::lifecycle::{self, LifecycleError};
use super::machines::MachineView;
use super::provider::region_of;
use super::{
    ClusterRecord, MachineRecord, MachineState, Scheduling, SchedulingError, SchedulingResult, pool,
};
use crate::jobs::{JobFilter, queue};
use crate::storage::store::{Durability, WriteTx, now_millis};
use crate::storage::tables::scheduling::Probe;

/// The job kind of a stop.
pub const STOP: &str = "machine-stop";
/// The job kind of a start.
pub const START: &str = "machine-start";

/// Pause between two reads of a machine that is switching.
const POLL_PAUSE: Duration = Duration::from_secs(1);

/// The states a machine may be stopped from: it runs, whether or not it takes work.
const RUNNING: [MachineState; 4] = [
    MachineState::Online,
    MachineState::Draining,
    MachineState::Drained,
    MachineState::Offline,
];

impl Scheduling {
    /// Stops machine `id`: it goes `stopping` at once (it takes no more work; drain it
    /// first to move work away gently) and a job switches it off. Stopping a machine that
    /// is stopping or stopped answers it as it is. A pool host berth cannot switch off
    /// (no power control) is refused.
    pub async fn stop(
        &self,
        id: &str,
        actor: &str,
        reason: Option<String>,
    ) -> SchedulingResult<MachineView> {
        let (id, actor) = (id.to_owned(), actor.to_owned());
        let stopping = self
            .store
            .write(move |tx| -> SchedulingResult<MachineRecord> {
                let machine = existing(tx, &id)?;
                match machine.state {
                    MachineState::Stopped => return Ok(machine),
                    MachineState::Stopping => {
                        requeue_if_idle(tx, STOP, &id)?;
                        return Ok(machine);
                    }
                    state if RUNNING.contains(&state) => {}
                    state => {
                        return Err(LifecycleError::NotAllowed {
                            machine: id.clone(),
                            from: state.as_str(),
                            to: MachineState::Stopping.as_str(),
                        }
                        .into());
                    }
                }
                refuse_unpowered_pool_host(tx, &machine)?;
                let now = now_millis();
                let moved = lifecycle::transition(
                    tx,
                    &id,
                    MachineState::Stopping,
                    &actor,
                    reason.as_deref(),
                    now,
                )?;
                queue::enqueue(tx, STOP, &id, serde_json::json!({}), now)?;
                Ok(moved)
            })
            .await?;
        self.wake.notify_one();
        Ok(stopping.into())
    }

    /// Starts stopped machine `id`: it goes `starting` and a job switches it on, waits
    /// until it runs, records its addresses (a cloud machine may come back with new
    /// ones) and brings it online as a new machine is, once it answers its probe.
    /// Starting a machine that is starting or running answers it as it is.
    pub async fn start_machine(&self, id: &str, actor: &str) -> SchedulingResult<MachineView> {
        let (id, actor) = (id.to_owned(), actor.to_owned());
        let starting = self
            .store
            .write(move |tx| -> SchedulingResult<MachineRecord> {
                let machine = existing(tx, &id)?;
                match machine.state {
                    MachineState::Starting => {
                        requeue_if_idle(tx, START, &id)?;
                        return Ok(machine);
                    }
                    MachineState::Initializing => return Ok(machine),
                    state if RUNNING.contains(&state) => return Ok(machine),
                    _ => {}
                }
                let now = now_millis();
                let moved =
                    lifecycle::transition(tx, &id, MachineState::Starting, &actor, None, now)?;
                queue::enqueue(tx, START, &id, serde_json::json!({}), now)?;
                Ok(moved)
            })
            .await?;
        self.wake.notify_one();
        Ok(starting.into())
    }

    /// The stop job: switches machine `id` off and waits until its provider (or BMC) says
    /// it is off. A stop the provider refuses, or that does not finish in
    /// `scheduling.initialize_timeout_secs`, leaves the machine `offline` with the reason
    /// (it may still run; reconciliation sees it if it stops later).
    pub(super) async fn stop_now(&self, id: &str) -> Result<(), OperationError> {
        let machine = self.current(id).await?;
        if machine.state != MachineState::Stopping {
            return Ok(());
        }
        let cluster = self.cluster_of(&machine).await?;
        let switched = if cluster.provider == pool::PROVIDER {
            self.switch_pool_machine(&machine, &cluster, Power::Stop)
                .await
                .map(|()| "powered off".to_owned())
        } else {
            self.switch_at_provider(&machine, &cluster, Power::Stop)
                .await
                .map(|found| format!("{} stopped at the provider", found.id))
        };
        match switched {
            Ok(reason) => {
                self.step_if(
                    id,
                    MachineState::Stopping,
                    MachineState::Stopped,
                    Some(reason),
                )
                .await?;
                Ok(())
            }
            Err(ended) => {
                self.not_switched(
                    id,
                    ended,
                    MachineState::Stopping,
                    MachineState::Offline,
                    "stop",
                )
                .await
            }
        }
    }

    /// Where a stop or start that did not switch machine `id` leaves it: nothing more
    /// when someone else moved it; retired when its provider no longer has it; back from
    /// `waiting_in` to `back_to`, saying why, when the switch failed.
    async fn not_switched(
        &self,
        id: &str,
        ended: Switch,
        waiting_in: MachineState,
        back_to: MachineState,
        verb: &str,
    ) -> Result<(), OperationError> {
        match ended {
            Switch::MovedOn => Ok(()),
            Switch::Gone(reason) => {
                self.retire_gone(id, &reason).await;
                Ok(())
            }
            Switch::Failed(why) => {
                self.step_if(
                    id,
                    waiting_in,
                    back_to,
                    Some(format!("the {verb} failed: {why}")),
                )
                .await?;
                Err(OperationError::Failed(why))
            }
        }
    }

    /// The start job: switches machine `id` on, waits until it runs, records where it
    /// is, and brings it online once it answers. A start the provider refuses leaves it
    /// `stopped` with the reason; one that runs but does not answer in time goes
    /// `offline` as unhealthy (health brings it online when it answers), never deleted.
    pub(super) async fn start_now(&self, id: &str) -> Result<(), OperationError> {
        let machine = self.current(id).await?;
        let cluster = self.cluster_of(&machine).await?;
        if machine.state == MachineState::Initializing {
            // Resumed after the machine was seen running.
            return self.bring_online(machine, &cluster, Silence::Offline).await;
        }
        if machine.state != MachineState::Starting {
            return Ok(());
        }
        let started = if cluster.provider == pool::PROVIDER {
            match self
                .switch_pool_machine(&machine, &cluster, Power::Start)
                .await
            {
                Ok(()) => self
                    .step_if(
                        id,
                        MachineState::Starting,
                        MachineState::Initializing,
                        Some("powered on".into()),
                    )
                    .await
                    .map_err(Switch::from),
                Err(e) => Err(e),
            }
        } else {
            match self
                .switch_at_provider(&machine, &cluster, Power::Start)
                .await
            {
                Ok(found) => self
                    .record_started(id, &found, &cluster)
                    .await
                    .map_err(Switch::from),
                Err(e) => Err(e),
            }
        };
        match started {
            Ok(Some(machine)) => self.bring_online(machine, &cluster, Silence::Offline).await,
            Ok(None) => Ok(()),
            Err(ended) => {
                self.not_switched(
                    id,
                    ended,
                    MachineState::Starting,
                    MachineState::Stopped,
                    "start",
                )
                .await
            }
        }
    }

    /// Switches a pool machine's host with its BMC (`power.rs`).
    async fn switch_pool_machine(
        &self,
        machine: &MachineRecord,
        cluster: &ClusterRecord,
        power: Power,
    ) -> Result<(), Switch> {
        let host = self
            .pool_host_of(machine)
            .await
            .map_err(|e| Switch::Failed(e.to_string()))?;
        match host {
            Some(host) if host.power.is_some() => self
                .switch_host(cluster, &host, power)
                .await
                .map_err(Switch::Failed),
            Some(host) => Err(Switch::Failed(format!(
                "pool host {} has no power control",
                host.name
            ))),
            None => Err(Switch::Failed(format!(
                "machine {} holds no pool host",
                machine.id
            ))),
        }
    }

    /// Asks the provider to switch machine `machine` and reads it until it is stopped
    /// (or running), read with every other operation's reads of its cluster and region.
    async fn switch_at_provider(
        &self,
        machine: &MachineRecord,
        cluster: &ClusterRecord,
        power: Power,
    ) -> Result<wire::Machine, Switch> {
        let provider = self.provider_of(cluster).await.map_err(Switch::Failed)?;
        let (Some(region), Some(provider_id)) =
            (region_of(machine, cluster), machine.provider_id.clone())
        else {
            return Err(Switch::Failed(
                "the machine has no provider id or region".into(),
            ));
        };
        let (wanted, waiting_in) = match power {
            Power::Stop => (wire::MachineState::Stopped, MachineState::Stopping),
            _ => (wire::MachineState::Running, MachineState::Starting),
        };
        match provider.switch(power, &region, &provider_id).await {
            Ok(()) => {}
            Err(e) if e.kind() == Some(ErrorKind::NotFound) => {
                return Err(Switch::Gone(format!(
                    "{provider_id} is gone at the provider (deleted out of band)"
                )));
            }
            Err(e) => {
                return Err(Switch::Failed(format!(
                    "{} refused: {e}",
                    provider.plugin_name()
                )));
            }
        }
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(self.config.initialize_timeout_secs);
        loop {
            let reading = self
                .reads
                .read(&provider, &cluster.name, &region, &provider_id, POLL_PAUSE)
                .await;
            let now_in = match reading {
                Ok(Some(found)) if found.state == wanted => return Ok(found),
                Ok(Some(found))
                    if matches!(
                        found.state,
                        wire::MachineState::Terminated | wire::MachineState::Terminating
                    ) =>
                {
                    return Err(Switch::Gone(format!(
                        "{provider_id} was terminated at the provider out of band"
                    )));
                }
                Ok(Some(found)) if found.state == wire::MachineState::Error => {
                    return Err(Switch::Failed(format!(
                        "the provider reports an error: {}",
                        found.state_reason.as_deref().unwrap_or("no reason given")
                    )));
                }
                Ok(Some(found)) => found.state,
                Ok(None) => {
                    return Err(Switch::Gone(format!(
                        "{provider_id} is gone at the provider (deleted out of band)"
                    )));
                }
                Err(e) if e.kind() == Some(ErrorKind::NotFound) => {
                    return Err(Switch::Gone(format!(
                        "{provider_id} is gone at the provider (deleted out of band)"
                    )));
                }
                Err(e) => return Err(Switch::Failed(format!("reading it failed: {e}"))),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(Switch::Failed(format!(
                    "still {} {} s after asking",
                    format!("{now_in:?}").to_lowercase(),
                    self.config.initialize_timeout_secs
                )));
            }
            // Retired (or otherwise moved) meanwhile: the retire takes it from here.
            if self
                .current(&machine.id)
                .await
                .map_err(|e| Switch::Failed(e.to_string()))?
                .state
                != waiting_in
            {
                return Err(Switch::MovedOn);
            }
        }
    }

    /// Records where a started machine is now (a cloud machine's public address changes
    /// across a stop) and moves it `initializing` — and `online` at once where its
    /// cluster probes nothing — in one transaction. `None` when it was moved meanwhile.
    async fn record_started(
        &self,
        id: &str,
        found: &wire::Machine,
        cluster: &ClusterRecord,
    ) -> Result<Option<MachineRecord>, OperationError> {
        let (owned, found) = (id.to_owned(), found.clone());
        let unprobed = cluster.probe == Probe::None;
        let reason = format!("{} runs at the provider", found.id);
        let why = reason.clone();
        let moved = self
            .store
            .write_with(
                Durability::Patient,
                move |tx| -> Result<Option<MachineRecord>, OperationError> {
                    let Some(mut machine) = tx.scheduling().machine(&owned)? else {
                        return Ok(None);
                    };
                    if machine.state != MachineState::Starting {
                        return Ok(None);
                    }
                    if !found.addresses.is_empty() {
                        let mut addresses: Vec<_> = found.addresses.iter().collect();
                        addresses.sort_by_key(|a| a.kind != AddressKind::Private);
                        machine.addresses = addresses.into_iter().map(|a| a.ip.clone()).collect();
                    }
                    if found.zone.is_some() {
                        machine.zone = found.zone.clone();
                    }
                    tx.scheduling().put_machine(&machine)?;
                    let now = now_millis();
                    let moved = lifecycle::transition(
                        tx,
                        &owned,
                        MachineState::Initializing,
                        BERTH,
                        Some(&why),
                        now,
                    )?;
                    if unprobed {
                        return Ok(Some(lifecycle::transition(
                            tx,
                            &owned,
                            MachineState::Online,
                            BERTH,
                            Some(engine::UNPROBED_ONLINE),
                            now,
                        )?));
                    }
                    Ok(Some(moved))
                },
            )
            .await?;
        if moved.is_some() {
            self.audit_move(id, MachineState::Initializing, Some(&reason))
                .await;
            if unprobed {
                self.audit_move(id, MachineState::Online, Some(engine::UNPROBED_ONLINE))
                    .await;
            }
        }
        Ok(moved)
    }

    /// Moves machine `id` from `from` to `to`, only if it is still in `from` (an operator
    /// or reconciliation may have moved it meanwhile); audited. The machine as moved.
    pub(super) async fn step_if(
        &self,
        id: &str,
        from: MachineState,
        to: MachineState,
        reason: Option<String>,
    ) -> Result<Option<MachineRecord>, OperationError> {
        let (owned, why) = (id.to_owned(), reason.clone());
        let moved = self
            .store
            .write_with(
                Durability::Patient,
                move |tx| -> Result<Option<MachineRecord>, OperationError> {
                    match tx.scheduling().machine(&owned)? {
                        Some(m) if m.state == from => Ok(Some(lifecycle::transition(
                            tx,
                            &owned,
                            to,
                            BERTH,
                            why.as_deref(),
                            now_millis(),
                        )?)),
                        _ => Ok(None),
                    }
                },
            )
            .await?;
        if moved.is_some() {
            self.audit_move(id, to, reason.as_deref()).await;
        }
        Ok(moved)
    }
}

/// How switching a machine ended, short of success.
enum Switch {
    /// Someone else moved the machine meanwhile (a retire); nothing more to do.
    MovedOn,
    /// The provider no longer has it: it is retired, with this reason.
    Gone(String),
    /// The provider refused, or it did not switch in time.
    Failed(String),
}

impl From<OperationError> for Switch {
    fn from(e: OperationError) -> Switch {
        Switch::Failed(e.to_string())
    }
}

/// Machine `id`, or not found.
fn existing(tx: &dyn WriteTx, id: &str) -> SchedulingResult<MachineRecord> {
    tx.scheduling()
        .machine(id)?
        .ok_or_else(|| SchedulingError::NotFound(format!("no machine {id}")))
}

/// Queues a job of `kind` for machine `id` unless one is queued or running: a stop or
/// start whose job failed is tried again when asked again.
fn requeue_if_idle(tx: &dyn WriteTx, kind: &str, id: &str) -> SchedulingResult<()> {
    let unfinished = JobFilter {
        subject: Some(id.to_owned()),
        unfinished: true,
        ..JobFilter::default()
    };
    if queue::jobs(tx.read(), kind, &unfinished, 1)?.is_empty() {
        queue::enqueue(tx, kind, id, serde_json::json!({}), now_millis())?;
    }
    Ok(())
}

/// Refuses to stop a pool machine whose host berth cannot switch off.
fn refuse_unpowered_pool_host(tx: &dyn WriteTx, machine: &MachineRecord) -> SchedulingResult<()> {
    let Some(cluster) = tx.scheduling().cluster(&machine.cluster)? else {
        return Ok(());
    };
    if cluster.provider != pool::PROVIDER {
        return Ok(());
    }
    let host = machine.provider_id.as_deref().unwrap_or_default();
    let powered = tx
        .scheduling()
        .pool_host(&machine.cluster, host)?
        .is_some_and(|h| h.power.is_some());
    if powered {
        Ok(())
    } else {
        Err(SchedulingError::Conflict(format!(
            "machine {} runs on pool host {host}, which has no power control: berth cannot switch it off (set the host's power control, or take the machine offline instead)",
            machine.id
        )))
    }
}
