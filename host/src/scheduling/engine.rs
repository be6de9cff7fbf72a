//! The scheduling engine: runs machine operations as jobs of the shared runner (kinds
//! `machine-create`, `machine-retire`, `machine-stop`, `machine-start` and
//! `machine-orphan-delete`), each held by one node under a lease and taken
//! over by another when its node dies, moves draining machines to `drained` when their
//! drain period is over, and runs the health checks (`health.rs`).
//!
//! Every step of an operation is a lifecycle move committed on its own, and each step
//! looks at where the machine is before it acts, so an operation resumed after a crash or
//! a takeover goes on from where it was: a pool host is allocated once, a machine that
//! answered is not probed again.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use berth_plugin_runtime::provider::Power;
use futures::future::BoxFuture;

use super::lifecycle::{self, LifecycleError};
use super::{ClusterRecord, Scheduling, pool, probe, reconcile, stop_start};
use crate::jobs::lease::{self, Claim};
use crate::jobs::{JobFilter, RunState, queue};
use crate::storage::store::{Durability, StoreError, StoreResult, now_millis};
use crate::storage::tables::scheduling::{MachineFilter, MachineRecord, MachineState};

/// The job kind of a create.
pub const CREATE: &str = "machine-create";
/// The job kind of a retire.
pub const RETIRE: &str = "machine-retire";

/// How often the engine looks for work when nothing wakes it.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// How long one reachability probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Pause between probes of a machine that did not answer yet.
const PROBE_PAUSE: Duration = Duration::from_secs(1);

/// The reason of a drain's end.
const DRAINED: &str = "drain period over";

/// The reason of a provider machine's move online where its cluster probes nothing.
pub(super) const UNPROBED_ONLINE: &str = "running; the cluster probes nothing";

/// The actor machine moves made by berth itself carry.
pub const BERTH: &str = "berth";

impl Scheduling {
    /// The engine's loop, for the caller's supervisor.
    pub fn start(self: &Arc<Self>) -> impl FnMut() -> BoxFuture<'static, ()> + Send + 'static {
        let this = self.clone();
        move || {
            let this = this.clone();
            Box::pin(async move { this.run_engine().await })
        }
    }

    async fn run_engine(self: Arc<Self>) {
        let mut last_health: Option<std::time::Instant> = None;
        let mut last_reconcile: Option<std::time::Instant> = None;
        let health_every = Duration::from_secs(self.config.health_interval_secs.max(1));
        let reconcile_every = Duration::from_secs(self.config.reconcile_interval_secs.max(1));
        loop {
            if last_reconcile.is_none_or(|t| t.elapsed() >= reconcile_every) {
                // On its own task: a slow provider must not hold up operations here.
                self.start_reconcile();
                last_reconcile = Some(std::time::Instant::now());
            }
            if last_health.is_none_or(|t| t.elapsed() >= health_every) {
                if let Err(e) = self.check_health().await {
                    tracing::error!(error = %e, "scheduling: health checks failed");
                }
                last_health = Some(std::time::Instant::now());
            }
            if let Err(e) = self.start_operations().await {
                tracing::error!(error = %e, "scheduling: starting machine operations failed");
            }
            if let Err(e) = self.finish_drains().await {
                tracing::error!(error = %e, "scheduling: finishing drains failed");
            }
            if let Err(e) = self.deliver_webhooks().await {
                tracing::error!(error = %e, "scheduling: delivering webhooks failed");
            }
            self.start_accrual();
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(IDLE_POLL) => {}
            }
        }
    }

    fn lease_term_ms(&self) -> u64 {
        self.config.job_lease_secs.max(1) * 1000
    }

    /// Claims the operations no live node holds and runs each on a task of its own.
    async fn start_operations(self: &Arc<Self>) -> StoreResult<()> {
        // The operations this node runs already are skipped unread: a burst of creates
        // wakes the engine once per create, and each wake would read them all again.
        let running: std::collections::BTreeSet<u64> = self
            .running
            .lock()
            .expect("running lock")
            .iter()
            .copied()
            .collect();
        let pending = self
            .store
            .read(move |tx| -> StoreResult<Vec<crate::jobs::JobRow>> {
                let unfinished = JobFilter {
                    unfinished: true,
                    except: running,
                    ..JobFilter::default()
                };
                let mut all = queue::jobs(tx, CREATE, &unfinished, usize::MAX)?;
                all.extend(queue::jobs(tx, RETIRE, &unfinished, usize::MAX)?);
                all.extend(queue::jobs(tx, stop_start::STOP, &unfinished, usize::MAX)?);
                all.extend(queue::jobs(tx, stop_start::START, &unfinished, usize::MAX)?);
                all.extend(queue::jobs(
                    tx,
                    reconcile::DELETE_ORPHAN,
                    &unfinished,
                    usize::MAX,
                )?);
                Ok(all)
            })
            .await?;
        let now = now_millis();
        // Only this loop adds to `running`, so what the read skipped is still all of it.
        let claimable: Vec<u64> = pending
            .iter()
            .filter(|job| {
                job.lease
                    .as_ref()
                    .is_none_or(|l| l.node == self.node || l.until <= now)
            })
            .map(|job| job.id)
            .collect();
        if claimable.is_empty() {
            return Ok(());
        }
        // Every claim of the round in one commit: a burst of creates costs one, not one each.
        let (node, term) = (self.node.clone(), self.lease_term_ms());
        let taken = self
            .store
            .write_with(
                Durability::Patient,
                move |tx| -> StoreResult<Vec<(u64, bool)>> {
                    let now = now_millis();
                    let mut taken = Vec::new();
                    for &id in &claimable {
                        if let (Claim::Taken { .. }, started_before) =
                            lease::claim_to_run(tx, id, &node, now, term)?
                        {
                            taken.push((id, started_before));
                        }
                    }
                    Ok(taken)
                },
            )
            .await?;
        for (id, resumed) in taken {
            let Some(job) = pending.iter().find(|j| j.id == id).cloned() else {
                continue;
            };
            self.running.lock().expect("running lock").insert(job.id);
            let this = self.clone();
            tokio::spawn(async move {
                let keeper = tokio::spawn(this.clone().keep_lease(job.id));
                let outcome = this.run_operation(&job.kind, &job.subject, resumed).await;
                keeper.abort();
                // A success is recorded lazily: lost in a crash, the job runs again and
                // finds the machine where the operation left it, so it ends at once. A
                // failure is kept durably: run again, it would find the machine failed
                // and end as if it had succeeded.
                let (state, error, durability) = match outcome {
                    Ok(()) => (RunState::Succeeded, None, Durability::Lazy),
                    Err(e) => (RunState::Failed, Some(e.to_string()), Durability::Patient),
                };
                let recorded = this
                    .store
                    .write_with(durability, move |tx| -> StoreResult<()> {
                        if let Some(mut row) = queue::job(tx.read(), job.id)? {
                            row.state = state;
                            row.error = error.clone();
                            row.finished_at = Some(now_millis());
                            queue::update(tx, &row)?;
                        }
                        Ok(())
                    })
                    .await;
                if let Err(e) = recorded {
                    tracing::error!(job = job.id, error = %e, "scheduling: cannot record an operation's end; it runs again, from where the machine is");
                }
                this.running.lock().expect("running lock").remove(&job.id);
            });
        }
        Ok(())
    }

    /// Renews this node's lease on job `id` three times a term while it runs.
    async fn keep_lease(self: Arc<Self>, id: u64) {
        let every = Duration::from_millis((self.lease_term_ms() / 3).max(100));
        loop {
            tokio::time::sleep(every).await;
            let (node, term) = (self.node.clone(), self.lease_term_ms());
            // Lazily: a renewal lost in a crash died with the node that made it.
            match self
                .store
                .write_with(Durability::Lazy, move |tx| {
                    lease::renew(tx, id, &node, now_millis(), term)
                })
                .await
            {
                Ok(lease::Renewal::Held) => {}
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(job = id, error = %e, "scheduling: cannot renew an operation's lease")
                }
            }
        }
    }

    /// Runs one operation; `resumed` when an earlier try of it started (see
    /// [`lease::claim_to_run`]).
    async fn run_operation(
        &self,
        kind: &str,
        machine: &str,
        resumed: bool,
    ) -> Result<(), OperationError> {
        match kind {
            CREATE => self.create(machine, resumed).await,
            RETIRE => self.retire_now(machine).await,
            stop_start::STOP => self.stop_now(machine).await,
            stop_start::START => self.start_now(machine).await,
            reconcile::DELETE_ORPHAN => self.run_orphan_delete(machine).await,
            other => Err(OperationError::Failed(format!("unknown operation {other}"))),
        }
    }

    pub(super) async fn current(&self, id: &str) -> Result<MachineRecord, OperationError> {
        let owned = id.to_owned();
        self.store
            .read(move |tx| tx.scheduling().machine(&owned))
            .await?
            .ok_or_else(|| OperationError::Failed(format!("machine {id} is gone")))
    }

    /// Records a move berth made itself in the audit log (moves made through the API are
    /// audited by the API, with the caller).
    pub(super) async fn audit_move(&self, id: &str, to: MachineState, reason: Option<&str>) {
        let mut record =
            crate::auth::audit::AuditRecord::new(BERTH, "", "machine.transition", id, "success");
        record.detail = Some(match reason {
            Some(reason) => format!("{}: {reason}", to.as_str()),
            None => to.as_str().to_owned(),
        });
        self.auth.audit.record(record).await;
    }

    /// One move, committed on its own, and audited.
    pub(super) async fn step(
        &self,
        id: &str,
        to: MachineState,
        reason: Option<String>,
    ) -> Result<MachineRecord, OperationError> {
        let (owned, why) = (id.to_owned(), reason.clone());
        let moved = self
            .store
            .write_with(
                Durability::Patient,
                move |tx| -> Result<MachineRecord, OperationError> {
                    Ok(lifecycle::transition(
                        tx,
                        &owned,
                        to,
                        BERTH,
                        why.as_deref(),
                        now_millis(),
                    )?)
                },
            )
            .await?;
        self.audit_move(id, to, reason.as_deref()).await;
        Ok(moved)
    }

    /// The cluster machine `machine` is in.
    pub(super) async fn cluster_of(
        &self,
        machine: &MachineRecord,
    ) -> Result<ClusterRecord, OperationError> {
        let name = machine.cluster.clone();
        self.store
            .read(move |tx| tx.scheduling().cluster(&name))
            .await?
            .ok_or_else(|| OperationError::Failed(format!("cluster {} is gone", machine.cluster)))
    }

    /// Creates machine `id` from wherever its create stopped.
    async fn create(&self, id: &str, resumed: bool) -> Result<(), OperationError> {
        let mut machine = self.current(id).await?;
        let cluster = self.cluster_of(&machine).await?;
        if cluster.provider != pool::PROVIDER {
            return self.create_at_provider(machine, cluster, resumed).await;
        }
        if machine.state == MachineState::Requested {
            let owned = id.to_owned();
            let allocated = self.store.write_blocking(
                Durability::Immediate,
                |tx| -> Result<Result<(), String>, OperationError> {
                    match pool::allocate(tx, &owned, BERTH, now_millis()) {
                        Ok(_) => Ok(Ok(())),
                        // The machine failed, with the reason, in this transaction.
                        Err(e @ pool::PoolError::NoCapacity { .. }) => Ok(Err(e.to_string())),
                        Err(pool::PoolError::Lifecycle(e)) => Err(e.into()),
                        Err(e) => Err(OperationError::Failed(e.to_string())),
                    }
                },
            )?;
            if let Err(why) = allocated {
                self.audit_move(id, MachineState::Failed, Some(&why)).await;
                return Err(OperationError::Failed(why));
            }
            machine = self.current(id).await?;
            self.audit_move(id, MachineState::Provisioning, machine.reason.as_deref())
                .await;
        }
        if machine.state == MachineState::Provisioning {
            // A host with power control is switched on, and waited for, first.
            if let Some(host) = self.pool_host_of(&machine).await?
                && host.power.is_some()
            {
                if let Err(why) = self.switch_host(&cluster, &host, Power::Start).await {
                    self.fail_and_release(id, &why).await?;
                    return Err(OperationError::Failed(why));
                }
                machine = self
                    .step(id, MachineState::Initializing, Some("powered on".into()))
                    .await?;
            } else {
                machine = self.step(id, MachineState::Initializing, None).await?;
            }
        }
        self.bring_online(machine, &cluster, Silence::GiveUp).await
    }

    /// The pool host machine `machine` holds, if any.
    pub(super) async fn pool_host_of(
        &self,
        machine: &MachineRecord,
    ) -> StoreResult<Option<crate::storage::tables::scheduling::PoolHostRecord>> {
        let (cluster, host) = (
            machine.cluster.clone(),
            machine.provider_id.clone().unwrap_or_default(),
        );
        self.store
            .read(move |tx| tx.scheduling().pool_host(&cluster, &host))
            .await
    }

    /// Powers off a host berth released, where it has power control; a failure is logged,
    /// as the release stands.
    async fn power_off_released(
        &self,
        cluster: &ClusterRecord,
        host: Option<crate::storage::tables::scheduling::PoolHostRecord>,
    ) {
        if let Some(host) = host.filter(|h| h.power.is_some())
            && let Err(why) = self.switch_host(cluster, &host, Power::Stop).await
        {
            tracing::warn!(host = %host.name, error = %why, "scheduling: a released host did not power off");
        }
    }

    /// Takes an initializing machine online once it answers its probe. Host
    /// initialisation fills this step later; until then a machine is online once it
    /// answers (or at once, where its cluster probes nothing). `silence` says what a
    /// machine that never answers comes to.
    pub(super) async fn bring_online(
        &self,
        machine: MachineRecord,
        cluster: &ClusterRecord,
        silence: Silence,
    ) -> Result<(), OperationError> {
        let id = machine.id.as_str();
        if machine.state != MachineState::Initializing {
            // Moved on by someone else (retired, failed, or online already).
            return Ok(());
        }
        let Some(target) = self.probe_target(&machine).await? else {
            if cluster.provider == pool::PROVIDER {
                return Err(OperationError::Failed(format!(
                    "machine {id} has no pool host"
                )));
            }
            if cluster.probe != crate::storage::tables::scheduling::Probe::None {
                // A probe is asked for, and the provider gave no address to probe.
                let why = "the provider gave it no address to probe".to_string();
                match silence {
                    Silence::GiveUp => self.fail_and_delete(&machine, cluster, &why).await?,
                    Silence::Offline => self.silent_offline(id, &why).await?,
                }
                return Err(OperationError::Failed(why));
            }
            self.step(id, MachineState::Online, Some(UNPROBED_ONLINE.into()))
                .await?;
            return Ok(());
        };
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(self.config.initialize_timeout_secs);
        loop {
            let answered = probe::answers(&target, &self.http, PROBE_TIMEOUT).await;
            if answered {
                self.step(
                    id,
                    MachineState::Online,
                    Some(format!("answers at {target}")),
                )
                .await?;
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let why = format!(
                    "did not answer at {target} within {} s",
                    self.config.initialize_timeout_secs
                );
                match silence {
                    Silence::Offline => self.silent_offline(id, &why).await?,
                    Silence::GiveUp if cluster.provider == pool::PROVIDER => {
                        self.fail_and_release(id, &why).await?
                    }
                    Silence::GiveUp => self.fail_and_delete(&machine, cluster, &why).await?,
                }
                return Err(OperationError::Failed(why));
            }
            // Someone may have retired it meanwhile.
            if self.current(id).await?.state != MachineState::Initializing {
                return Ok(());
            }
            tokio::time::sleep(PROBE_PAUSE).await;
        }
    }

    /// Takes a started machine that does not answer offline as unhealthy: health brings
    /// it online once it answers.
    async fn silent_offline(&self, id: &str, why: &str) -> Result<(), OperationError> {
        self.step_if(
            id,
            MachineState::Initializing,
            MachineState::Offline,
            Some(format!(
                "{} {why} after its start",
                super::health::UNHEALTHY
            )),
        )
        .await?;
        Ok(())
    }

    /// Where machine `machine` is probed (see `probe.rs`), if anywhere.
    pub(super) async fn probe_target(
        &self,
        machine: &MachineRecord,
    ) -> StoreResult<Option<probe::Target>> {
        let (cluster, host) = (
            machine.cluster.clone(),
            machine.provider_id.clone().unwrap_or_default(),
        );
        let (cluster, pool_host) = self
            .store
            .read(move |tx| -> StoreResult<_> {
                Ok((
                    tx.scheduling().cluster(&cluster)?,
                    tx.scheduling().pool_host(&cluster, &host)?,
                ))
            })
            .await?;
        Ok(cluster.and_then(|c| probe::target(machine, &c, pool_host.as_ref())))
    }

    async fn fail_and_release(&self, id: &str, why: &str) -> Result<(), OperationError> {
        let released = self
            .release_and_move(id, MachineState::Failed, Some(why.to_owned()))
            .await?;
        self.audit_move(id, MachineState::Failed, Some(why)).await;
        if let Some(cluster) = self.cluster_named(&released).await {
            self.power_off_released(&cluster, released).await;
        }
        Ok(())
    }

    /// Releases machine `id`'s pool host and moves the machine to `to`, in one commit;
    /// answers the host released, if any.
    async fn release_and_move(
        &self,
        id: &str,
        to: MachineState,
        reason: Option<String>,
    ) -> Result<Option<crate::storage::tables::scheduling::PoolHostRecord>, OperationError> {
        let owned = id.to_owned();
        self.store
            .write_with(
                Durability::Patient,
                move |tx| -> Result<_, OperationError> {
                    let host = pool::release(tx, &owned)
                        .map_err(|e| OperationError::Failed(e.to_string()))?;
                    lifecycle::transition(tx, &owned, to, BERTH, reason.as_deref(), now_millis())?;
                    Ok(host)
                },
            )
            .await
    }

    /// The pool a released host belongs to.
    async fn cluster_named(
        &self,
        host: &Option<crate::storage::tables::scheduling::PoolHostRecord>,
    ) -> Option<ClusterRecord> {
        let name = host.as_ref().filter(|h| h.power.is_some())?.cluster.clone();
        self.store
            .read(move |tx| tx.scheduling().cluster(&name))
            .await
            .ok()
            .flatten()
    }

    /// Retires machine `id`: deletes it at its provider or releases its pool host, then
    /// records it retired.
    async fn retire_now(&self, id: &str) -> Result<(), OperationError> {
        let machine = self.current(id).await?;
        if machine.state != MachineState::Retiring {
            return Ok(());
        }
        let cluster = self.cluster_of(&machine).await?;
        if cluster.provider != pool::PROVIDER {
            return self.retire_at_provider(machine, cluster).await;
        }
        let released = self
            .release_and_move(id, MachineState::Retired, None)
            .await?;
        self.audit_move(id, MachineState::Retired, None).await;
        self.power_off_released(&cluster, released).await;
        Ok(())
    }

    /// Draining machines whose drain period is over are drained.
    async fn finish_drains(&self) -> StoreResult<()> {
        let drain_ms = self.config.drain_secs * 1000;
        let due: Vec<String> = self
            .store
            .read(move |tx| -> StoreResult<Vec<String>> {
                let now = now_millis();
                Ok(tx
                    .scheduling()
                    .machines(&MachineFilter {
                        states: vec![MachineState::Draining],
                        ..MachineFilter::default()
                    })?
                    .into_iter()
                    .filter(|m| m.updated_at + drain_ms <= now)
                    .map(|m| m.id)
                    .collect())
            })
            .await?;
        for id in due {
            let owned = id.clone();
            let moved = self
                .store
                .write_with(
                    Durability::Patient,
                    move |tx| -> Result<bool, LifecycleError> {
                        // Only if it is still draining: an operator may have moved it.
                        if tx
                            .scheduling()
                            .machine(&owned)?
                            .is_some_and(|m| m.state == MachineState::Draining)
                        {
                            lifecycle::transition(
                                tx,
                                &owned,
                                MachineState::Drained,
                                BERTH,
                                Some(DRAINED),
                                now_millis(),
                            )?;
                            return Ok(true);
                        }
                        Ok(false)
                    },
                )
                .await;
            match moved {
                Ok(true) => {
                    self.audit_move(&id, MachineState::Drained, Some(DRAINED))
                        .await
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "scheduling: cannot finish a drain"),
            }
        }
        Ok(())
    }
}

/// What a machine that never answers its probe while coming online comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Silence {
    /// A new machine: failed, and deleted at its provider (or its pool host released).
    GiveUp,
    /// A machine started again: offline as unhealthy, never deleted (it has its data).
    Offline,
}

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    /// It cannot go on; the reason is on the machine too.
    #[error("{0}")]
    Failed(String),
    /// A move was refused.
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    /// The store failed; the operation runs again.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The running operations of this node, by job id.
pub(super) type Running = std::sync::Mutex<HashSet<u64>>;
