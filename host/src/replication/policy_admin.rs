//! The service's policies: create, change, delete them (their references checked), and
//! queue a run.

use super::jobs::{JobRecord, JobScope, Trigger};
use super::policies::PolicyRecord;
use crate::storage::store::{Durability, now_millis};

use super::*;

impl Replication {
    /// Every policy.
    pub fn policies(&self) -> ReplicationResult<Vec<PolicyRecord>> {
        self.store
            .read_blocking(|tx| Ok(tx.replication().policies()?))
    }

    /// One policy.
    pub fn policy(&self, name: &str) -> ReplicationResult<PolicyRecord> {
        self.store
            .read_blocking(|tx| -> ReplicationResult<_> { Ok(tx.replication().policy(name)?) })?
            .ok_or_else(|| ReplicationError::NotFound(format!("no policy named {name}")))
    }

    /// Checks what a policy refers to: its endpoints exist, its strategy is a loaded
    /// replication-strategy plugin.
    pub(super) async fn check_references(&self, policy: &PolicyRecord) -> ReplicationResult<()> {
        policy.check()?;
        let known: Vec<String> = self.endpoints()?.into_iter().map(|e| e.name).collect();
        for name in &policy.endpoints {
            if !known.contains(name) {
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
        self.store
            .write_blocking(Durability::Immediate, |tx| -> ReplicationResult<()> {
                if tx.replication().policy(&record.name)?.is_some() {
                    return Err(ReplicationError::Conflict(format!(
                        "policy {} exists already",
                        record.name
                    )));
                }
                tx.replication().put_policy(&record)?;
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
        record.updated_at = now_millis().max(before.updated_at + 1);
        self.check_references(&record).await?;
        self.store.write_blocking(Durability::Immediate, |tx| {
            // The policy was read before the (asynchronous) checks: a change committed
            // meanwhile would be overwritten without this.
            let current = tx.replication().policy(name)?;
            if current.as_ref().map(|p| p.updated_at) != Some(before.updated_at) {
                return Err(ReplicationError::Conflict(format!(
                    "policy {name} changed (or was deleted) meanwhile; read it again and retry"
                )));
            }
            tx.replication().put_policy(&record)?;
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
        let unfinished: Vec<u64> = self
            .store
            .read_blocking(jobs::unfinished)?
            .into_iter()
            .filter(|j| j.policy == name)
            .map(|j| j.id)
            .collect();
        for id in unfinished {
            self.cancel(id)?;
        }
        self.store.write_blocking(Durability::Immediate, |tx| {
            if !tx.replication().remove_policy(name)? {
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
        let now = now_millis();
        let job = self.store.write_blocking(
            Durability::Immediate,
            |tx| -> ReplicationResult<JobRecord> {
                let policy = tx
                    .replication()
                    .policy(name)?
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
                    now,
                )?)
            },
        )?;
        self.wake.notify_one();
        Ok(job)
    }
}
