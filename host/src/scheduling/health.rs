//! Health: an online machine that fails its probe (its SSH port or HTTP check, `probe.rs`) for longer than
//! `scheduling.unhealthy_after_secs` goes offline with the reason, and back online when
//! it answers again. When more than `scheduling.max_unhealthy_percent` of a cluster's
//! machines fail at once, nothing is taken offline (Cluster API's `maxUnhealthy`): a
//! network blip, or this node's own network, must not drain a cluster.
//!
//! One node probes at a time: the one holding the lease of the `machine-health` job of
//! the shared runner, a job that never ends; when that node dies, another takes the
//! lease over within three probe intervals. (Should two nodes ever probe at once, the
//! moves are lifecycle transitions, which check the state they leave, so a machine moves
//! once.) Only machines that health took offline are brought back by it; an operator's
//! offline stays.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::{Scheduling, pool, probe};
use crate::jobs::lease::{self, Claim};
use crate::jobs::{JobFilter, queue};
use crate::storage::store::{Durability, StoreResult, now_millis};
use crate::storage::tables::scheduling::{
    ClusterRecord, MachineFilter, MachineRecord, MachineState, PoolHostRecord,
};

/// The reason health gives a machine it takes offline; it brings back only those.
pub const UNHEALTHY: &str = "unhealthy:";

/// The job kind whose lease says which node probes.
pub const HEALTH: &str = "machine-health";

/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Since when each machine has failed its probes, on this node.
pub(super) type Failing = std::sync::Mutex<HashMap<String, Instant>>;

impl Scheduling {
    /// Whether this node holds (or now takes) the lease of the never-ending job of `kind`
    /// (`machine-health`, `machine-reconcile`), which is created the first time any node
    /// asks; the lease lasts `term_ms`, so another node takes over within it when this one
    /// dies.
    pub(super) async fn holds_standing_lease(
        &self,
        kind: &'static str,
        term_ms: u64,
    ) -> StoreResult<bool> {
        let node = self.node.clone();
        let claim = self
            .store
            .write_with(Durability::Patient, move |tx| -> StoreResult<Claim> {
                let now = now_millis();
                let unfinished = JobFilter {
                    unfinished: true,
                    ..JobFilter::default()
                };
                let id = match queue::jobs(tx.read(), kind, &unfinished, 1)?.first() {
                    Some(job) => job.id,
                    None => queue::enqueue(tx, kind, kind, serde_json::json!({}), now)?.id,
                };
                lease::claim(tx, id, &node, now, term_ms)
            })
            .await?;
        Ok(matches!(claim, Claim::Taken { .. }))
    }

    /// One round, on the prober: probes online machines and those health took offline,
    /// and moves them.
    pub(super) async fn check_health(&self) -> StoreResult<()> {
        // The machines to probe and where, in one read: their pools' hosts are read once
        // per pool, not once per machine.
        let targets: Vec<(MachineRecord, probe::Target)> = self
            .store
            .read(|tx| -> StoreResult<Vec<(MachineRecord, probe::Target)>> {
                let machines = tx.scheduling().machines(&MachineFilter {
                    states: vec![MachineState::Online, MachineState::Offline],
                    ..MachineFilter::default()
                })?;
                let clusters: HashMap<String, ClusterRecord> = tx
                    .scheduling()
                    .clusters()?
                    .into_iter()
                    .map(|c| (c.name.clone(), c))
                    .collect();
                let mut hosts: HashMap<(String, String), PoolHostRecord> = HashMap::new();
                let mut pools_read: HashSet<String> = HashSet::new();
                let mut targets = Vec::new();
                for machine in machines {
                    let health_took_it = machine.state == MachineState::Offline
                        && machine
                            .reason
                            .as_deref()
                            .is_some_and(|r| r.starts_with(UNHEALTHY));
                    if machine.state != MachineState::Online && !health_took_it {
                        continue;
                    }
                    let Some(cluster) = clusters.get(&machine.cluster) else {
                        continue;
                    };
                    if cluster.provider == pool::PROVIDER
                        && pools_read.insert(machine.cluster.clone())
                    {
                        for host in tx.scheduling().pool_hosts(&machine.cluster)? {
                            hosts.insert((host.cluster.clone(), host.name.clone()), host);
                        }
                    }
                    let key = (
                        machine.cluster.clone(),
                        machine.provider_id.clone().unwrap_or_default(),
                    );
                    if let Some(address) = probe::target(&machine, cluster, hosts.get(&key)) {
                        targets.push((machine, address));
                    }
                }
                Ok(targets)
            })
            .await?;
        // Nothing to probe: no lease taken, and no job made, where no machine runs.
        if targets.is_empty() {
            return Ok(());
        }
        if !self
            .holds_standing_lease(HEALTH, self.config.health_interval_secs.max(1) * 3 * 1000)
            .await?
        {
            // Another node probes; what this node saw is stale by the time it probes.
            self.failing.lock().expect("failing lock").clear();
            return Ok(());
        }
        let probes = targets
            .iter()
            .map(|(_, target)| probe::answers(target, &self.http, PROBE_TIMEOUT));
        let answers = futures::future::join_all(probes).await;
        let unhealthy_after = Duration::from_secs(self.config.unhealthy_after_secs);
        let mut down: Vec<(&MachineRecord, &probe::Target)> = Vec::new();
        let mut back: Vec<(&MachineRecord, &probe::Target)> = Vec::new();
        {
            let mut failing = self.failing.lock().expect("failing lock");
            let seen: HashSet<&str> = targets.iter().map(|(m, _)| m.id.as_str()).collect();
            failing.retain(|id, _| seen.contains(id.as_str()));
            for ((machine, target), answered) in targets.iter().zip(&answers) {
                if *answered {
                    failing.remove(&machine.id);
                    if machine.state == MachineState::Offline {
                        back.push((machine, target));
                    }
                } else if machine.state == MachineState::Online {
                    let since = *failing
                        .entry(machine.id.clone())
                        .or_insert_with(Instant::now);
                    if since.elapsed() >= unhealthy_after {
                        down.push((machine, target));
                    }
                }
            }
        }
        // The guard, per cluster: too many failing at once is not the machines' fault.
        let mut online_per_cluster: HashMap<&str, usize> = HashMap::new();
        let mut failing_per_cluster: HashMap<&str, usize> = HashMap::new();
        for ((machine, _), answered) in targets.iter().zip(&answers) {
            if machine.state == MachineState::Online {
                *online_per_cluster.entry(&machine.cluster).or_default() += 1;
                if !answered {
                    *failing_per_cluster.entry(&machine.cluster).or_default() += 1;
                }
            }
        }
        let limit = u64::from(self.config.max_unhealthy_percent);
        for (machine, target) in down {
            let online = online_per_cluster[machine.cluster.as_str()] as u64;
            let failing = failing_per_cluster[machine.cluster.as_str()] as u64;
            if failing * 100 > online * limit {
                tracing::warn!(cluster = %machine.cluster, failing, online, "scheduling: too many machines fail their health probe at once; taking none offline");
                continue;
            }
            let reason = format!(
                "{UNHEALTHY} no answer at {target} for {} s",
                self.config.unhealthy_after_secs
            );
            self.health_move(
                &machine.id,
                MachineState::Online,
                MachineState::Offline,
                reason,
            )
            .await;
        }
        for (machine, target) in back {
            self.health_move(
                &machine.id,
                MachineState::Offline,
                MachineState::Online,
                format!("answers at {target} again"),
            )
            .await;
        }
        Ok(())
    }

    /// Moves machine `id` from `from` to `to`, if it is still in `from` (another node or
    /// an operator may have moved it since the probe).
    async fn health_move(&self, id: &str, from: MachineState, to: MachineState, reason: String) {
        match self.step_if(id, from, to, Some(reason.clone())).await {
            Ok(Some(_)) => tracing::warn!(
                machine = id,
                to = to.as_str(),
                reason,
                "scheduling: health moved a machine"
            ),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(machine = id, error = %e, "scheduling: health could not move a machine")
            }
        }
    }
}
