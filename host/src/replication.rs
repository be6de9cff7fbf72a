//! Replication: endpoints (the registries this instance replicates with), policies (what
//! goes where, when and how), and the durable job engine that carries them out.
//!
//! ```text
//! registry writes ─► change feed (storage::meta::changes) ─┐
//! cron schedules ──────────────────────────────────────────┼─► jobs (durable queue)
//! berth replication run / API ─────────────────────────────┘        │ strategy plugin plans
//!                                                                    ▼
//!                          tasks in waves ─► transfer: Source ─► Sink (local storage or
//!                                            a remote registry over the OCI API)
//! ```
//!
//! The registry does not know replication exists: it appends to the change feed and
//! notifies [`crate::registry::Registry::changed`]; replication reads the feed, and writes
//! through the registry's own [`crate::registry::content`] functions when it fetches.

pub mod delegate;
pub mod endpoints;
mod engine;
pub mod jobs;
pub mod local;
pub mod metadata;
pub mod plan;
pub mod policies;
pub mod remote;
pub mod schedule;
pub mod side;
pub mod sync;
pub mod tables;
pub mod transfer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::ReplicationConfig;
use crate::plugins::PluginHost;
use crate::registry::Registry;
use crate::storage::meta::{MetaError, Metadata, changes, now_millis};
use crate::storage::sealing::Sealer;
use endpoints::EndpointRecord;
use jobs::{JobRecord, JobScope, JobStatus, TaskRecord, TaskStatus, Trigger};
use policies::PolicyRecord;
use remote::Remote;

/// Why a replication request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// Malformed or contradictory input.
    #[error("{0}")]
    Invalid(String),
    /// No such endpoint, policy or job.
    #[error("{0}")]
    NotFound(String),
    /// The name is taken, or the thing is in use.
    #[error("{0}")]
    Conflict(String),
    /// The metadata store failed.
    #[error(transparent)]
    Meta(MetaError),
}

/// Result alias for replication operations.
pub type ReplicationResult<T> = Result<T, ReplicationError>;

/// Checks an endpoint or policy name: lowercase letters, digits, `.`, `_` and `-`,
/// starting with a letter or digit, at most 63 characters.
pub fn check_name(what: &str, name: &str) -> ReplicationResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ReplicationError::Invalid(format!(
            "invalid {what} name {:?}: lowercase letters, digits, '.', '_' and '-', starting with a letter or digit, at most 63 characters",
            name.chars().take(80).collect::<String>()
        )))
    }
}

/// The replication service of one berth.
pub struct Replication {
    meta: Arc<Metadata>,
    registry: Arc<Registry>,
    plugins: Arc<PluginHost>,
    sealer: Arc<Sealer>,
    config: ReplicationConfig,
    /// Wakes the engine: a job was queued, cancelled or finished.
    wake: Notify,
    /// Jobs running in this process, with their cancellation.
    active: Mutex<HashMap<u64, CancellationToken>>,
    /// A client per endpoint, rebuilt when the endpoint changes (by `updated_at`).
    remotes: Mutex<HashMap<String, (u64, Arc<Remote>)>>,
    /// Blobs being sent, over all jobs, so that two jobs never send one blob to one
    /// destination at once.
    gate: Arc<transfer::BlobGate>,
    /// Transfers this instance runs for others (see [`delegate`]).
    transfers: delegate::Transfers,
    /// Sync policies' destinations, and which of them are degraded (see [`sync`]).
    sync: sync::SyncLinks,
}

impl std::fmt::Debug for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replication").finish_non_exhaustive()
    }
}

/// How an endpoint answered a check.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EndpointHealth {
    /// The endpoint.
    pub name: String,
    /// It answered as a registry and accepted the credentials.
    pub healthy: bool,
    /// How long the check took, in milliseconds.
    pub latency_ms: u64,
    /// What went wrong, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One policy's state, for `berth replication status`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PolicyStatus {
    /// The policy.
    pub policy: String,
    /// Whether it runs.
    pub enabled: bool,
    /// `async` or `sync`.
    pub delivery: policies::Delivery,
    /// Sync destinations that pushes no longer wait for, because they were unreachable
    /// for longer than the policy allows.
    pub degraded: Vec<sync::Degraded>,
    /// Its unfinished jobs.
    pub unfinished_jobs: u32,
    /// Transfers and deletes queued or running in those jobs: what this instance has not
    /// yet delivered to the policy's destinations.
    pub pending_tasks: u32,
    /// Changes queued in those jobs that are not yet planned into tasks.
    pub pending_changes: u32,
    /// The latest job's id and outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_job: Option<u64>,
    /// The latest job's status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<JobStatus>,
    /// When its schedule fires next (ms since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_run: Option<u64>,
}

/// The whole engine's state.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Status {
    /// This instance's name in topologies.
    pub instance: String,
    /// Registry changes not yet read by the engine (normally 0 within a second).
    pub unread_changes: u64,
    /// Jobs running in this process now.
    pub running_jobs: u32,
    /// Per policy.
    pub policies: Vec<PolicyStatus>,
    /// What an operator should fix: instance names that collide with a peer's.
    pub warnings: Vec<String>,
}

impl Replication {
    /// Prepares the tables; starts nothing (see [`Replication::start`]).
    pub fn new(
        registry: Arc<Registry>,
        plugins: Arc<PluginHost>,
        sealer: Arc<Sealer>,
        config: ReplicationConfig,
    ) -> anyhow::Result<Arc<Replication>> {
        let meta = registry.meta.clone();
        crate::storage::meta::schema::prepare(&meta, &tables::REPLICATION)?;
        Ok(Arc::new(Replication {
            meta,
            registry,
            plugins,
            sealer,
            config,
            wake: Notify::new(),
            active: Mutex::new(HashMap::new()),
            remotes: Mutex::new(HashMap::new()),
            gate: Arc::default(),
            transfers: Default::default(),
            sync: Default::default(),
        }))
    }

    /// Starts the engine on the current Tokio runtime, and holds the registry's
    /// acknowledgements of pushes that sync policies select until they are delivered.
    pub fn start(self: &Arc<Self>) {
        if let Ok(warnings) = self.name_warnings() {
            for warning in warnings {
                tracing::warn!("{warning}");
            }
        }
        let _ = self.registry.ack_gate.set(self.clone());
        tokio::spawn(self.clone().run_engine());
    }

    /// The sealer endpoints' passwords are sealed with.
    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    // ---- endpoints ----

    /// Every endpoint.
    pub fn endpoints(&self) -> ReplicationResult<Vec<EndpointRecord>> {
        Ok(endpoints::list(&self.meta.read()?)?)
    }

    /// One endpoint.
    pub fn endpoint(&self, name: &str) -> ReplicationResult<EndpointRecord> {
        endpoints::get(&self.meta.read()?, name)?
            .ok_or_else(|| ReplicationError::NotFound(format!("no endpoint named {name}")))
    }

    /// Stores a new endpoint.
    pub fn create_endpoint(&self, record: EndpointRecord) -> ReplicationResult<EndpointRecord> {
        self.meta.write(|tx| endpoints::insert(tx, &record))?;
        Ok(record)
    }

    /// Replaces an endpoint's settings (`change` edits the stored record).
    pub fn update_endpoint(
        &self,
        name: &str,
        change: impl FnOnce(&mut EndpointRecord) -> ReplicationResult<()>,
    ) -> ReplicationResult<EndpointRecord> {
        let record = self.meta.write(|tx| -> ReplicationResult<EndpointRecord> {
            let mut record = endpoints::get(tx, name)?
                .ok_or_else(|| ReplicationError::NotFound(format!("no endpoint named {name}")))?;
            change(&mut record)?;
            record.url = endpoints::check_url(&record.url)?;
            record.updated_at = now_millis().max(record.updated_at + 1);
            endpoints::put(tx, &record)?;
            Ok(record)
        })?;
        self.remotes.lock().expect("remotes lock").remove(name);
        Ok(record)
    }

    /// Deletes an endpoint no policy uses.
    pub fn delete_endpoint(&self, name: &str) -> ReplicationResult<()> {
        self.meta.write(|tx| -> ReplicationResult<()> {
            let users: Vec<String> = policies::list(tx)?
                .into_iter()
                .filter(|p| p.endpoints.iter().any(|e| e == name))
                .map(|p| p.name)
                .collect();
            if !users.is_empty() {
                return Err(ReplicationError::Conflict(format!(
                    "endpoint {name} is used by policies {}; change or delete them first",
                    users.join(", ")
                )));
            }
            if !endpoints::remove(tx, name)? {
                return Err(ReplicationError::NotFound(format!(
                    "no endpoint named {name}"
                )));
            }
            Ok(())
        })?;
        self.remotes.lock().expect("remotes lock").remove(name);
        Ok(())
    }

    /// Checks that an endpoint answers as a registry and accepts its credentials.
    pub async fn check_endpoint(&self, name: &str) -> ReplicationResult<EndpointHealth> {
        let remote = self.remote(name)?;
        let started = std::time::Instant::now();
        let result = remote.check().await;
        let latency_ms = started.elapsed().as_millis() as u64;
        if let Ok(Some(instance)) = &result {
            self.remember_instance(name, instance)?;
        }
        Ok(EndpointHealth {
            name: name.to_string(),
            healthy: result.is_ok(),
            latency_ms,
            error: result.err().map(|e| e.to_string()),
        })
    }

    /// Learns the instance name a berth endpoint reports, if it answers now.
    pub async fn learn_instance(&self, name: &str) {
        let Ok(record) = self.endpoint(name) else {
            return;
        };
        if record.kind != endpoints::EndpointKind::Berth {
            return;
        }
        if let Ok(remote) = self.remote(name)
            && let Ok(Some(instance)) = remote.check().await
            && let Err(e) = self.remember_instance(name, &instance)
        {
            tracing::warn!(endpoint = name, error = %e, "cannot record the endpoint's instance name");
        }
    }

    fn remember_instance(&self, name: &str, instance: &str) -> ReplicationResult<()> {
        self.meta.write(|tx| -> ReplicationResult<()> {
            if let Some(mut record) = endpoints::get(tx, name)?
                && record.instance.as_deref() != Some(instance)
            {
                record.instance = Some(instance.to_string());
                endpoints::put(tx, &record)?;
            }
            Ok(())
        })
    }

    /// The client for an endpoint, built once per version of its record.
    fn remote(&self, name: &str) -> ReplicationResult<Arc<Remote>> {
        let record = self.endpoint(name)?;
        if let Some((version, remote)) = self.remotes.lock().expect("remotes lock").get(name)
            && *version == record.updated_at
        {
            return Ok(remote.clone());
        }
        let password = record.password(&self.sealer)?;
        let remote = Arc::new(
            Remote::new(
                &record,
                password,
                &self.config.instance_name,
                Duration::from_secs(self.config.request_timeout_secs.max(1)),
            )
            .map_err(|e| ReplicationError::Invalid(e.to_string()))?,
        );
        self.remotes
            .lock()
            .expect("remotes lock")
            .insert(name.to_string(), (record.updated_at, remote.clone()));
        Ok(remote)
    }

    // ---- policies ----

    /// Every policy.
    pub fn policies(&self) -> ReplicationResult<Vec<PolicyRecord>> {
        Ok(policies::list(&self.meta.read()?)?)
    }

    /// One policy.
    pub fn policy(&self, name: &str) -> ReplicationResult<PolicyRecord> {
        policies::get(&self.meta.read()?, name)?
            .ok_or_else(|| ReplicationError::NotFound(format!("no policy named {name}")))
    }

    /// Checks what a policy refers to: its endpoints exist, its strategy is a loaded
    /// replication-strategy plugin.
    async fn check_references(&self, policy: &PolicyRecord) -> ReplicationResult<()> {
        policy.check()?;
        let tx = self.meta.read()?;
        for name in &policy.endpoints {
            if endpoints::get(&tx, name)?.is_none() {
                return Err(ReplicationError::Invalid(format!(
                    "policy {} names endpoint {name}, which does not exist; create it with `berth replication endpoint create`",
                    policy.name
                )));
            }
        }
        match self.plugins.get(&policy.strategy).await {
            Ok(p) if p.record.kind == berth_plugin_runtime::Kind::ReplicationStrategy => Ok(()),
            Ok(p) => Err(ReplicationError::Invalid(format!(
                "plugin {} is a {:?} plugin, not a replication strategy",
                policy.strategy, p.record.kind
            ))),
            Err(_) => Err(ReplicationError::Invalid(format!(
                "strategy {} is not a loaded plugin; `berth plugin list` shows the strategies (star is built in)",
                policy.strategy
            ))),
        }
    }

    /// Stores a new policy after checking it and what it refers to.
    pub async fn create_policy(&self, record: PolicyRecord) -> ReplicationResult<PolicyRecord> {
        self.check_references(&record).await?;
        self.meta.write(|tx| -> ReplicationResult<()> {
            if policies::get(tx, &record.name)?.is_some() {
                return Err(ReplicationError::Conflict(format!(
                    "policy {} exists already",
                    record.name
                )));
            }
            policies::put(tx, &record)?;
            Ok(())
        })?;
        self.wake.notify_one();
        Ok(record)
    }

    /// Changes a policy (`change` edits the stored record), checking the result.
    pub async fn update_policy(
        &self,
        name: &str,
        change: impl FnOnce(&mut PolicyRecord),
    ) -> ReplicationResult<PolicyRecord> {
        let mut record = self.policy(name)?;
        let before = record.clone();
        change(&mut record);
        record.name = before.name.clone();
        record.updated_at = now_millis();
        self.check_references(&record).await?;
        self.meta.write(|tx| -> ReplicationResult<()> {
            policies::put(tx, &record)?;
            if record.schedule != before.schedule {
                jobs::remove_state(tx, &format!("schedule/{name}"))?;
            }
            Ok(())
        })?;
        self.wake.notify_one();
        Ok(record)
    }

    /// Deletes a policy, cancelling its unfinished jobs.
    pub fn delete_policy(&self, name: &str) -> ReplicationResult<()> {
        let unfinished: Vec<u64> = jobs::unfinished(&self.meta.read()?)?
            .into_iter()
            .filter(|j| j.policy == name)
            .map(|j| j.id)
            .collect();
        for id in unfinished {
            self.cancel(id)?;
        }
        self.meta.write(|tx| -> ReplicationResult<()> {
            if !policies::remove(tx, name)? {
                return Err(ReplicationError::NotFound(format!(
                    "no policy named {name}"
                )));
            }
            jobs::remove_state(tx, &format!("schedule/{name}"))?;
            Ok(())
        })
    }

    /// Queues a full run of a policy (everything its filters select).
    pub fn run(&self, name: &str, by: &str) -> ReplicationResult<JobRecord> {
        let job = self.meta.write(|tx| -> ReplicationResult<JobRecord> {
            let policy = policies::get(tx, name)?
                .ok_or_else(|| ReplicationError::NotFound(format!("no policy named {name}")))?;
            if !policy.enabled {
                return Err(ReplicationError::Conflict(format!(
                    "policy {name} is disabled; enable it first"
                )));
            }
            Ok(jobs::enqueue(
                tx,
                name,
                Trigger::Manual { by: by.to_string() },
                JobScope::All,
                now_millis(),
            )?)
        })?;
        self.wake.notify_one();
        Ok(job)
    }

    // ---- jobs ----

    /// Jobs, newest first: of one policy and in one status when given.
    pub fn jobs(
        &self,
        policy: Option<&str>,
        status: Option<JobStatus>,
        limit: usize,
    ) -> ReplicationResult<Vec<JobRecord>> {
        Ok(jobs::jobs(&self.meta.read()?, limit, |j| {
            policy.is_none_or(|p| j.policy == p) && status.is_none_or(|s| j.status == s)
        })?)
    }

    /// One job with its tasks.
    pub fn job(&self, id: u64) -> ReplicationResult<(JobRecord, Vec<TaskRecord>)> {
        let tx = self.meta.read()?;
        let job = jobs::job(&tx, id)?
            .ok_or_else(|| ReplicationError::NotFound(format!("no job {id}")))?;
        Ok((job, jobs::tasks(&tx, id)?))
    }

    /// Cancels a job: tasks not yet done are not run; those running are interrupted.
    pub fn cancel(&self, id: u64) -> ReplicationResult<JobRecord> {
        let job = self.meta.write(|tx| -> ReplicationResult<JobRecord> {
            let mut job = jobs::job(tx, id)?
                .ok_or_else(|| ReplicationError::NotFound(format!("no job {id}")))?;
            if job.status.is_final() {
                return Err(ReplicationError::Conflict(format!(
                    "job {id} is already {}",
                    serde_json::to_value(job.status)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                )));
            }
            let now = now_millis();
            for mut task in jobs::tasks(tx, id)? {
                if task.status == TaskStatus::Pending {
                    task.status = TaskStatus::Cancelled;
                    task.finished_at = Some(now);
                    jobs::put_task(tx, &task)?;
                }
            }
            job.tasks = jobs::tally(&jobs::tasks(tx, id)?).0;
            job.status = JobStatus::Cancelled;
            job.finished_at = Some(now);
            jobs::put_job(tx, &job)?;
            Ok(job)
        })?;
        if let Some(token) = self.active.lock().expect("active lock").get(&id) {
            token.cancel();
        }
        self.wake.notify_one();
        Ok(job)
    }

    /// Queues a new job that runs again what a finished job did not complete: its failed
    /// and cancelled tasks, or, if it failed before planning, the whole job.
    pub fn retry(&self, id: u64, by: &str) -> ReplicationResult<JobRecord> {
        let job = self.meta.write(|tx| -> ReplicationResult<JobRecord> {
            let old = jobs::job(tx, id)?
                .ok_or_else(|| ReplicationError::NotFound(format!("no job {id}")))?;
            if !matches!(old.status, JobStatus::Failed | JobStatus::Cancelled) {
                return Err(ReplicationError::Conflict(format!(
                    "job {id} neither failed nor was cancelled; only those can be retried"
                )));
            }
            if policies::get(tx, &old.policy)?.is_none() {
                return Err(ReplicationError::Conflict(format!(
                    "policy {} no longer exists",
                    old.policy
                )));
            }
            let now = now_millis();
            let trigger = Trigger::Retry { by: by.to_string() };
            let mut job = jobs::enqueue(tx, &old.policy, trigger, old.scope.clone(), now)?;
            let redo: Vec<TaskRecord> = jobs::tasks(tx, id)?
                .into_iter()
                .filter(|t| matches!(t.status, TaskStatus::Failed | TaskStatus::Cancelled))
                .collect();
            if old.plan.is_some() && !redo.is_empty() {
                let tasks: Vec<TaskRecord> = redo
                    .into_iter()
                    .enumerate()
                    .map(|(index, t)| {
                        TaskRecord::pending(
                            job.id,
                            index as u32,
                            t.wave,
                            &t.source,
                            &t.target,
                            t.op,
                        )
                    })
                    .collect();
                for t in &tasks {
                    jobs::put_task(tx, t)?;
                }
                job.status = JobStatus::Running;
                job.started_at = Some(now);
                job.plan = old.plan.clone();
                job.tasks = jobs::tally(&tasks).0;
                jobs::put_job(tx, &job)?;
            }
            Ok(job)
        })?;
        self.wake.notify_one();
        Ok(job)
    }

    /// Where every policy stands: what is queued and not yet delivered.
    pub fn status(&self) -> ReplicationResult<Status> {
        let tx = self.meta.read()?;
        let cursor = jobs::state(&tx, "change_cursor")?;
        let unread_changes = changes::last_seq(&tx)?.saturating_sub(cursor);
        let unfinished = jobs::unfinished(&tx)?;
        let mut out = Vec::new();
        for policy in policies::list(&tx)? {
            let mine: Vec<&JobRecord> = unfinished
                .iter()
                .filter(|j| j.policy == policy.name)
                .collect();
            let mut pending_tasks = 0;
            let mut pending_changes = 0;
            for job in &mine {
                if job.status == JobStatus::Pending {
                    if let JobScope::Changes { changes } = &job.scope {
                        pending_changes += changes.len() as u32;
                    }
                } else {
                    pending_tasks += jobs::tasks(&tx, job.id)?
                        .iter()
                        .filter(|t| !t.status.is_final())
                        .count() as u32;
                }
            }
            let last = jobs::jobs(&tx, 1, |j| j.policy == policy.name)?;
            let next_run = match jobs::state(&tx, &format!("schedule/{}", policy.name))? {
                0 => None,
                t => Some(t),
            };
            out.push(PolicyStatus {
                policy: policy.name.clone(),
                enabled: policy.enabled,
                delivery: policy.delivery,
                degraded: self.sync.degraded(&policy.name),
                unfinished_jobs: mine.len() as u32,
                pending_tasks,
                pending_changes,
                last_job: last.first().map(|j| j.id),
                last_status: last.first().map(|j| j.status),
                next_run: next_run.filter(|_| policy.schedule.is_some()),
            });
        }
        Ok(Status {
            instance: self.config.instance_name.clone(),
            unread_changes,
            running_jobs: self.active.lock().expect("active lock").len() as u32,
            policies: out,
            warnings: self.name_warnings()?,
        })
    }

    /// Instance names that would make replication misbehave. Content carries the name of
    /// the instance it came from, and is never sent back there: two berths of one name
    /// take each other's pushes for their own and stop sending them.
    pub fn name_warnings(&self) -> ReplicationResult<Vec<String>> {
        let own = &self.config.instance_name;
        let berths: Vec<EndpointRecord> = self
            .endpoints()?
            .into_iter()
            .filter(|e| e.kind == endpoints::EndpointKind::Berth)
            .collect();
        let mut warnings = Vec::new();
        for endpoint in &berths {
            if endpoint.instance.as_deref() == Some(own.as_str()) {
                warnings.push(format!(
                    "endpoint {} is a berth named {own:?}, like this instance: each would take the other's pushes for its own and not send them; give every instance its own name (replication.instance_name, BERTH_REPLICATION__INSTANCE_NAME)",
                    endpoint.name
                ));
            }
        }
        if own == crate::config::DEFAULT_INSTANCE_NAME && !berths.is_empty() && warnings.is_empty()
        {
            warnings.push(format!(
                "this instance keeps the default name {own:?} while it replicates with other berths; if a peer keeps it too, neither sends the other's pushes on: give every instance its own name (replication.instance_name)"
            ));
        }
        Ok(warnings)
    }
}

impl From<redb::Error> for ReplicationError {
    fn from(e: redb::Error) -> ReplicationError {
        ReplicationError::Meta(e.into())
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for ReplicationError {
            fn from(e: $t) -> ReplicationError { ReplicationError::Meta(MetaError::from(e)) }
        }
    )*};
}
from_redb!(redb::TableError, redb::StorageError);
