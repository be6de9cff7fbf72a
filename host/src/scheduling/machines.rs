//! The machine service: create, list, show, take online or offline, retire, and each
//! machine's history. What takes time at a provider (a create, a retire) is a durable job
//! of the shared runner (`engine.rs`); what this service does is record the request and
//! the move, in one transaction with the job that carries it out.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::lifecycle::{self, LifecycleError};
use super::requests::{self, MachineRequest, RequestError};
use super::{Scheduling, SchedulingError, SchedulingResult, engine, pool};
use crate::jobs::queue;
use crate::storage::store::now_millis;
use crate::storage::tables::scheduling::{
    MachineFilter, MachineRecord, MachineSpec, MachineState, TransitionRecord,
};

/// `POST /api/v1/machines`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMachine {
    /// The project that will own it.
    pub project: String,
    /// The cluster to create it in.
    pub cluster: String,
    /// What it should be: vCPUs and memory at least; a machine type, image and network
    /// where the provider has them.
    pub spec: MachineSpec,
    /// Labels (on a physical pool, a host must carry them all).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// An idempotency token: the same token again is the same machine.
    #[serde(default)]
    pub client_token: Option<String>,
}

/// `POST /api/v1/machines/register`: a physical host that already runs, taken under
/// berth's management with its project.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterMachine {
    /// The project that owns it.
    pub project: String,
    /// Its pool (a `static-pool` cluster).
    pub cluster: String,
    /// The host's name in the pool.
    pub host: String,
    /// Labels.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// An idempotency token.
    #[serde(default)]
    pub client_token: Option<String>,
}

/// A machine as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MachineView {
    /// berth's id.
    pub id: String,
    /// Its cluster.
    pub cluster: String,
    /// Its project.
    pub project: String,
    /// The provider's id (a pool host's name).
    pub provider_id: Option<String>,
    /// The region its provider placed it in.
    pub region: Option<String>,
    /// The zone its provider placed it in.
    pub zone: Option<String>,
    /// The token it was created with.
    pub client_token: String,
    /// What it was asked to be.
    pub spec: MachineSpec,
    /// Its addresses.
    pub addresses: Vec<String>,
    /// Labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Where it is in its life.
    pub state: MachineState,
    /// Why, when that needs saying.
    pub reason: Option<String>,
    /// Who asked for it.
    pub created_by: String,
    /// When (ms since the epoch).
    pub created_at: u64,
    /// When it last changed.
    pub updated_at: u64,
}

impl From<MachineRecord> for MachineView {
    fn from(m: MachineRecord) -> MachineView {
        MachineView {
            id: m.id,
            cluster: m.cluster,
            project: m.project,
            provider_id: m.provider_id,
            region: m.region,
            zone: m.zone,
            client_token: m.client_token,
            spec: m.spec,
            addresses: m.addresses,
            labels: m.labels,
            state: m.state,
            reason: m.reason,
            created_by: m.created_by,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

impl From<RequestError> for SchedulingError {
    fn from(e: RequestError) -> SchedulingError {
        match e {
            RequestError::NoCluster(_) => SchedulingError::NotFound(e.to_string()),
            RequestError::Disabled(_)
            | RequestError::NotGranted { .. }
            | RequestError::Quota(_)
            | RequestError::Budget(_)
            | RequestError::TokenReused { .. } => SchedulingError::Conflict(e.to_string()),
            RequestError::Invalid(m) => SchedulingError::Invalid(m),
            RequestError::Lifecycle(e) => e.into(),
        }
    }
}

impl From<LifecycleError> for SchedulingError {
    fn from(e: LifecycleError) -> SchedulingError {
        match e {
            LifecycleError::NotFound(id) => SchedulingError::NotFound(format!("no machine {id}")),
            LifecycleError::NotAllowed { .. } => SchedulingError::Conflict(e.to_string()),
            LifecycleError::Store(e) => e.into(),
        }
    }
}

impl Scheduling {
    /// Records a machine as `requested` and queues the job that creates it; answers at
    /// once. On a provider's cluster the machine type's vCPUs and memory are the
    /// provider's (what the quota counts), and a type it does not offer is refused here.
    pub async fn create_machine(
        &self,
        mut new: NewMachine,
        actor: &str,
    ) -> SchedulingResult<(MachineView, bool)> {
        let cluster_name = new.cluster.clone();
        let mut price = None;
        let cluster = self
            .store
            .read(move |tx| tx.scheduling().cluster(&cluster_name))
            .await?;
        if let Some(cluster) = cluster.filter(|c| c.provider != pool::PROVIDER) {
            let (Some(machine_type), Some(_)) = (&new.spec.machine_type, &new.spec.image) else {
                return Err(SchedulingError::Invalid(format!(
                    "cluster {} is a {} cluster: name a machine type and an image (spec.machine_type, spec.image)",
                    cluster.name, cluster.provider
                )));
            };
            let (cpus, memory_mib) = self.machine_type_size(&cluster, machine_type).await?;
            new.spec.cpus = cpus;
            new.spec.memory_mib = memory_mib;
            // Its price, asked now: snapshotted with the request and checked against the
            // project's budget (none where the cluster's sheet prices it).
            if let Ok(provider) = self.provider_of(&cluster).await {
                let region = new
                    .spec
                    .region
                    .clone()
                    .or_else(|| cluster.regions.first().cloned())
                    .unwrap_or_default();
                price = self
                    .price_snapshot(&cluster, &provider, &region, Some(machine_type))
                    .await
                    .flatten();
            }
        }
        if new.spec.cpus == 0 || new.spec.memory_mib == 0 {
            return Err(SchedulingError::Invalid(
                "a machine needs at least one vCPU and some memory (spec.cpus, spec.memory_mib)"
                    .into(),
            ));
        }
        let request = MachineRequest {
            project: new.project,
            cluster: new.cluster,
            spec: new.spec,
            labels: new.labels,
            client_token: new.client_token,
            price,
            host: None,
        };
        let actor = actor.to_owned();
        let made = self
            .store
            .write(move |tx| -> SchedulingResult<(MachineRecord, bool)> {
                let now = now_millis();
                let (machine, new) = requests::request(tx, &request, &actor, now)?;
                if new {
                    queue::enqueue(tx, engine::CREATE, &machine.id, serde_json::json!({}), now)?;
                }
                Ok((machine, new))
            })
            .await?;
        if made.1 {
            self.wake.notify_one();
        }
        Ok((made.0.into(), made.1))
    }

    /// Takes a pool host that already runs under berth's management as a machine of
    /// `project`: recorded with the host's size, within the quota, and brought online
    /// like a new one once it answers (nothing is installed or wiped).
    pub async fn register_machine(
        &self,
        register: RegisterMachine,
        actor: &str,
    ) -> SchedulingResult<(MachineView, bool)> {
        let actor = actor.to_owned();
        let made = self
            .store
            .write(move |tx| -> SchedulingResult<(MachineRecord, bool)> {
                let request = |spec: MachineSpec| MachineRequest {
                    project: register.project.clone(),
                    cluster: register.cluster.clone(),
                    spec,
                    labels: register.labels.clone(),
                    client_token: register.client_token.clone(),
                    price: None,
                    host: Some(register.host.clone()),
                };
                // A retried registration finds its machine by the token first.
                if let Some(token) = &register.client_token
                    && let Some(existing) =
                        tx.scheduling().machine_by_token(&register.project, token)?
                {
                    if existing.provider_id.as_deref() != Some(register.host.as_str()) {
                        return Err(SchedulingError::Conflict(format!(
                            "client token {token} was used for machine {}",
                            existing.id
                        )));
                    }
                    return Ok((existing, false));
                }
                let host = pool::free_host(tx, &register.cluster, &register.host)?;
                let spec = MachineSpec {
                    cpus: host.cpus,
                    memory_mib: host.memory_mib,
                    zone: host.zone.clone(),
                    ..MachineSpec::default()
                };
                let now = now_millis();
                let (machine, _) = requests::request(tx, &request(spec), &actor, now)?;
                pool::allocate_named(tx, &machine.id, &register.host, &actor, now)?;
                queue::enqueue(tx, engine::CREATE, &machine.id, serde_json::json!({}), now)?;
                let machine = tx
                    .scheduling()
                    .machine(&machine.id)?
                    .expect("recorded in this transaction");
                Ok((machine, true))
            })
            .await?;
        if made.1 {
            self.wake.notify_one();
        }
        Ok((made.0.into(), made.1))
    }

    /// Machine `id`.
    pub async fn machine(&self, id: &str) -> SchedulingResult<MachineView> {
        let id = id.to_owned();
        self.store
            .read(move |tx| -> SchedulingResult<MachineView> {
                Ok(tx
                    .scheduling()
                    .machine(&id)?
                    .ok_or_else(|| SchedulingError::NotFound(format!("no machine {id}")))?
                    .into())
            })
            .await
    }

    /// The machines `filter` selects.
    pub async fn machines(&self, filter: MachineFilter) -> SchedulingResult<Vec<MachineView>> {
        Ok(self
            .store
            .read(move |tx| tx.scheduling().machines(&filter))
            .await?
            .into_iter()
            .map(MachineView::from)
            .collect())
    }

    /// Machine `id`'s history, oldest first.
    pub async fn history(&self, id: &str) -> SchedulingResult<Vec<TransitionRecord>> {
        let id = id.to_owned();
        self.store
            .read(move |tx| -> SchedulingResult<Vec<TransitionRecord>> {
                if tx.scheduling().machine(&id)?.is_none() {
                    return Err(SchedulingError::NotFound(format!("no machine {id}")));
                }
                Ok(tx.scheduling().transitions(&id)?)
            })
            .await
    }

    /// Takes machine `id` offline: it drains for `scheduling.drain_secs`, or goes
    /// offline at once with `force`.
    pub async fn offline(
        &self,
        id: &str,
        force: bool,
        actor: &str,
        reason: Option<String>,
    ) -> SchedulingResult<MachineView> {
        let to = if force {
            MachineState::Offline
        } else {
            MachineState::Draining
        };
        self.move_machine(id, to, actor, reason).await
    }

    /// Puts machine `id` back online.
    pub async fn online(&self, id: &str, actor: &str) -> SchedulingResult<MachineView> {
        self.move_machine(id, MachineState::Online, actor, None)
            .await
    }

    async fn move_machine(
        &self,
        id: &str,
        to: MachineState,
        actor: &str,
        reason: Option<String>,
    ) -> SchedulingResult<MachineView> {
        let (id, actor) = (id.to_owned(), actor.to_owned());
        let moved = self
            .store
            .write(move |tx| -> SchedulingResult<MachineRecord> {
                Ok(lifecycle::transition(
                    tx,
                    &id,
                    to,
                    &actor,
                    reason.as_deref(),
                    now_millis(),
                )?)
            })
            .await?;
        self.wake.notify_one();
        Ok(moved.into())
    }

    /// Retires machine `id`: it goes to `retiring`, and a job deletes it at its provider
    /// (or releases its pool host). Retiring a retired machine again is not an error.
    pub async fn retire(&self, id: &str, actor: &str) -> SchedulingResult<MachineView> {
        let (id, actor) = (id.to_owned(), actor.to_owned());
        let retired = self
            .store
            .write(move |tx| -> SchedulingResult<MachineRecord> {
                let machine = tx
                    .scheduling()
                    .machine(&id)?
                    .ok_or_else(|| SchedulingError::NotFound(format!("no machine {id}")))?;
                if machine.state == MachineState::Retired {
                    return Ok(machine);
                }
                let now = now_millis();
                if machine.state == MachineState::Retiring {
                    // A retire whose job ended without retiring it (the provider refused
                    // the delete) is tried again; one still running is left alone.
                    let unfinished = crate::jobs::JobFilter {
                        subject: Some(id.clone()),
                        unfinished: true,
                        ..Default::default()
                    };
                    if queue::jobs(tx.read(), engine::RETIRE, &unfinished, 1)?.is_empty() {
                        queue::enqueue(tx, engine::RETIRE, &id, serde_json::json!({}), now)?;
                    }
                    return Ok(machine);
                }
                let moved =
                    lifecycle::transition(tx, &id, MachineState::Retiring, &actor, None, now)?;
                queue::enqueue(tx, engine::RETIRE, &id, serde_json::json!({}), now)?;
                Ok(moved)
            })
            .await?;
        self.wake.notify_one();
        Ok(retired.into())
    }
}
