//! Execution: one job from plan to end, wave by wave, each task with its retries, under
//! the policy's concurrency, the plan's per-link caps and the bandwidth cap.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::sides::Sides;
use crate::events::{Change, ChangeKind};
use crate::replication::Replication;
use crate::replication::Stop;
use crate::replication::delegate::{Ahead, TransferRequest};
use crate::replication::endpoints::EndpointKind;
use crate::replication::jobs::{
    self, JobRecord, JobScope, JobStatus, TaskOp, TaskRecord, TaskStatus, Trigger,
};
use crate::replication::local::Local;
use crate::replication::plan;
use crate::replication::policies::{self, Mode, PolicyRecord, Selector};
use crate::replication::side::{SideError, Sink, Source};
use crate::replication::transfer::{BlobGate, Copier, CopyOptions, CopyOutcome, Throttle};
use crate::storage::store::{Durability, StoreResult, now_millis};

/// How long a hop forwarding an artifact it still receives waits for each piece.
const AHEAD_WAIT: Duration = Duration::from_secs(30 * 60);

impl Replication {
    /// Plans a job if it is new, then runs its tasks to the end.
    pub(super) async fn run_job(&self, id: u64, cancel: CancellationToken) -> anyhow::Result<()> {
        let Some(job) = self.store.read_blocking(|tx| jobs::job(tx, id))? else {
            return Ok(());
        };
        let Some(policy) = self
            .store
            .read_blocking(|tx| tx.replication().policy(&job.policy))?
        else {
            self.fail_job(id, &format!("policy {} no longer exists", job.policy))?;
            return Ok(());
        };
        let mut job = job;
        while job.status == JobStatus::Pending {
            job = match self.prepare(job, &policy).await? {
                Prepared::Running(job) => *job,
                Prepared::Over => return Ok(()),
                // Its scope grew while it was planned: plan it again with all of it.
                Prepared::Changed => match self.store.read_blocking(|tx| jobs::job(tx, id))? {
                    Some(job) => job,
                    None => return Ok(()),
                },
            };
        }
        self.execute(job, &policy, cancel).await
    }

    /// Works out what a new job covers, asks the strategy for a plan, and stores the
    /// tasks.
    async fn prepare(&self, job: JobRecord, policy: &PolicyRecord) -> anyhow::Result<Prepared> {
        let (topology, local) = plan::topology(policy, &self.config.instance_name);
        let source_id = plan::source_instance(policy, &topology, &local);
        let work = match &job.scope {
            JobScope::Changes { .. } => plan::from_changes(policy, &job.scope),
            JobScope::All => {
                let sides = match self.sides(policy, &topology, &local) {
                    Ok(s) => s,
                    Err(e) => {
                        self.fail_job(job.id, &e.to_string())?;
                        return Ok(Prepared::Over);
                    }
                };
                match plan::discover(policy, sides.source(&source_id)?.as_ref()).await {
                    Ok(work) => work,
                    Err(e) => {
                        self.fail_job(job.id, &format!("listing what to replicate: {e}"))?;
                        return Ok(Prepared::Over);
                    }
                }
            }
        };
        let request = plan::request(policy, &topology, &local, &work);
        let plan = if work.artifacts.is_empty() {
            berth_plugin_runtime::latest::strategy::ReplicationPlan {
                waves: Vec::new(),
                limits: Vec::new(),
            }
        } else {
            match self
                .plugins
                .plan_replication(&policy.strategy, request.clone())
                .await
            {
                Ok(Ok(plan)) => plan,
                Ok(Err(e)) => {
                    self.fail_job(
                        job.id,
                        &format!("strategy {} cannot plan this job: {e:?}", policy.strategy),
                    )?;
                    return Ok(Prepared::Over);
                }
                Err(e) => {
                    self.fail_job(job.id, &format!("strategy {} failed: {e}", policy.strategy))?;
                    return Ok(Prepared::Over);
                }
            }
        };
        let (tasks, summary) = match plan::tasks(job.id, policy, &request, &plan, &source_id, &work)
        {
            Ok(t) => t,
            Err(e) => {
                self.fail_job(job.id, &e)?;
                return Ok(Prepared::Over);
            }
        };
        let now = now_millis();
        let stored =
            self.store
                .write_blocking(Durability::Immediate, |tx| -> StoreResult<Prepared> {
                    let Some(mut current) = jobs::job(tx.read(), job.id)? else {
                        return Ok(Prepared::Over);
                    };
                    if current.status != JobStatus::Pending {
                        return Ok(Prepared::Over); // cancelled while it was being planned
                    }
                    if current.scope != job.scope {
                        // Its scope grew while it was planned (poll_changes should not let it):
                        // plan again rather than drop what was added.
                        return Ok(Prepared::Changed);
                    }
                    for task in &tasks {
                        jobs::put_task(tx, task)?;
                    }
                    current.started_at = Some(now);
                    current.plan = Some(summary.clone());
                    current.tasks = jobs::tally(&tasks).0;
                    if tasks.is_empty() {
                        current.status = JobStatus::Succeeded;
                        current.finished_at = Some(now);
                    } else {
                        current.status = JobStatus::Running;
                    }
                    jobs::put_job(tx, &current)?;
                    Ok(if current.status == JobStatus::Running {
                        Prepared::Running(Box::new(current))
                    } else {
                        Prepared::Over
                    })
                })?;
        Ok(stored)
    }

    /// Runs a planned job's tasks, wave after wave, then records its outcome.
    async fn execute(
        &self,
        job: JobRecord,
        policy: &PolicyRecord,
        cancel: CancellationToken,
    ) -> anyhow::Result<()> {
        let (topology, local) = plan::topology(policy, &self.config.instance_name);
        let sides = match self.sides(policy, &topology, &local) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                // An endpoint vanished or its password no longer opens: every task fails.
                self.finish_all(job.id, &e.to_string())?;
                return Ok(());
            }
        };
        let mut tasks = self.store.read_blocking(|tx| jobs::tasks(tx, job.id))?;
        let slots = Arc::new(Semaphore::new(policy.concurrency.max(1) as usize));
        let mut links: HashMap<(String, String), Arc<Semaphore>> = HashMap::new();
        for cap in job.plan.iter().flat_map(|p| &p.limits) {
            links.insert(
                (cap.source.clone(), cap.target.clone()),
                Arc::new(Semaphore::new(cap.max_parallel.max(1) as usize)),
            );
        }
        let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
        // Later hops of a tree that can forward an artifact while it still arrives: their
        // sender is a berth, and the manifest is here to be read ahead.
        let mut forwardable = std::collections::HashSet::new();
        for task in &tasks {
            if let TaskOp::Copy {
                origin_repository: Some(origin),
                reference,
                ..
            } = &task.op
                && sides
                    .remote(&task.source)
                    .is_some_and(|r| r.kind() == EndpointKind::Berth)
                && sides.remote(&task.target).is_some()
                && matches!(sides.local.manifest(origin, reference).await, Ok(Some(_)))
            {
                forwardable.insert(task.index);
            }
        }
        let context = Arc::new(RunContext {
            started: started_tx,
            // A change job is the outbox: what it carries exists nowhere else, so it keeps
            // retrying while its destination is away, rather than fail and be forgotten
            // (goharbor/harbor#21119, #16331).
            persistent: matches!(job.trigger, Trigger::Change { .. }),
            sides,
            gate: self.gate.clone(),
            options: CopyOptions {
                override_existing: policy.override_existing,
                parallel_blobs: self.config.parallel_blobs,
                throttle: policy
                    .bandwidth_limit_mbps
                    .map(|m| Arc::new(Throttle::new(m))),
            },
        });
        // Waves are ordered per artifact and path: a transfer of an artifact in wave k
        // starts once the earlier-wave transfers bringing that artifact to its source are
        // over — or, for a hop that can forward while it receives, once they run — so a
        // tree passes each artifact on as it arrives instead of waiting for the whole wave.
        let mut running = FuturesUnordered::new();
        let mut started = vec![false; tasks.len()];
        let mut running_now = std::collections::HashSet::new();
        // Each task's own cancellation, so that a hop started early can be stopped when
        // the transfer it forwards from fails.
        let mut tokens: HashMap<u32, CancellationToken> = HashMap::new();
        loop {
            for (i, task) in tasks.iter().enumerate() {
                if started[i] || task.status != TaskStatus::Pending {
                    continue;
                }
                let key = artifact_key(&task.op);
                let early = forwardable.contains(&task.index);
                let ready = tasks.iter().all(|other| {
                    other.wave >= task.wave
                        || other.target != task.source
                        || artifact_key(&other.op) != key
                        || other.status.is_final()
                        || (early && running_now.contains(&other.index))
                });
                if !ready {
                    continue;
                }
                started[i] = true;
                let token = cancel.child_token();
                tokens.insert(task.index, token.clone());
                running.push(
                    self.run_task(
                        task.clone(),
                        context.clone(),
                        slots.clone(),
                        links
                            .get(&(task.source.clone(), task.target.clone()))
                            .cloned(),
                        token,
                    ),
                );
            }
            if running.is_empty() {
                break;
            }
            tokio::select! {
                done = running.next() => {
                    let Some(done) = done else { break };
                    running_now.remove(&done.index);
                    tokens.remove(&done.index);
                    if done.status != TaskStatus::Succeeded {
                        // Hops that started forwarding from it will not get what they wait
                        // for: stop them rather than let them wait it out.
                        let key = artifact_key(&done.op);
                        for (j, t) in tasks.iter().enumerate() {
                            if started[j]
                                && t.wave > done.wave
                                && t.source == done.target
                                && artifact_key(&t.op) == key
                                && let Some(token) = tokens.get(&t.index)
                            {
                                token.cancel();
                            }
                        }
                    }
                    if let Some(slot) = tasks.iter_mut().find(|t| t.index == done.index) {
                        *slot = done;
                    }
                }
                Some(index) = started_rx.recv() => {
                    running_now.insert(index);
                }
            }
        }
        // A job that only stopped running here is recorded by whoever runs it next.
        if !matches!(
            self.stop_reason(job.id),
            Some(Stop::TakenOver | Stop::Shutdown)
        ) {
            self.finish(job.id, cancel.is_cancelled())?;
        }
        Ok(())
    }

    /// One task, with its retries; returns it in its final state.
    async fn run_task(
        &self,
        mut task: TaskRecord,
        context: Arc<RunContext>,
        slots: Arc<Semaphore>,
        link: Option<Arc<Semaphore>>,
        cancel: CancellationToken,
    ) -> TaskRecord {
        loop {
            let wait = task.not_before.saturating_sub(now_millis());
            if wait > 0 {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(wait)) => {}
                    () = cancel.cancelled() => return self.cancelled(task),
                }
            }
            // The link first: a task waiting for a busy link must not hold one of the
            // job's slots, which a task on an idle link (a later hop of a tree) could use.
            let _link = match &link {
                Some(link) => Some(tokio::select! {
                    permit = link.clone().acquire_owned() => permit.expect("never closed"),
                    () = cancel.cancelled() => return self.cancelled(task),
                }),
                None => None,
            };
            let _slot = tokio::select! {
                permit = slots.clone().acquire_owned() => permit.expect("never closed"),
                () = cancel.cancelled() => return self.cancelled(task),
            };
            task.status = TaskStatus::Running;
            task.attempts += 1;
            task.started_at = Some(now_millis());
            self.save_task(&task, false);
            let _ = context.started.send(task.index);
            let outcome = tokio::select! {
                outcome = self.attempt(&task, &context) => outcome,
                () = cancel.cancelled() => return self.cancelled(task),
            };
            match outcome {
                Ok(outcome) => {
                    task.status = TaskStatus::Succeeded;
                    task.progress = outcome.progress;
                    task.note = outcome.note;
                    task.error = None;
                    task.finished_at = Some(now_millis());
                    self.save_task(&task, true);
                    return task;
                }
                Err(e) => {
                    let retryable = e.can_heal();
                    task.error = Some(e.to_string());
                    if retryable && (task.attempts < self.config.max_attempts || context.persistent)
                    {
                        task.status = TaskStatus::Pending;
                        task.not_before = now_millis() + self.backoff(task.attempts);
                        tracing::info!(job = task.job, task = task.index, attempt = task.attempts, error = %e, "replication task failed; retrying");
                        self.save_task(&task, false);
                        continue;
                    }
                    task.status = TaskStatus::Failed;
                    task.finished_at = Some(now_millis());
                    tracing::warn!(job = task.job, task = task.index, attempts = task.attempts, error = %e, "replication task failed");
                    self.save_task(&task, true);
                    return task;
                }
            }
        }
    }

    async fn attempt(
        &self,
        task: &TaskRecord,
        context: &RunContext,
    ) -> Result<CopyOutcome, SideError> {
        let sink = context.sides.sink(&task.target)?;
        match &task.op {
            TaskOp::Copy {
                repository,
                reference,
                destination,
                origin_repository,
            } => {
                // A hop between two other instances: the sender runs it when it is a berth,
                // so the bytes do not detour through this instance.
                if let (Some(from), Some(to)) = (
                    context.sides.remote(&task.source),
                    context.sides.remote(&task.target),
                ) && from.kind() == EndpointKind::Berth
                    && let Some(token) = to
                        .token_for(&[format!("repository:{destination}:pull,push")])
                        .await?
                {
                    // The manifest, read here, lets the sender start before it holds it all.
                    let ahead = match origin_repository {
                        Some(origin) => {
                            match context.sides.local.manifest(origin, reference).await? {
                                Some(manifest) => {
                                    let referrers = context
                                        .sides
                                        .local
                                        .referrers(origin, &manifest.digest)
                                        .await?;
                                    Some(Ahead::new(&manifest, referrers, AHEAD_WAIT))
                                }
                                None => None,
                            }
                        }
                        None => None,
                    };
                    let request = TransferRequest {
                        repository: repository.clone(),
                        reference: reference.clone(),
                        destination: destination.clone(),
                        target: to.as_target(token),
                        override_existing: context.options.override_existing,
                        ahead,
                    };
                    return from.delegate_copy(&request).await;
                }
                let source = context.sides.source(&task.source)?;
                Copier {
                    source: source.as_ref(),
                    sink: sink.as_ref(),
                    target: &task.target,
                    gate: &context.gate,
                    options: &context.options,
                }
                .copy(repository, reference, destination)
                .await
            }
            TaskOp::DeleteTag {
                destination,
                tag: reference,
                clock,
            } => deleted(sink.as_ref(), destination, reference, clock.as_ref()).await,
            TaskOp::DeleteManifest {
                destination,
                digest: reference,
            } => deleted(sink.as_ref(), destination, reference, None).await,
        }
    }

    /// A task stopped before its end: cancelled, unless the job only stopped running
    /// here (taken over, or this node shutting down), which leaves the task for whoever
    /// runs the job next.
    fn cancelled(&self, mut task: TaskRecord) -> TaskRecord {
        if matches!(
            self.stop_reason(task.job),
            Some(Stop::TakenOver | Stop::Shutdown)
        ) {
            return task;
        }
        task.status = TaskStatus::Cancelled;
        task.finished_at = Some(now_millis());
        self.save_task(&task, false);
        task
    }

    /// The delay before attempt `attempts + 1`: doubling from the base, capped, and drawn
    /// at random between half and all of it so that retries against a recovering peer
    /// spread out.
    fn backoff(&self, attempts: u32) -> u64 {
        crate::jobs::backoff::delay_ms(
            attempts,
            self.config.retry_base_ms,
            self.config.retry_max_ms,
        )
    }

    /// Stores a task, and its job's counts when it ended. A task's end is written durably,
    /// so that after a crash no finished task runs again; its start and retries are not
    /// (losing them costs nothing: the task was unfinished either way).
    fn save_task(&self, task: &TaskRecord, ended: bool) {
        let durability = if ended {
            Durability::Immediate
        } else {
            Durability::Lazy
        };
        let result = self
            .store
            .write_blocking(durability, |tx| -> StoreResult<()> {
                jobs::put_task(tx, task)?;
                if ended && let Some(mut job) = jobs::job(tx.read(), task.job)? {
                    let (counts, progress) = jobs::tally(&jobs::tasks(tx.read(), task.job)?);
                    job.tasks = counts;
                    job.progress = progress;
                    jobs::put_job(tx, &job)?;
                }
                Ok(())
            });
        if let Err(e) = result {
            tracing::error!(job = task.job, task = task.index, error = %e, "cannot record a replication task");
        }
    }

    /// Records a job's outcome from its tasks: failed if any task failed.
    fn finish(&self, id: u64, cancelled: bool) -> StoreResult<()> {
        self.store
            .write_blocking(Durability::Immediate, |tx| -> StoreResult<()> {
                let Some(mut job) = jobs::job(tx.read(), id)? else {
                    return Ok(());
                };
                // Another node took the job over (this one's lease lapsed): its outcome is
                // that node's to record.
                if !jobs::leased_to(tx.read(), id, &self.node)? {
                    return Ok(());
                }
                let mut tasks = jobs::tasks(tx.read(), id)?;
                if cancelled || job.status == JobStatus::Cancelled {
                    for t in tasks.iter_mut().filter(|t| !t.status.is_final()) {
                        t.status = TaskStatus::Cancelled;
                        jobs::put_task(tx, t)?;
                    }
                }
                let (counts, progress) = jobs::tally(&tasks);
                job.tasks = counts;
                job.progress = progress;
                if !job.status.is_final() {
                    job.status = if counts.failed > 0 {
                        JobStatus::Failed
                    } else if cancelled || counts.cancelled > 0 {
                        JobStatus::Cancelled
                    } else if counts.pending > 0 || counts.running > 0 {
                        JobStatus::Running
                    } else {
                        JobStatus::Succeeded
                    };
                    if job.status.is_final() {
                        job.finished_at = Some(now_millis());
                    }
                    // The reason shows on the job itself, not only on its tasks.
                    if job.status == JobStatus::Failed && job.error.is_none() {
                        let failed: Vec<&TaskRecord> = tasks
                            .iter()
                            .filter(|t| t.status == TaskStatus::Failed)
                            .collect();
                        if let Some(first) = failed.first() {
                            job.error = Some(format!(
                                "{} of {} tasks failed; task {} ({} -> {}): {}",
                                failed.len(),
                                tasks.len(),
                                first.index,
                                first.source,
                                first.target,
                                first.error.as_deref().unwrap_or("no error recorded")
                            ));
                        }
                    }
                }
                jobs::put_job(tx, &job)
            })?;
        Ok(())
    }

    /// Fails every unfinished task of a job with `error`, and the job with them.
    fn finish_all(&self, id: u64, error: &str) -> crate::replication::ReplicationResult<()> {
        self.store
            .write_blocking(Durability::Immediate, |tx| -> StoreResult<()> {
                for mut t in jobs::tasks(tx.read(), id)? {
                    if !t.status.is_final() {
                        t.status = TaskStatus::Failed;
                        t.error = Some(error.to_string());
                        t.finished_at = Some(now_millis());
                        jobs::put_task(tx, &t)?;
                    }
                }
                Ok(())
            })?;
        self.finish(id, false)?;
        self.fail_job(id, error)
    }

    /// The transfer ends of a policy's instances: this instance itself, and a client per
    /// endpoint.
    fn sides(
        &self,
        policy: &PolicyRecord,
        topology: &policies::TopologySpec,
        local: &str,
    ) -> Result<Sides, crate::replication::ReplicationError> {
        let mut remotes = BTreeMap::new();
        for instance in &topology.instances {
            if let Some(endpoint) = &instance.endpoint {
                remotes.insert(instance.id.clone(), self.remote(endpoint)?);
            }
        }
        // What this instance fetches is recorded as coming from the pull endpoint, so a
        // push policy never sends it back there.
        let origin = match policy.mode {
            Mode::Pull => policy.endpoints.first().cloned(),
            Mode::Push => None,
        };
        Ok(Sides {
            local_id: local.to_string(),
            local: Arc::new(Local::new(self.registry.clone(), origin)),
            remotes,
        })
    }
}

/// What a task moves, as far as wave order goes: the destination repository and the
/// reference (a tag or digest).
fn artifact_key(op: &TaskOp) -> (&str, &str) {
    match op {
        TaskOp::Copy {
            destination,
            reference,
            ..
        } => (destination, reference),
        TaskOp::DeleteTag {
            destination, tag, ..
        } => (destination, tag),
        TaskOp::DeleteManifest {
            destination,
            digest,
        } => (destination, digest),
    }
}

/// Carries a delete to a destination.
async fn deleted(
    sink: &dyn Sink,
    destination: &str,
    reference: &str,
    clock: Option<&crate::storage::clock::Clock>,
) -> Result<CopyOutcome, SideError> {
    let found = sink.delete(destination, reference, clock).await?;
    Ok(CopyOutcome {
        note: (!found).then(|| {
            format!(
                "{} did not hold {destination}:{reference} (or moved it later); nothing to delete",
                sink.describe()
            )
        }),
        ..CopyOutcome::default()
    })
}

/// Whether a change concerns `policy`: its filters select it, it is a kind the policy
/// carries, and it did not come from one of the policy's own endpoints (content that
/// arrived by replication is not sent back where it came from).
pub(super) fn wanted(
    policy: &PolicyRecord,
    selector: &Selector,
    instances: &HashMap<String, String>,
    change: &Change,
) -> bool {
    if let Some(origin) = &change.origin
        && policy
            .endpoints
            .iter()
            .any(|e| e == origin || instances.get(e) == Some(origin))
    {
        return false;
    }
    if !selector.repository(&change.repository) {
        return false;
    }
    match &change.kind {
        ChangeKind::Manifest { tag, .. } => selector.tag(tag.as_deref()),
        ChangeKind::TagDeleted { tag, .. } => policy.replicate_deletions && selector.tag(Some(tag)),
        // A manifest's deletion is carried whatever its tags were: the destination may
        // hold it through a tag that has moved since; one it does not hold is a no-op.
        ChangeKind::ManifestDeleted { .. } => policy.replicate_deletions,
    }
}

/// Where planning left a job.
enum Prepared {
    /// Planned; its tasks are stored and it runs.
    Running(Box<JobRecord>),
    /// Nothing more to do here: it ended (nothing to move, could not be planned) or was
    /// cancelled.
    Over,
    /// It took in more changes while it was planned; plan it again.
    Changed,
}

/// What a running job shares between its tasks.
struct RunContext {
    persistent: bool,
    /// Tells the scheduler which task has just started running.
    started: tokio::sync::mpsc::UnboundedSender<u32>,
    sides: Arc<Sides>,
    gate: Arc<BlobGate>,
    options: CopyOptions,
}
