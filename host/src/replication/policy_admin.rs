//! The service's policies: create, change, delete them (their references checked), and
//! queue a run.

use super::jobs::{JobRecord, JobScope, Trigger};
use super::policies::PolicyRecord;
use crate::storage::store::now_millis;

use super::*;

impl Replication {
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
    pub(super) async fn check_references(&self, policy: &PolicyRecord) -> ReplicationResult<()> {
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
}
