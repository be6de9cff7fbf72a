//! The ledger, the service that owns cost accounting's tables: machines' time turned into
//! charges, appended and never changed, and the reports read from them. Accrual takes
//! each machine from its cursor to a given time: its billing phases from its lifecycle
//! history, its rates from its cluster's price sheet (or its own snapshot of its
//! provider's price), the window cut into pieces ([`crate::cost::accrual`]), the closed
//! ones appended with the cursor moved in one transaction — so a crash never charges
//! twice and a restart loses nothing: the next run starts where the last commit left off.
//! The piece still open (today's, until midnight or a change of state or price) stays
//! out of the ledger: reports and budgets count it as provisional, so the ledger holds
//! about one entry per machine and day however often accrual runs.
//!
//! Which states are billed is per cluster kind:
//! - a **provider's** machine is billed while it runs: from `initializing` (or from when
//!   its provider said billing started, if earlier) until it is `retired` or `failed`
//!   (`offline`, `draining` and `retiring` machines still run);
//! - a **pool** host is billed to the project it is allocated to: from `provisioning`
//!   (the allocation) until `retired` or `failed` (the release).

use std::collections::BTreeMap;

use crate::storage::store::{ReadTx, Store, StoreError, WriteTx};
use crate::storage::tables::cost::{
    BilledPhase, CostEntry, EntryFilter, MachineRate, TotalsFilter,
};
use crate::storage::tables::scheduling::{
    ClusterRecord, MachineFilter, MachineRecord, MachineState, POOL_PROVIDER, TransitionRecord,
};

use crate::cost::accrual::{Piece, accrue, accrue_closed};
use crate::cost::rate::{Phase, Rate};
use crate::cost::report::{By, Part, Report, ReportError, convert, day, summarise};
use crate::cost::sheet::{Sheet, dearest_host_rates, flavor_rates, host_rates};

/// Machines accrued per transaction: few enough that a round's commits stay short, many
/// enough that 10,000 machines take 50 commits, not 10,000.
const MACHINES_PER_COMMIT: usize = 200;

/// Why accrual failed.
#[derive(Debug, thiserror::Error)]
pub enum CostError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored sheet or rate does not decode: named, so an admin can fix it.
    #[error("the stored {what} is unreadable: {message}")]
    Unreadable { what: String, message: String },
}

/// What one accrual round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Round {
    /// Machines whose cursor moved.
    pub machines: usize,
    /// Entries appended.
    pub entries: usize,
    /// Machines left unaccrued because their cluster's record is gone (their kind, and
    /// so which of their states are billed, is unknown).
    pub without_cluster: usize,
}

/// What accruing one machine did.
enum Accrued {
    Entries(usize),
    UpToDate,
    NoCluster,
}

/// The ledger of one store.
#[derive(Clone)]
pub struct Ledger {
    store: Store,
}

impl Ledger {
    pub fn new(store: Store) -> Ledger {
        Ledger { store }
    }

    /// Records `rate` as machine `machine`'s price from `from` on: its provider's price,
    /// snapshotted when it is created. Written in the caller's transaction.
    pub fn snapshot(
        tx: &dyn WriteTx,
        machine: &str,
        from: u64,
        rate: Option<&Rate>,
    ) -> Result<(), StoreError> {
        tx.cost().put_machine_rate(&MachineRate {
            machine: machine.to_string(),
            effective_from: from,
            rate: rate.map(|r| serde_json::to_value(r).expect("a rate serialises")),
        })
    }

    /// Accrues every machine up to `until` (ms since the epoch).
    pub async fn accrue(&self, until: u64) -> Result<Round, CostError> {
        let ids = self.machines().await?;
        self.accrue_machines(ids, until).await
    }

    /// The ids of every machine on record, which a round takes in turn.
    pub async fn machines(&self) -> Result<Vec<String>, CostError> {
        Ok(self
            .store
            .read(|tx| {
                let machines = tx.scheduling().machines(&Default::default())?;
                Ok::<_, StoreError>(machines.into_iter().map(|m| m.id).collect())
            })
            .await?)
    }

    /// Accrues machines `ids` up to `until`.
    pub async fn accrue_machines(&self, ids: Vec<String>, until: u64) -> Result<Round, CostError> {
        let mut round = Round::default();
        for chunk in ids.chunks(MACHINES_PER_COMMIT) {
            let chunk = chunk.to_vec();
            let done = self
                .store
                .write(move |tx| {
                    let mut done = Round::default();
                    // Machines of one cluster share its record and sheet: read once per
                    // commit, not once per machine.
                    let mut clusters = Clusters::new();
                    for id in &chunk {
                        match accrue_machine(tx, &mut clusters, id, until)? {
                            Accrued::Entries(n) => {
                                done.machines += 1;
                                done.entries += n;
                            }
                            Accrued::UpToDate => {}
                            Accrued::NoCluster => done.without_cluster += 1,
                        }
                    }
                    Ok::<_, CostError>(done)
                })
                .await?;
            round.machines += done.machines;
            round.entries += done.entries;
            round.without_cluster += done.without_cluster;
        }
        if round.without_cluster > 0 {
            tracing::warn!(
                machines = round.without_cluster,
                "cost: machines whose cluster is gone were not accrued"
            );
        }
        Ok(round)
    }
}

/// A cluster's record and its price sheet's versions, oldest first.
pub(super) type Priced = (ClusterRecord, Vec<(u64, Sheet)>);

/// Clusters read in one commit, by name (none for a cluster gone from the record).
pub(super) type Clusters = BTreeMap<String, Option<Priced>>;

/// Cluster `name` and its sheet, from `clusters` or read into it.
pub(super) fn cluster<'a>(
    read: &dyn ReadTx,
    clusters: &'a mut Clusters,
    name: &str,
) -> Result<Option<&'a Priced>, CostError> {
    if !clusters.contains_key(name) {
        let found = match read.scheduling().cluster(name)? {
            Some(record) => Some((record, sheets(read, name)?)),
            None => None,
        };
        clusters.insert(name.to_string(), found);
    }
    Ok(clusters[name].as_ref())
}

/// Accrues machine `id` from its cursor to `until` in `tx`.
fn accrue_machine(
    tx: &dyn WriteTx,
    clusters: &mut Clusters,
    id: &str,
    until: u64,
) -> Result<Accrued, CostError> {
    let read = tx.read();
    let Some(machine) = read.scheduling().machine(id)? else {
        return Ok(Accrued::UpToDate);
    };
    let from = read.cost().accrued_to(id)?.unwrap_or(machine.created_at);
    if from >= until {
        return Ok(Accrued::UpToDate);
    }
    let Some((cluster, sheets)) = cluster(read, clusters, &machine.cluster)? else {
        return Ok(Accrued::NoCluster);
    };
    // Nothing can have closed since the cursor without a cut after it: a midnight, a
    // sheet version, or a change to the machine (a move, a new rate, a billing start
    // all come with one, and the record's `updated_at` with it). Most rounds of most
    // machines end here, without reading their history.
    let midnight = (from / MS_PER_DAY + 1) * MS_PER_DAY;
    if machine.updated_at <= from
        && machine.billing_started_at.is_none_or(|b| b <= from)
        && until < midnight
        && !sheets.iter().any(|(t, _)| *t > from && *t <= until)
    {
        return Ok(Accrued::UpToDate);
    }
    let transitions = read.scheduling().transitions(id)?;
    let phases = phases(cluster, &machine, &transitions);
    let rates = rates(read, cluster, sheets, &machine)?;
    let closed = accrue_closed(&phases, &rates, from, until);
    if closed.resume_at == from {
        // Only the open piece grew.
        return Ok(Accrued::UpToDate);
    }
    let entries: Vec<CostEntry> = closed.pieces.iter().map(|p| entry(&machine, p)).collect();
    if !entries.is_empty() {
        tx.cost().append_entries(&entries)?;
    }
    tx.cost().set_accrued_to(id, closed.resume_at)?;
    Ok(Accrued::Entries(entries.len()))
}

/// The pieces of machine `machine` not yet in the ledger, from its cursor up to `until`.
pub(super) fn open_pieces(
    read: &dyn ReadTx,
    clusters: &mut Clusters,
    machine: &MachineRecord,
    until: u64,
) -> Result<Vec<Piece>, CostError> {
    let cursor = read.cost().accrued_to(&machine.id)?;
    open_pieces_from(read, clusters, machine, cursor, until)
}

/// [`open_pieces`], with the machine's cursor already read.
fn open_pieces_from(
    read: &dyn ReadTx,
    clusters: &mut Clusters,
    machine: &MachineRecord,
    cursor: Option<u64>,
    until: u64,
) -> Result<Vec<Piece>, CostError> {
    let from = cursor.unwrap_or(machine.created_at);
    if from >= until {
        return Ok(Vec::new());
    }
    let Some((cluster, sheets)) = cluster(read, clusters, &machine.cluster)? else {
        return Ok(Vec::new());
    };
    let transitions = read.scheduling().transitions(&machine.id)?;
    let phases = phases(cluster, machine, &transitions);
    let rates = rates(read, cluster, sheets, machine)?;
    Ok(accrue(&phases, &rates, from, until))
}

fn entry(machine: &MachineRecord, piece: &Piece) -> CostEntry {
    CostEntry {
        seq: 0,
        machine: machine.id.clone(),
        project: machine.project.clone(),
        cluster: machine.cluster.clone(),
        from: piece.from,
        to: piece.to,
        phase: match piece.phase {
            Phase::Stopped => BilledPhase::Stopped,
            Phase::Running | Phase::Unbilled => BilledPhase::Running,
        },
        currency: piece.currency.as_ref().map(|c| c.code().to_string()),
        amount: piece.amount,
        rate_from: piece.rate_from,
        note: None,
    }
}

/// A machine's billing phases over its life, from its history.
pub fn phases(
    cluster: &ClusterRecord,
    machine: &MachineRecord,
    transitions: &[TransitionRecord],
) -> Vec<(u64, Phase)> {
    let pool = cluster.provider == POOL_PROVIDER;
    let mut out: Vec<(u64, Phase)> = Vec::with_capacity(transitions.len() + 1);
    for (i, t) in transitions.iter().enumerate() {
        // A stopped machine being deleted is still only its disks.
        let state = match (t.to, t.from) {
            (
                MachineState::Retiring,
                Some(from @ (MachineState::Stopped | MachineState::Starting)),
            ) => from,
            (to, _) => to,
        };
        out.push((t.at, billed_phase(pool, state)));
        // A provider that said when it started billing a machine still being created is
        // believed: running from then, not from when berth saw it.
        if !pool
            && t.to == MachineState::Provisioning
            && let Some(started) = machine.billing_started_at
        {
            let next = transitions.get(i + 1).map(|n| n.at).unwrap_or(u64::MAX);
            if started >= t.at && started < next {
                out.push((started, Phase::Running));
            }
        }
    }
    out.sort_by_key(|(at, _)| *at);
    // A move between two billed states (online to offline) is no change of price: no
    // cut, so no more entries than the day and price changes make.
    out.dedup_by(|later, earlier| later.1 == earlier.1);
    out
}

/// How a machine in `state` is charged. A pool host is charged while it is allocated to
/// a project, whatever its power. A provider's machine is charged from provisioning (or
/// the provider's own billing start) until it is retired, at the stopped (disk) price
/// from when its provider reports it stopped until its provider reports it running again
/// (`starting` waits for that): berth bills what it has seen, so `stopping` is running.
/// (`retiring` is charged as the state it left: running, or stopped.)
pub fn billed_phase(pool: bool, state: MachineState) -> Phase {
    match state {
        MachineState::Requested | MachineState::Retired | MachineState::Failed => Phase::Unbilled,
        MachineState::Provisioning if !pool => Phase::Unbilled,
        MachineState::Stopped | MachineState::Starting if !pool => Phase::Stopped,
        _ => Phase::Running,
    }
}

/// Cluster `name`'s price sheet versions, oldest first.
fn sheets(read: &dyn ReadTx, name: &str) -> Result<Vec<(u64, Sheet)>, CostError> {
    read.cost()
        .sheet_versions(name)?
        .into_iter()
        .map(|v| {
            serde_json::from_value::<Sheet>(v.sheet)
                .map(|sheet| (v.effective_from, sheet))
                .map_err(|e| CostError::Unreadable {
                    what: format!("price sheet of cluster {name}"),
                    message: e.to_string(),
                })
        })
        .collect()
}

/// A machine's rates over its life: its cluster's price sheet (`sheets`) if the cluster
/// has one, else its own snapshot of its provider's price.
pub(super) fn rates(
    read: &dyn ReadTx,
    cluster: &ClusterRecord,
    sheets: &[(u64, Sheet)],
    machine: &MachineRecord,
) -> Result<Vec<(u64, Option<Rate>)>, CostError> {
    if !sheets.is_empty() {
        let since = machine.created_at;
        return Ok(if cluster.provider == POOL_PROVIDER {
            match machine.provider_id.as_deref() {
                Some(host) => host_rates(sheets, host, since),
                // Not given a host yet (never billed so): what a budget estimates it at.
                None => dearest_host_rates(sheets, since),
            }
        } else {
            let flavor = machine.spec.machine_type.as_deref().unwrap_or_default();
            flavor_rates(sheets, flavor, since)
        });
    }
    read.cost()
        .machine_rates(&machine.id)?
        .into_iter()
        .map(|r| {
            let rate = r
                .rate
                .map(serde_json::from_value::<Rate>)
                .transpose()
                .map_err(|e| CostError::Unreadable {
                    what: format!("rate of machine {}", machine.id),
                    message: e.to_string(),
                })?;
            Ok((r.effective_from, rate))
        })
        .collect()
}

/// The report of the time `filter` selects up to `now`, grouped `by`: the ledger's daily
/// totals (by project, cluster or day) or entries (by machine or label, or for one
/// machine), and the open pieces of the machines selected, as provisional.
pub async fn report(
    store: &Store,
    filter: EntryFilter,
    by: By,
    now: u64,
) -> Result<Report, ReportError> {
    report_in(store, filter, by, now, None).await
}

/// [`report`], and with `convert_to`, the same figures converted to that currency at
/// the administrators' exchange rates in force on each part's day.
pub async fn report_in(
    store: &Store,
    filter: EntryFilter,
    by: By,
    now: u64,
    convert_to: Option<crate::cost::money::Currency>,
) -> Result<Report, ReportError> {
    let (from, to) = (filter.from, filter.to);
    let as_of = to.min(now).max(from);
    let converting = convert_to.is_some();
    store
        .read(move |tx| {
            let mut parts = Vec::new();
            // A label breakdown reads the labels of the machines it names.
            let mut labels: BTreeMap<String, Option<String>> = BTreeMap::new();
            let mut key =
                |tx: &dyn ReadTx, machine: &str, project: &str, cluster: &str, at: u64| {
                    Ok::<_, StoreError>(match &by {
                        By::Project => project.to_string(),
                        By::Cluster => cluster.to_string(),
                        By::Machine => machine.to_string(),
                        By::Day => day(at),
                        By::ProjectDay => {
                            format!("{project}{}{}", crate::cost::report::PAIR, day(at))
                        }
                        By::Label(k) => {
                            if !labels.contains_key(machine) {
                                let value = tx
                                    .scheduling()
                                    .machine(machine)?
                                    .and_then(|m| m.labels.get(k).cloned());
                                labels.insert(machine.to_string(), value);
                            }
                            labels[machine]
                                .clone()
                                .unwrap_or_else(|| "(none)".to_string())
                        }
                    })
                };
            let daily = filter.machine.is_none()
                && matches!(by, By::Project | By::Cluster | By::Day | By::ProjectDay)
                && from.is_multiple_of(MS_PER_DAY)
                && to.is_multiple_of(MS_PER_DAY);
            if daily {
                let totals = tx.cost().daily_totals(&TotalsFilter {
                    from,
                    to,
                    project: filter.project.clone(),
                    cluster: filter.cluster.clone(),
                })?;
                for t in totals {
                    parts.push(Part {
                        key: key(tx, "", &t.project, &t.cluster, t.day)?,
                        at: t.day,
                        currency: t.currency,
                        amount: t.amount,
                        unpriced_ms: t.unpriced_ms,
                        entries: t.entries,
                        provisional: false,
                    });
                }
            } else {
                for e in tx.cost().entries(&filter)? {
                    parts.push(Part {
                        key: key(tx, &e.machine, &e.project, &e.cluster, e.from)?,
                        at: e.from,
                        unpriced_ms: if e.currency.is_none() {
                            e.to - e.from
                        } else {
                            0
                        },
                        currency: e.currency,
                        amount: e.amount,
                        entries: 1,
                        provisional: false,
                    });
                }
            }
            // Time not yet in the ledger.
            let machines = match &filter.machine {
                Some(id) => tx.scheduling().machine(id)?.into_iter().collect(),
                None => tx.scheduling().machines(&MachineFilter {
                    cluster: filter.cluster.clone(),
                    project: filter.project.clone(),
                    states: Vec::new(),
                })?,
            };
            let mut clusters = Clusters::new();
            // One read of every cursor, not one per machine.
            let cursors = tx.cost().accrual_cursors()?;
            for m in machines
                .iter()
                .filter(|m| filter.project.as_ref().is_none_or(|p| *p == m.project))
                .filter(|m| filter.cluster.as_ref().is_none_or(|c| *c == m.cluster))
            {
                let cursor = cursors.get(&m.id).copied();
                let pieces =
                    open_pieces_from(tx, &mut clusters, m, cursor, as_of).map_err(|e| match e {
                        CostError::Store(e) => e,
                        other => StoreError::Backend(other.to_string()),
                    })?;
                for p in pieces.iter().filter(|p| p.from >= from && p.from < to) {
                    let key = key(tx, &m.id, &m.project, &m.cluster, p.from)?;
                    parts.push(Part::of_piece(key, p, true));
                }
            }
            // A pool's idle hosts are no project's: shown apart, and only where no
            // project or machine narrows the report.
            let idle = if filter.project.is_none() && filter.machine.is_none() {
                idle::idle(tx, &mut clusters, filter.cluster.as_deref(), from, as_of).map_err(
                    |e| match e {
                        CostError::Store(e) => e,
                        other => StoreError::Backend(other.to_string()),
                    },
                )?
            } else {
                Vec::new()
            };
            let rates = if converting {
                tx.cost().exchange_rates()?
            } else {
                Vec::new()
            };
            Ok::<_, StoreError>((parts, idle, rates))
        })
        .await
        .map_err(ReportError::from)
        .and_then(|(parts, idle, rates)| {
            let conversion = match &convert_to {
                Some(target) => Some(convert(from, to, as_of, &parts, target, &rates)?),
                None => None,
            };
            let mut report = summarise(from, to, as_of, parts)?;
            report.idle = summarise(from, to, as_of, idle)?.rows;
            report.conversion = conversion;
            Ok(report)
        })
}

const MS_PER_DAY: u64 = 86_400_000;

mod idle;
#[cfg(test)]
mod tests;
