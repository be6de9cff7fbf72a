//! Where replication stands: per policy what is queued and not yet delivered, and
//! warnings about instance names.

use super::endpoints::EndpointRecord;
use super::jobs::{JobRecord, JobScope, JobStatus};
use crate::replication::CONSUMER;

use super::*;

impl Replication {
    /// Where every policy stands: what is queued and not yet delivered.
    pub fn status(&self) -> ReplicationResult<Status> {
        self.registry.feed.sequence()?;
        let out = self.store.read_blocking(|tx| -> ReplicationResult<_> {
            let mut out = Vec::new();
            let unread_changes = crate::events::backlog(tx, CONSUMER)?;
            let unfinished = jobs::unfinished(tx)?;
            for policy in tx.replication().policies()? {
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
                        pending_tasks += jobs::tasks(tx, job.id)?
                            .iter()
                            .filter(|t| !t.status.is_final())
                            .count() as u32;
                    }
                }
                let of_policy = crate::jobs::JobFilter {
                    subject: Some(policy.name.clone()),
                    ..Default::default()
                };
                let last = jobs::jobs(tx, &of_policy, 1, |_| true)?;
                let next_run = match jobs::state(tx, &format!("schedule/{}", policy.name))? {
                    0 => None,
                    t => Some(t),
                };
                out.push(PolicyStatus {
                    policy: policy.name.clone(),
                    enabled: policy.enabled,
                    delivery: policy.delivery,
                    degraded: Replication::degraded_of(tx, &policy.name)?,
                    unfinished_jobs: mine.len() as u32,
                    pending_tasks,
                    pending_changes,
                    last_job: last.first().map(|j| j.id),
                    last_status: last.first().map(|j| j.status),
                    next_run: next_run.filter(|_| policy.schedule.is_some()),
                });
            }
            Ok((out, unread_changes))
        })?;
        let (out, unread_changes) = out;
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
