//! Quotas: what a project's machines may add up to (machines, vCPUs, memory), and the
//! check a new machine passes in the transaction that records it. Every machine that may
//! hold resources at its provider counts (`lifecycle::holds_resources`), so a failed
//! create gives its share back and a retiring machine keeps it until it is gone.
//!
//! The check and the record are one transaction: redb runs one writer at a time, and
//! PostgreSQL runs writes serializable, so concurrent creates never add up past a quota.

use super::lifecycle::holds_resources;
use crate::storage::store::{ReadTx, StoreResult};
use crate::storage::tables::scheduling::{MachineFilter, MachineSpec, MachineState, QuotaRecord};

/// What a project's machines hold now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Usage {
    /// Machines that are not retired or failed.
    pub machines: u32,
    /// Their vCPUs together.
    pub cpus: u64,
    /// Their memory together, MiB.
    pub memory_mib: u64,
}

/// What `project`'s machines hold now.
pub fn usage(tx: &dyn ReadTx, project: &str) -> StoreResult<Usage> {
    let holding: Vec<MachineState> = MachineState::ALL
        .into_iter()
        .filter(|s| holds_resources(*s))
        .collect();
    let machines = tx.scheduling().machines(&MachineFilter {
        project: Some(project.to_owned()),
        states: holding,
        ..MachineFilter::default()
    })?;
    Ok(machines.iter().fold(Usage::default(), |u, m| Usage {
        machines: u.machines + 1,
        cpus: u.cpus + u64::from(m.spec.cpus),
        memory_mib: u.memory_mib + m.spec.memory_mib,
    }))
}

/// Why a quota refuses a machine: the limit it would cross, what is used and the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "project {project} would exceed its quota of {limit} {what} ({used} in use, {adding} more asked)"
)]
pub struct QuotaExceeded {
    /// The project.
    pub project: String,
    /// `machines`, `vCPUs` or `MiB of memory`.
    pub what: &'static str,
    /// In use now.
    pub used: u64,
    /// What the new machine adds.
    pub adding: u64,
    /// The limit.
    pub limit: u64,
}

/// Checks that one more machine of `spec` fits `project`'s quota, in the caller's
/// transaction (which then records the machine).
pub fn check(
    tx: &dyn ReadTx,
    project: &str,
    spec: &MachineSpec,
) -> StoreResult<Result<(), QuotaExceeded>> {
    let Some(quota) = tx.scheduling().quota(project)? else {
        return Ok(Ok(()));
    };
    let used = usage(tx, project)?;
    Ok(fits(project, &quota, &used, spec))
}

fn fits(
    project: &str,
    quota: &QuotaRecord,
    used: &Usage,
    spec: &MachineSpec,
) -> Result<(), QuotaExceeded> {
    let limits = [
        (
            "machines",
            quota.machines.map(u64::from),
            u64::from(used.machines),
            1,
        ),
        (
            "vCPUs",
            quota.cpus.map(u64::from),
            used.cpus,
            u64::from(spec.cpus),
        ),
        (
            "MiB of memory",
            quota.memory_mib,
            used.memory_mib,
            spec.memory_mib,
        ),
    ];
    for (what, limit, used, adding) in limits {
        if let Some(limit) = limit
            && used.saturating_add(adding) > limit
        {
            return Err(QuotaExceeded {
                project: project.to_owned(),
                what,
                used,
                adding,
                limit,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cpus: u32, memory_mib: u64) -> MachineSpec {
        MachineSpec {
            cpus,
            memory_mib,
            ..MachineSpec::default()
        }
    }

    #[test]
    fn each_limit_is_checked_and_absent_ones_are_none() {
        let used = Usage {
            machines: 2,
            cpus: 6,
            memory_mib: 12_288,
        };
        let quota = QuotaRecord {
            machines: Some(3),
            cpus: Some(8),
            memory_mib: None,
        };
        assert_eq!(fits("p", &quota, &used, &spec(2, 1 << 40)), Ok(()));
        let err = fits("p", &quota, &used, &spec(4, 1)).unwrap_err();
        assert_eq!(
            (err.what, err.used, err.adding, err.limit),
            ("vCPUs", 6, 4, 8)
        );
        let full = Usage {
            machines: 3,
            ..used
        };
        assert_eq!(
            fits("p", &quota, &full, &spec(0, 0)).unwrap_err().what,
            "machines"
        );
        assert_eq!(
            fits(
                "p",
                &QuotaRecord::default(),
                &full,
                &spec(u32::MAX, u64::MAX)
            ),
            Ok(())
        );
    }
}
