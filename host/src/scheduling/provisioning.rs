//! Machines at a provider: a create calls the cluster's provider plugin, records what it
//! answered, waits until the machine runs and brings it online; a retire deletes it and
//! waits until it is gone. Each step is committed on its own and looks first at where the
//! machine is, so a create resumed after a crash or a takeover goes on from there. The
//! machine's id is both its client token and a tag on the provider's machine, and the
//! job's claim records durably that it started before anything is sent: a resumed create
//! looks the id up by its tag first, so a machine the provider made before berth could
//! record it is found, never made twice (a first try skips that lookup).

use std::time::Duration;

use berth_plugin_runtime::provider::{self as wire, AddressKind, ErrorKind, ProviderFailure};

use super::engine::{BERTH, OperationError};
use super::provider::{ClusterProvider, create_spec, region_of};
use super::{ClusterRecord, MachineRecord, MachineState, Scheduling, lifecycle};
use crate::storage::store::{Durability, now_millis};
use crate::storage::tables::scheduling::Probe;

/// How long a machine the provider just made may be unknown to its reads (EC2's eventual
/// consistency: `InvalidInstanceID.NotFound` right after `RunInstances`).
const NOT_FOUND_GRACE: Duration = Duration::from_secs(60);

/// Pause between two reads of a machine that is not there yet.
const POLL_PAUSE: Duration = Duration::from_secs(1);

/// A fault hook for the crash test: with this variable set, berth dies at once (no
/// clean-up, as under `kill -9`) after a provider made a machine and before berth
/// recorded it: the one crash point where only the provider's tag remembers the machine.
const CRASH_AFTER_PROVIDER_CREATE: &str = "BERTH_FAULT_CRASH_AFTER_PROVIDER_CREATE";

impl Scheduling {
    /// Creates machine `machine` of provider cluster `cluster` from wherever its create
    /// stopped.
    pub(super) async fn create_at_provider(
        &self,
        mut machine: MachineRecord,
        cluster: ClusterRecord,
        resumed: bool,
    ) -> Result<(), OperationError> {
        let id = machine.id.clone();
        let provider = match self.provider_of(&cluster).await {
            Ok(provider) => provider,
            Err(why) => return self.fail(&id, why).await,
        };
        // What the create answered stands for the first read of the machine.
        let mut answered = None;
        if machine.state == MachineState::Requested {
            let spec = match create_spec(&machine, &cluster) {
                Ok(spec) => spec,
                Err(why) => return self.fail(&id, why).await,
            };
            // An earlier try of this job may have reached the provider (its claim recorded
            // that it started): then the machine is looked up by its tag before anything
            // is created.
            let created = match self.create_once(&provider, &spec, &id, resumed).await {
                Ok(created) => created,
                // Nothing was made at the provider: failing releases the quota, and
                // nothing is billed.
                Err(e) => {
                    let why = format!("{} refused the create: {e}", provider.plugin_name());
                    return self.fail(&id, why).await;
                }
            };
            if std::env::var_os(CRASH_AFTER_PROVIDER_CREATE).is_some() {
                tracing::error!(machine = %id, "{CRASH_AFTER_PROVIDER_CREATE} is set: dying before recording the machine");
                std::process::abort();
            }
            // Its price, snapshotted as it is made: what its time is charged at from now
            // on, whatever the provider asks of later machines.
            let price = self
                .price_snapshot(
                    &cluster,
                    &provider,
                    &created.region,
                    machine.spec.machine_type.as_deref(),
                )
                .await;
            machine = self
                .record_provider_machine(&id, &created, MachineState::Provisioning, None, price)
                .await?;
            answered = Some(created);
        }
        if machine.state == MachineState::Provisioning {
            machine = match self
                .await_running(&provider, machine, &cluster, answered)
                .await?
            {
                Some(machine) => machine,
                None => return Ok(()),
            };
        }
        self.bring_online(machine, &cluster, super::engine::Silence::GiveUp)
            .await
    }

    /// The provider's machine for `id`: when the create was `resumed`, the one an earlier
    /// try may have made (found by its tag), else a new one. A create that failed in a way
    /// that may have reached the provider (a timeout) is looked up once more before it
    /// counts as failed.
    async fn create_once(
        &self,
        provider: &ClusterProvider<'_>,
        spec: &wire::MachineSpec,
        id: &str,
        resumed: bool,
    ) -> Result<wire::Machine, ProviderFailure> {
        if resumed && let Some(found) = provider.find_by_machine_id(&spec.region, id).await? {
            tracing::info!(machine = id, provider_id = %found.id, "scheduling: the provider already has this machine; not creating it again");
            return Ok(found);
        }
        match provider.create(spec).await {
            Ok(created) => Ok(created),
            Err(e) if e.retryable() => match provider.find_by_machine_id(&spec.region, id).await {
                Ok(Some(found)) => Ok(found),
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Reads machine `machine` until the provider says it runs, then records its
    /// addresses and moves it to `initializing`. `None` when the create ended here: the
    /// machine failed (the provider's error state, a machine gone while being made), or
    /// someone else moved it. `answered` is what the create itself answered, which is
    /// looked at before anything is read; the reads are gathered with other creates' in
    /// the same cluster and region, a [`POLL_PAUSE`] apart.
    async fn await_running(
        &self,
        provider: &ClusterProvider<'_>,
        machine: MachineRecord,
        cluster: &ClusterRecord,
        mut answered: Option<wire::Machine>,
    ) -> Result<Option<MachineRecord>, OperationError> {
        let id = machine.id.clone();
        let (Some(region), Some(provider_id)) =
            (region_of(&machine, cluster), machine.provider_id.clone())
        else {
            self.fail(&id, "provisioning without a provider id or region".into())
                .await?;
            return Ok(None);
        };
        let started = tokio::time::Instant::now();
        let deadline = started + Duration::from_secs(self.config.initialize_timeout_secs);
        // A provider may not know a machine for a while after making it.
        let not_found = || {
            (started.elapsed() > NOT_FOUND_GRACE).then(|| {
                format!(
                    "the provider still does not know {provider_id} {} s after making it",
                    NOT_FOUND_GRACE.as_secs()
                )
            })
        };
        loop {
            let reading = match answered.take() {
                Some(answered) => Ok(Some(answered)),
                None => {
                    self.reads
                        .read(provider, &cluster.name, &region, &provider_id, POLL_PAUSE)
                        .await
                }
            };
            let why = match reading {
                Ok(Some(found)) => match found.state {
                    wire::MachineState::Running => {
                        // Where the cluster probes nothing (and, until host initialisation
                        // exists, nothing initialises it), running is online: both moves
                        // in one commit.
                        let online = (cluster.probe == Probe::None)
                            .then_some(super::engine::UNPROBED_ONLINE);
                        let moved = self
                            .record_provider_machine(
                                &id,
                                &found,
                                MachineState::Initializing,
                                online,
                                None,
                            )
                            .await?;
                        return Ok(Some(moved));
                    }
                    wire::MachineState::Pending | wire::MachineState::Unknown => None,
                    wire::MachineState::Error => Some(format!(
                        "the provider reports an error: {}",
                        found.state_reason.as_deref().unwrap_or("no reason given")
                    )),
                    other => Some(format!(
                        "it became {other:?} while being created{}",
                        found
                            .state_reason
                            .as_deref()
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default()
                    )),
                },
                Ok(None) => not_found(),
                Err(e) if e.kind() == Some(ErrorKind::NotFound) => not_found(),
                Err(e) => Some(format!("reading it failed: {e}")),
            };
            let why = why.or_else(|| {
                (tokio::time::Instant::now() >= deadline).then(|| {
                    format!(
                        "not running within {} s",
                        self.config.initialize_timeout_secs
                    )
                })
            });
            if let Some(why) = why {
                self.fail_and_delete(&machine, cluster, &why).await?;
                return Ok(None);
            }
            // Someone may have retired it meanwhile; the retire deletes it.
            if self.current(&id).await?.state != MachineState::Provisioning {
                return Ok(None);
            }
        }
    }

    /// Records what the provider said of machine `id` (its provider id, zone, addresses,
    /// host key, billing start) and moves it to `to` — and on to `online`, with that
    /// reason, when `then_online` — in one transaction.
    async fn record_provider_machine(
        &self,
        id: &str,
        found: &wire::Machine,
        to: MachineState,
        then_online: Option<&'static str>,
        price: Option<Option<crate::cost::rate::Rate>>,
    ) -> Result<MachineRecord, OperationError> {
        let (owned, found) = (id.to_owned(), found.clone());
        let reason = format!("{} at the provider", found.id);
        let why = reason.clone();
        let moved = self
            .store
            .write_with(
                Durability::Patient,
                move |tx| -> Result<MachineRecord, OperationError> {
                    let mut machine = tx.scheduling().machine(&owned)?.ok_or_else(|| {
                        OperationError::Failed(format!("machine {owned} is gone"))
                    })?;
                    // Where it is goes beside what it was asked to be, which stays as asked (a
                    // create retried with its token is compared with it).
                    machine.provider_id = Some(found.id.clone());
                    machine.region = Some(found.region.clone());
                    if found.zone.is_some() {
                        machine.zone = found.zone.clone();
                    }
                    let mut addresses: Vec<_> = found.addresses.iter().collect();
                    // Private first: what berth and the hosts beside it reach.
                    addresses.sort_by_key(|a| a.kind != AddressKind::Private);
                    machine.addresses = addresses.into_iter().map(|a| a.ip.clone()).collect();
                    machine.host_key_fingerprint = found.host_key_fingerprints.first().cloned();
                    machine.billing_started_at = found
                        .billing_started_at
                        .map(|t| t.seconds * 1000 + u64::from(t.nanoseconds / 1_000_000));
                    tx.scheduling().put_machine(&machine)?;
                    if let Some(rate) = &price {
                        super::ledger::Ledger::snapshot(
                            tx,
                            &owned,
                            machine.created_at,
                            rate.as_ref(),
                        )?;
                    }
                    let moved =
                        lifecycle::transition(tx, &owned, to, BERTH, Some(&why), now_millis())?;
                    match then_online {
                        Some(reason) => Ok(lifecycle::transition(
                            tx,
                            &owned,
                            MachineState::Online,
                            BERTH,
                            Some(reason),
                            now_millis(),
                        )?),
                        None => Ok(moved),
                    }
                },
            )
            .await?;
        self.audit_move(id, to, Some(&reason)).await;
        if let Some(online) = then_online {
            self.audit_move(id, MachineState::Online, Some(online))
                .await;
        }
        Ok(moved)
    }

    /// Fails machine `id` with `why`; the create ends with that error.
    async fn fail(&self, id: &str, why: String) -> Result<(), OperationError> {
        self.step(id, MachineState::Failed, Some(why.clone()))
            .await?;
        Err(OperationError::Failed(why))
    }

    /// Deletes machine `machine` at its provider (nothing may keep running, and costing,
    /// for a machine berth gave up on), then fails it with `why`.
    pub(super) async fn fail_and_delete(
        &self,
        machine: &MachineRecord,
        cluster: &ClusterRecord,
        why: &str,
    ) -> Result<(), OperationError> {
        let mut reason = why.to_owned();
        if let Err(e) = self.delete_at_provider(machine, cluster).await {
            reason = format!("{why}; deleting it at the provider failed: {e}");
        }
        self.step(&machine.id, MachineState::Failed, Some(reason))
            .await?;
        Ok(())
    }

    /// Deletes machine `machine` at its provider and waits until the provider has it no
    /// more. A machine berth never got an id for is looked up by its tag.
    async fn delete_at_provider(
        &self,
        machine: &MachineRecord,
        cluster: &ClusterRecord,
    ) -> Result<(), String> {
        let provider = self.provider_of(cluster).await?;
        let Some(region) = region_of(machine, cluster) else {
            return Ok(());
        };
        let provider_id = match &machine.provider_id {
            Some(id) => id.clone(),
            None => match provider.find_by_machine_id(&region, &machine.id).await {
                Ok(Some(found)) => found.id,
                Ok(None) => return Ok(()),
                Err(e) => return Err(e.to_string()),
            },
        };
        provider
            .delete(&region, &provider_id)
            .await
            .map_err(|e| e.to_string())?;
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(self.config.initialize_timeout_secs);
        // Read with every other create's and retire's reads of the cluster and region.
        loop {
            let reading = self
                .reads
                .read(&provider, &cluster.name, &region, &provider_id, POLL_PAUSE)
                .await;
            match reading {
                Ok(None) => return Ok(()),
                Ok(Some(found)) if found.state == wire::MachineState::Terminated => return Ok(()),
                Err(e) if e.kind() == Some(ErrorKind::NotFound) => return Ok(()),
                Ok(Some(_)) => {}
                Err(e) => return Err(e.to_string()),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "{provider_id} still exists {} s after its delete",
                    self.config.initialize_timeout_secs
                ));
            }
        }
    }

    /// Retires machine `machine` of provider cluster `cluster`: deletes it there, then
    /// records it retired. A delete that fails leaves it `retiring`, with the reason in
    /// the job, to be tried again.
    pub(super) async fn retire_at_provider(
        &self,
        machine: MachineRecord,
        cluster: ClusterRecord,
    ) -> Result<(), OperationError> {
        self.delete_at_provider(&machine, &cluster)
            .await
            .map_err(OperationError::Failed)?;
        self.step(&machine.id, MachineState::Retired, None).await?;
        Ok(())
    }
}
