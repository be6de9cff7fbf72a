//! Reconciliation: every `scheduling.reconcile_interval_secs`, each provider cluster is
//! listed (berth's machines, by the `berth:cluster` tag, every page) and compared with
//! berth's records. A machine deleted out of band (confirmed by a direct read) goes
//! `retired` with the reason; one stopped or started out of band goes `stopped`, or
//! `starting` and back online (what it costs depends on it); a create stuck past twice the initialisation timeout with
//! no operation left to finish it goes `failed` (and what the provider holds is deleted);
//! tagged machines berth keeps no living record of are orphans, logged, and listed, adopted
//! or deleted on command (`orphans`, `adopt`, `delete_orphan`). An administrator may run
//! a cluster's round at once and read what it found (`reconcile_now`).
//!
//! One node reconciles at a time (it holds the lease of the never-ending
//! `machine-reconcile` job). Clusters are reconciled side by side; a cluster whose listing
//! fails (throttled, unreachable, refused) backs off on its own, doubling up to half an
//! hour, and never holds up the others.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use berth_plugin_runtime::provider::{self as wire, Machine};
use serde::Serialize;
use utoipa::ToSchema;

use super::engine::{BERTH, CREATE, OperationError};
use super::machines::MachineView;
use super::provider::{CLUSTER_TAG, MACHINE_ID_TAG, PROJECT_TAG, region_of};
use super::requests::{self, MachineRequest};
use super::{
    ClusterRecord, MachineFilter, MachineRecord, MachineSpec, MachineState, Scheduling,
    SchedulingError, SchedulingResult, lifecycle, pool, stop_start,
};
use crate::jobs::{JobFilter, queue};
use crate::storage::store::{Durability, StoreResult, now_millis};

/// The job kind whose lease says which node reconciles.
pub const RECONCILE: &str = "machine-reconcile";
/// The job kind that deletes an orphan at its provider.
pub const DELETE_ORPHAN: &str = "machine-orphan-delete";

/// The most machines one cluster's listing reads.
const LISTING_LIMIT: usize = 100_000;
/// The longest a failing cluster waits between listings.
const MAX_BACKOFF: Duration = Duration::from_secs(1800);

/// Each failing cluster's failures in a row and when it may be listed again, on this node.
pub(super) type Backoff = std::sync::Mutex<HashMap<String, (u32, Instant)>>;

/// A machine at a provider that carries berth's cluster tag but that berth keeps no
/// living record of.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrphanView {
    /// The provider's id.
    pub provider_id: String,
    /// Its region.
    pub region: String,
    /// Its zone.
    pub zone: Option<String>,
    /// Its state at the provider.
    pub state: String,
    /// Its machine type.
    pub machine_type: String,
    /// Its image.
    pub image: String,
    /// The berth machine id it is tagged with, if any.
    pub machine_id: Option<String>,
    /// The project it is tagged with, if any.
    pub project: Option<String>,
}

/// What one reconcile round of a cluster found and did.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct ReconcileReport {
    /// The cluster.
    pub cluster: String,
    /// Machines its provider listed with berth's tag for it.
    pub listed: usize,
    /// berth's records of machines in it (every state).
    pub records: usize,
    /// Machines retired because their provider no longer has them.
    pub retired: Vec<String>,
    /// Creates failed because nothing was left to finish them.
    pub failed: Vec<String>,
    /// Machines recorded stopped because their provider stopped them out of band.
    pub stopped: Vec<String>,
    /// Stopped machines being brought back because their provider runs them again.
    pub started: Vec<String>,
    /// Tagged machines berth keeps no living record of (`berth cluster orphans`).
    pub orphans: usize,
}

fn orphan_view(m: &Machine) -> OrphanView {
    OrphanView {
        provider_id: m.id.clone(),
        region: m.region.clone(),
        zone: m.zone.clone(),
        state: format!("{:?}", m.state).to_lowercase(),
        machine_type: m.machine_type.clone(),
        image: m.image.clone(),
        machine_id: m.tag(MACHINE_ID_TAG).map(str::to_owned),
        project: m.tag(PROJECT_TAG).map(str::to_owned),
    }
}

fn gone(m: &Machine) -> bool {
    matches!(
        m.state,
        wire::MachineState::Terminated | wire::MachineState::Terminating
    )
}

/// Whether a record still stands for a machine at the provider: anything but retired,
/// failed, or a request that never reached it.
fn stands_for_provider_machine(record: &MachineRecord) -> bool {
    record.provider_id.is_some() && lifecycle::holds_resources(record.state)
}

/// Orphans among `listed`: living machines no standing record holds.
fn orphans_of<'a>(listed: &'a [Machine], records: &[MachineRecord]) -> Vec<&'a Machine> {
    let held: HashSet<&str> = records
        .iter()
        .filter(|r| stands_for_provider_machine(r))
        .filter_map(|r| r.provider_id.as_deref())
        .collect();
    listed
        .iter()
        .filter(|m| !gone(m) && !held.contains(m.id.as_str()))
        .collect()
}

impl Scheduling {
    /// One round, on the node holding the reconcile lease: every provider cluster, side
    /// by side.
    pub(super) async fn reconcile(&self) -> StoreResult<()> {
        let clusters: Vec<ClusterRecord> = self
            .store
            .read(|tx| tx.scheduling().clusters())
            .await?
            .into_iter()
            .filter(|c| c.provider != pool::PROVIDER)
            .collect();
        // Nothing to reconcile: no lease taken, and no job made.
        if clusters.is_empty() {
            return Ok(());
        }
        let term = self.config.reconcile_interval_secs.max(1) * 3 * 1000;
        if !self.holds_standing_lease(RECONCILE, term).await? {
            return Ok(());
        }
        let rounds = clusters.iter().map(|c| self.reconcile_cluster(c));
        futures::future::join_all(rounds).await;
        Ok(())
    }

    /// Lists `cluster` (unless it is backing off) and acts on what differs.
    async fn reconcile_cluster(&self, cluster: &ClusterRecord) {
        let waiting = self
            .backoff
            .lock()
            .expect("backoff lock")
            .get(&cluster.name)
            .is_some_and(|(_, until)| Instant::now() < *until);
        if waiting {
            return;
        }
        match self.reconcile_listed(cluster).await {
            Ok(_) => {
                self.backoff
                    .lock()
                    .expect("backoff lock")
                    .remove(&cluster.name);
            }
            Err(why) => {
                let mut backoff = self.backoff.lock().expect("backoff lock");
                let failures = backoff.get(&cluster.name).map_or(0, |(n, _)| *n) + 1;
                let base = Duration::from_secs(self.config.reconcile_interval_secs.max(1));
                let wait = base.saturating_mul(1 << failures.min(16)).min(MAX_BACKOFF);
                backoff.insert(cluster.name.clone(), (failures, Instant::now() + wait));
                tracing::warn!(cluster = %cluster.name, failures, wait_secs = wait.as_secs(), error = %why, "scheduling: cannot reconcile the cluster; backing off");
            }
        }
    }

    /// Runs provider cluster `name`'s round now, on this node, and answers what it found.
    pub async fn reconcile_now(&self, name: &str) -> SchedulingResult<ReconcileReport> {
        let owned = name.to_owned();
        let cluster = self
            .store
            .read(move |tx| tx.scheduling().cluster(&owned))
            .await?
            .ok_or_else(|| SchedulingError::NotFound(format!("no cluster {name}")))?;
        if cluster.provider == pool::PROVIDER {
            return Err(SchedulingError::Invalid(format!(
                "cluster {name} is a physical pool: berth's own tables are its inventory, so there is nothing to reconcile"
            )));
        }
        self.reconcile_listed(&cluster)
            .await
            .map_err(|e| SchedulingError::Provider(format!("reconciling cluster {name}: {e}")))
    }

    async fn reconcile_listed(&self, cluster: &ClusterRecord) -> Result<ReconcileReport, String> {
        let provider = self.provider_of(cluster).await?;
        let listed = provider
            .list_all(
                &[(CLUSTER_TAG.to_owned(), cluster.name.clone())],
                self.config.reconcile_page_size.max(1),
                LISTING_LIMIT,
            )
            .await
            .map_err(|e| e.to_string())?;
        let name = cluster.name.clone();
        let records = self
            .store
            .read(move |tx| {
                tx.scheduling().machines(&MachineFilter {
                    cluster: Some(name),
                    ..MachineFilter::default()
                })
            })
            .await
            .map_err(|e| e.to_string())?;
        let mut report = ReconcileReport {
            cluster: cluster.name.clone(),
            listed: listed.len(),
            records: records.len(),
            ..ReconcileReport::default()
        };
        let living: HashMap<&str, &Machine> = listed
            .iter()
            .filter(|m| !gone(m))
            .map(|m| (m.id.as_str(), m))
            .collect();

        // Records whose machine the listing lacks: read each directly before believing it
        // (a listing may lag behind a create).
        let mut missing: HashMap<String, Vec<&MachineRecord>> = HashMap::new();
        for record in &records {
            let settled = matches!(
                record.state,
                MachineState::Initializing
                    | MachineState::Online
                    | MachineState::Draining
                    | MachineState::Drained
                    | MachineState::Offline
                    | MachineState::Stopping
                    | MachineState::Stopped
                    | MachineState::Starting
            );
            if let (true, Some(id)) = (settled, record.provider_id.as_deref())
                && !living.contains_key(id)
                && let Some(region) = region_of(record, cluster)
            {
                missing.entry(region).or_default().push(record);
            }
        }
        for (region, records) in missing {
            let ids: Vec<String> = records
                .iter()
                .filter_map(|r| r.provider_id.clone())
                .collect();
            let found = provider
                .get_many(&region, &ids)
                .await
                .map_err(|e| e.to_string())?;
            for record in records {
                let id = record.provider_id.as_deref().unwrap_or_default();
                let reason = match found.iter().find(|m| m.id == id) {
                    None => format!("{id} is gone at the provider (deleted out of band)"),
                    Some(m) if gone(m) => format!(
                        "{id} was terminated at the provider out of band{}",
                        m.state_reason
                            .as_deref()
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default()
                    ),
                    Some(_) => continue,
                };
                if self.retire_gone(&record.id, &reason).await {
                    report.retired.push(record.id.clone());
                }
            }
        }

        // Machines stopped or started behind berth's back (a console, a provider's
        // maintenance): what they cost depends on it.
        for record in &records {
            let Some(found) = record.provider_id.as_deref().and_then(|id| living.get(id)) else {
                continue;
            };
            match (record.state, &found.state) {
                (
                    MachineState::Online
                    | MachineState::Draining
                    | MachineState::Drained
                    | MachineState::Offline
                    | MachineState::Initializing,
                    wire::MachineState::Stopped,
                ) => {
                    if self.in_operation(&record.id).await {
                        continue;
                    }
                    let why = format!("{} was stopped at the provider out of band", found.id);
                    if self
                        .step_if(&record.id, record.state, MachineState::Stopped, Some(why))
                        .await
                        .is_ok_and(|m| m.is_some())
                    {
                        report.stopped.push(record.id.clone());
                    }
                }
                (MachineState::Stopped, wire::MachineState::Running) => {
                    if self.in_operation(&record.id).await {
                        continue;
                    }
                    if self.started_out_of_band(&record.id, &found.id).await {
                        report.started.push(record.id.clone());
                    }
                }
                _ => {}
            }
        }

        // Creates that nothing finishes any more.
        let stuck_after = self.config.initialize_timeout_secs.saturating_mul(2) * 1000;
        let now = now_millis();
        for record in records.iter().filter(|r| {
            matches!(
                r.state,
                MachineState::Requested | MachineState::Provisioning
            ) && r.updated_at + stuck_after < now
        }) {
            if !self.has_unfinished(CREATE, &record.id).await {
                let why = format!(
                    "stuck in {} for more than {} s with no operation left to finish it",
                    record.state.as_str(),
                    stuck_after / 1000
                );
                match self.fail_and_delete(record, cluster, &why).await {
                    Ok(()) => report.failed.push(record.id.clone()),
                    Err(e) => {
                        tracing::warn!(machine = %record.id, error = %e, "scheduling: cannot fail a stuck machine")
                    }
                }
            }
        }

        let orphans = orphans_of(&listed, &records);
        report.orphans = orphans.len();
        if !orphans.is_empty() {
            tracing::warn!(
                cluster = %cluster.name,
                orphans = orphans.len(),
                "scheduling: the provider holds machines tagged for this cluster that berth keeps no record of; see `berth cluster orphans {}`",
                cluster.name
            );
        }
        Ok(report)
    }

    /// Whether a create, stop or start of machine `id` is queued or running: its own
    /// job, not reconciliation, moves it then.
    async fn in_operation(&self, id: &str) -> bool {
        for kind in [CREATE, stop_start::STOP, stop_start::START] {
            if self.has_unfinished(kind, id).await {
                return true;
            }
        }
        false
    }

    /// Records stopped machine `id` as starting because its provider runs it again, and
    /// queues the start job that records its addresses and brings it online (asking the
    /// provider to start a running machine is nothing). Whether it was.
    async fn started_out_of_band(&self, id: &str, provider_id: &str) -> bool {
        let (owned, why) = (
            id.to_owned(),
            format!("{provider_id} was started at the provider out of band"),
        );
        let reason = why.clone();
        let moved = self
            .store
            .write_with(
                Durability::Patient,
                move |tx| -> Result<bool, OperationError> {
                    match tx.scheduling().machine(&owned)? {
                        Some(m) if m.state == MachineState::Stopped => {
                            let now = now_millis();
                            lifecycle::transition(
                                tx,
                                &owned,
                                MachineState::Starting,
                                BERTH,
                                Some(&why),
                                now,
                            )?;
                            queue::enqueue(
                                tx,
                                stop_start::START,
                                &owned,
                                serde_json::json!({}),
                                now,
                            )?;
                            Ok(true)
                        }
                        _ => Ok(false),
                    }
                },
            )
            .await;
        match moved {
            Ok(true) => {
                self.audit_move(id, MachineState::Starting, Some(&reason))
                    .await;
                self.wake.notify_one();
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(machine = id, error = %e, "scheduling: cannot record a machine started out of band");
                false
            }
        }
    }

    /// Whether an operation of `kind` on `subject` is queued or running.
    async fn has_unfinished(&self, kind: &'static str, subject: &str) -> bool {
        let subject = subject.to_owned();
        self.store
            .read(move |tx| {
                let filter = JobFilter {
                    subject: Some(subject),
                    unfinished: true,
                    ..JobFilter::default()
                };
                queue::jobs(tx, kind, &filter, 1)
            })
            .await
            .map(|jobs| !jobs.is_empty())
            // When in doubt, leave the machine to its operation.
            .unwrap_or(true)
    }

    /// Records machine `id` retired because its provider no longer has it; whether it was.
    pub(super) async fn retire_gone(&self, id: &str, reason: &str) -> bool {
        // Through `retiring`, as every retirement goes, in one transaction.
        let (owned, why) = (id.to_owned(), reason.to_owned());
        let moved = self
            .store
            .write_with(
                Durability::Patient,
                move |tx| -> Result<(), OperationError> {
                    let now = now_millis();
                    lifecycle::transition(
                        tx,
                        &owned,
                        MachineState::Retiring,
                        BERTH,
                        Some(&why),
                        now,
                    )?;
                    lifecycle::transition(
                        tx,
                        &owned,
                        MachineState::Retired,
                        BERTH,
                        Some(&why),
                        now,
                    )?;
                    Ok(())
                },
            )
            .await;
        match moved {
            Ok(()) => {
                tracing::warn!(
                    machine = id,
                    reason,
                    "scheduling: a machine was deleted out of band; retired"
                );
                self.audit_move(id, MachineState::Retired, Some(reason))
                    .await;
                true
            }
            Err(e) => {
                tracing::warn!(machine = id, error = %e, "scheduling: cannot retire a machine deleted out of band");
                false
            }
        }
    }

    /// The listing of provider cluster `name` and berth's records of it.
    async fn listing(
        &self,
        name: &str,
    ) -> SchedulingResult<(ClusterRecord, Vec<Machine>, Vec<MachineRecord>)> {
        let owned = name.to_owned();
        let (cluster, records) = self
            .store
            .read(move |tx| -> StoreResult<_> {
                let cluster = tx.scheduling().cluster(&owned)?;
                let records = tx.scheduling().machines(&MachineFilter {
                    cluster: Some(owned.clone()),
                    ..MachineFilter::default()
                })?;
                Ok((cluster, records))
            })
            .await?;
        let cluster =
            cluster.ok_or_else(|| SchedulingError::NotFound(format!("no cluster {name}")))?;
        if cluster.provider == pool::PROVIDER {
            return Err(SchedulingError::Invalid(format!(
                "cluster {name} is a physical pool: berth's own tables are its inventory, so it has no orphans"
            )));
        }
        let provider = self
            .provider_of(&cluster)
            .await
            .map_err(SchedulingError::Provider)?;
        let listed = provider
            .list_all(
                &[(CLUSTER_TAG.to_owned(), cluster.name.clone())],
                self.config.reconcile_page_size.max(1),
                LISTING_LIMIT,
            )
            .await
            .map_err(|e| SchedulingError::Provider(format!("listing cluster {name}: {e}")))?;
        Ok((cluster, listed, records))
    }

    /// The orphans of provider cluster `name`, read from the provider now.
    pub async fn orphans(&self, name: &str) -> SchedulingResult<Vec<OrphanView>> {
        let (_, listed, records) = self.listing(name).await?;
        Ok(orphans_of(&listed, &records)
            .into_iter()
            .map(orphan_view)
            .collect())
    }

    /// The orphan `provider_id` of cluster `name`, or why it is not one.
    async fn orphan(
        &self,
        name: &str,
        provider_id: &str,
    ) -> SchedulingResult<(ClusterRecord, Machine)> {
        let (cluster, listed, records) = self.listing(name).await?;
        let found = orphans_of(&listed, &records)
            .into_iter()
            .find(|m| m.id == provider_id)
            .cloned()
            .ok_or_else(|| {
                SchedulingError::NotFound(format!(
                    "cluster {name} has no orphan {provider_id} (see `berth cluster orphans {name}`)"
                ))
            })?;
        Ok((cluster, found))
    }

    /// Takes orphan `provider_id` of cluster `name` under berth's management as a machine
    /// of `project`, within its quota; it goes online like a new machine.
    pub async fn adopt(
        &self,
        name: &str,
        provider_id: &str,
        project: &str,
        actor: &str,
    ) -> SchedulingResult<MachineView> {
        let (cluster, found) = self.orphan(name, provider_id).await?;
        let (cpus, memory_mib) = self
            .machine_type_size(&cluster, &found.machine_type)
            .await?;
        let request = MachineRequest {
            project: project.to_owned(),
            cluster: cluster.name.clone(),
            spec: MachineSpec {
                machine_type: Some(found.machine_type.clone()),
                cpus,
                memory_mib,
                image: Some(found.image.clone()),
                region: Some(found.region.clone()),
                zone: found.zone.clone(),
                ..MachineSpec::default()
            },
            labels: Default::default(),
            client_token: Some(format!("adopt-{}", found.id)),
            price: None,
            host: None,
        };
        let actor = actor.to_owned();
        let reason = format!("{} adopted from the provider", found.id);
        let adopted = self
            .store
            .write_with(
                Durability::Patient,
                move |tx| -> SchedulingResult<MachineRecord> {
                    let now = now_millis();
                    let (mut machine, _) = requests::request(tx, &request, &actor, now)?;
                    machine.provider_id = Some(found.id.clone());
                    machine.region = Some(found.region.clone());
                    machine.zone = found.zone.clone();
                    tx.scheduling().put_machine(&machine)?;
                    let moved = lifecycle::transition(
                        tx,
                        &machine.id,
                        MachineState::Provisioning,
                        &actor,
                        Some(&reason),
                        now,
                    )?;
                    queue::enqueue(tx, CREATE, &moved.id, serde_json::json!({}), now)?;
                    Ok(moved)
                },
            )
            .await?;
        self.wake.notify_one();
        Ok(adopted.into())
    }

    /// Deletes orphan `provider_id` of cluster `name` at its provider, as a job.
    pub async fn delete_orphan(&self, name: &str, provider_id: &str) -> SchedulingResult<()> {
        let (cluster, found) = self.orphan(name, provider_id).await?;
        let subject = serde_json::json!({"cluster": cluster.name, "region": found.region,
                                         "provider_id": found.id});
        self.store
            .write_with(Durability::Patient, move |tx| -> StoreResult<()> {
                let key = format!("{}/{}", cluster.name, found.id);
                queue::enqueue(tx, DELETE_ORPHAN, &key, subject.clone(), now_millis())?;
                Ok(())
            })
            .await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Runs an orphan's delete (the job made by [`Scheduling::delete_orphan`]).
    pub(super) async fn run_orphan_delete(&self, subject: &str) -> Result<(), OperationError> {
        let (cluster, provider_id) = subject
            .split_once('/')
            .ok_or_else(|| OperationError::Failed(format!("malformed subject {subject}")))?;
        let owned = cluster.to_owned();
        let cluster = self
            .store
            .read(move |tx| tx.scheduling().cluster(&owned))
            .await?
            .ok_or_else(|| OperationError::Failed(format!("cluster {cluster} is gone")))?;
        let (_, found) = self
            .orphan(&cluster.name, provider_id)
            .await
            .map_err(|e| OperationError::Failed(e.to_string()))?;
        let provider = self
            .provider_of(&cluster)
            .await
            .map_err(OperationError::Failed)?;
        provider
            .delete(&found.region, &found.id)
            .await
            .map_err(|e| OperationError::Failed(e.to_string()))?;
        tracing::info!(cluster = %cluster.name, provider_id = %found.id, "scheduling: deleted an orphan at its provider");
        Ok(())
    }

    /// Starts a reconcile round on its own task unless one is running.
    pub(super) fn start_reconcile(self: &std::sync::Arc<Self>) {
        if self.reconciling.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.reconcile().await {
                tracing::error!(error = %e, "scheduling: reconciliation failed");
            }
            this.reconciling.store(false, Ordering::Release);
        });
    }
}
