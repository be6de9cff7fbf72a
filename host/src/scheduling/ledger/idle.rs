//! Idle capacity: what a physical pool's hosts cost while no project holds them, shown as
//! the pool's own cost and never spread over projects (OpenCost's "idle"). Computed when
//! a report asks, from the same sheet and the same machine histories as the ledger: each
//! host now in a pool priced by a sheet is idle whenever no machine on it is billed.
//! Hosts removed from a pool are no longer counted.

use crate::cost::accrual::accrue;
use crate::cost::rate::Phase;
use crate::cost::report::Part;
use crate::cost::sheet::host_rates;
use crate::storage::store::ReadTx;
use crate::storage::tables::scheduling::{MachineFilter, POOL_PROVIDER};

use super::{Clusters, CostError, cluster, phases};

/// The idle cost of every pool (or of `only`) over `[from, until)`, a part per host and
/// piece, keyed by the pool's name.
pub(super) fn idle(
    read: &dyn ReadTx,
    clusters: &mut Clusters,
    only: Option<&str>,
    from: u64,
    until: u64,
) -> Result<Vec<Part>, CostError> {
    let mut parts = Vec::new();
    if until <= from {
        return Ok(parts);
    }
    let pools: Vec<String> = match only {
        Some(name) => vec![name.to_string()],
        None => read
            .scheduling()
            .clusters()?
            .into_iter()
            .filter(|c| c.provider == POOL_PROVIDER)
            .map(|c| c.name)
            .collect(),
    };
    for name in pools {
        let Some((pool, sheets)) = cluster(read, clusters, &name)? else {
            continue;
        };
        if pool.provider != POOL_PROVIDER || sheets.is_empty() {
            continue;
        }
        let (pool, sheets) = (pool.clone(), sheets.clone());
        let machines = read.scheduling().machines(&MachineFilter {
            cluster: Some(name.clone()),
            ..MachineFilter::default()
        })?;
        // Each host's allocations: when a machine on it was billed, it was not idle.
        let mut busy: std::collections::BTreeMap<String, Vec<(u64, Phase)>> = Default::default();
        for m in &machines {
            let Some(host) = &m.provider_id else { continue };
            let transitions = read.scheduling().transitions(&m.id)?;
            let timeline = busy.entry(host.clone()).or_default();
            for (at, phase) in phases(&pool, m, &transitions) {
                // Billed to a project: not idle; unbilled: idle again.
                timeline.push((
                    at,
                    if phase == Phase::Unbilled {
                        Phase::Running
                    } else {
                        Phase::Unbilled
                    },
                ));
            }
        }
        for host in read.scheduling().pool_hosts(&name)? {
            let mut timeline = vec![(0, Phase::Running)];
            if let Some(allocations) = busy.get_mut(&host.name) {
                allocations.sort_by_key(|(at, _)| *at);
                timeline.extend(allocations.iter().copied());
            }
            let rates = host_rates(&sheets, &host.name, 0);
            for p in accrue(&timeline, &rates, from, until) {
                parts.push(Part::of_piece(name.clone(), &p, true));
            }
        }
    }
    Ok(parts)
}
