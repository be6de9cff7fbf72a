//! The first, durable step of every create: the machine is recorded as `requested`, with
//! the client token it was asked with and within its project's quota, before any provider
//! is called. A crash after this step leaves a record the create resumes from (or the
//! reconciler finds the provider's machine by its tag); a create retried with the same
//! token is the same machine.

use std::collections::BTreeMap;

use super::lifecycle::{self, LifecycleError};
use super::quotas::{self, QuotaExceeded};
use crate::storage::store::{StoreError, WriteTx};
use crate::storage::tables::scheduling::{MachineRecord, MachineSpec, MachineState};

/// What a create asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineRequest {
    /// The project that will own it.
    pub project: String,
    /// The cluster to create it in.
    pub cluster: String,
    /// What it should be.
    pub spec: MachineSpec,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// The caller's idempotency token; one is made when the caller gives none.
    pub client_token: Option<String>,
    /// Its provider's price, asked before the request is recorded: snapshotted with it
    /// (the rate its time is charged at, until the provider's answer at creation
    /// replaces it) and checked against the project's budget. None where the cluster's
    /// price sheet prices it, or the provider could not.
    pub price: Option<crate::cost::rate::Rate>,
    /// The pool host it is to be, when the request names one (a registration).
    pub host: Option<String>,
}

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// No such cluster.
    #[error("no cluster {0}")]
    NoCluster(String),
    /// The cluster takes no new machines.
    #[error("cluster {0} is disabled")]
    Disabled(String),
    /// The project may not use the cluster.
    #[error(
        "project {project} may not use cluster {cluster}; a system administrator grants it (`berth cluster grant`)"
    )]
    NotGranted {
        /// The project.
        project: String,
        /// The cluster.
        cluster: String,
    },
    /// The quota would be exceeded.
    #[error(transparent)]
    Quota(#[from] QuotaExceeded),
    /// An enforced budget would be exceeded.
    #[error(transparent)]
    Budget(Box<super::budgets::BudgetExceeded>),
    /// The token was used for a different request (EC2's IdempotentParameterMismatch).
    #[error(
        "client token {token} was used for another request (machine {machine}); use a new token for a different machine"
    )]
    TokenReused {
        /// The token.
        token: String,
        /// The machine it made.
        machine: String,
    },
    /// A malformed request.
    #[error("{0}")]
    Invalid(String),
    /// Recording failed.
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
}

impl From<super::budgets::BudgetExceeded> for RequestError {
    fn from(e: super::budgets::BudgetExceeded) -> RequestError {
        RequestError::Budget(Box::new(e))
    }
}

impl From<StoreError> for RequestError {
    fn from(e: StoreError) -> RequestError {
        RequestError::Lifecycle(LifecycleError::Store(e))
    }
}

/// The longest client token accepted (EC2's limit).
pub const MAX_TOKEN_LEN: usize = 64;

/// A new machine id: `m-` and 32 hex digits.
pub fn new_machine_id() -> String {
    format!("m-{}", uuid::Uuid::new_v4().simple())
}

/// Records the machine `request` asks for as `requested`, in `tx`, unless its token made
/// one already: then that machine is returned as it is now, and `false` says so.
pub fn request(
    tx: &dyn WriteTx,
    request: &MachineRequest,
    actor: &str,
    now: u64,
) -> Result<(MachineRecord, bool), RequestError> {
    let token = match &request.client_token {
        Some(token) => {
            if token.is_empty()
                || token.len() > MAX_TOKEN_LEN
                || !token.chars().all(|c| c.is_ascii_graphic())
            {
                return Err(RequestError::Invalid(format!(
                    "a client token is 1 to {MAX_TOKEN_LEN} printable ASCII characters"
                )));
            }
            token.clone()
        }
        None => uuid::Uuid::new_v4().to_string(),
    };
    if let Some(existing) = tx.scheduling().machine_by_token(&request.project, &token)? {
        if existing.cluster != request.cluster
            || existing.spec != request.spec
            || existing.labels != request.labels
        {
            return Err(RequestError::TokenReused {
                token,
                machine: existing.id,
            });
        }
        return Ok((existing, false));
    }
    let cluster = tx
        .scheduling()
        .cluster(&request.cluster)?
        .ok_or_else(|| RequestError::NoCluster(request.cluster.clone()))?;
    if !cluster.enabled {
        return Err(RequestError::Disabled(cluster.name));
    }
    if !cluster.projects.contains(&request.project) {
        return Err(RequestError::NotGranted {
            project: request.project.clone(),
            cluster: cluster.name,
        });
    }
    quotas::check(tx.read(), &request.project, &request.spec)??;
    super::budgets::check(
        tx.read(),
        &request.project,
        &cluster,
        request.spec.machine_type.as_deref(),
        request.host.as_deref(),
        request.price.as_ref(),
        now,
    )
    .map_err(|e| match e {
        super::ledger::CostError::Store(e) => RequestError::from(e),
        other => RequestError::Invalid(other.to_string()),
    })??;
    let machine = MachineRecord {
        id: new_machine_id(),
        cluster: request.cluster.clone(),
        project: request.project.clone(),
        provider_id: None,
        region: None,
        zone: None,
        client_token: token,
        spec: request.spec.clone(),
        addresses: Vec::new(),
        labels: request.labels.clone(),
        state: MachineState::Requested,
        reason: None,
        host_key_fingerprint: None,
        billing_started_at: None,
        created_by: actor.to_owned(),
        created_at: now,
        updated_at: now,
    };
    lifecycle::record_new(tx, &machine, actor, None)?;
    if let Some(price) = &request.price {
        super::ledger::Ledger::snapshot(tx, &machine.id, now, Some(price))?;
    }
    Ok((machine, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::store::StoreError;
    use crate::storage::store::{Durability, Store};
    use crate::storage::tables::scheduling::QuotaRecord;
    use rust_decimal::Decimal;

    fn setup(store: &Store, quota: QuotaRecord) {
        store
            .write_blocking(Durability::Immediate, |tx| {
                tx.scheduling()
                    .put_cluster(&crate::scheduling::testing::cluster(
                        "pool",
                        "static-pool",
                        &["team"],
                    ))?;
                tx.scheduling().put_quota("team", &quota)
            })
            .unwrap();
    }

    fn ask(token: Option<&str>, cpus: u32) -> MachineRequest {
        MachineRequest {
            project: "team".into(),
            cluster: "pool".into(),
            spec: MachineSpec {
                cpus,
                memory_mib: 1024,
                ..MachineSpec::default()
            },
            labels: Default::default(),
            client_token: token.map(str::to_owned),
            price: None,
            host: None,
        }
    }

    fn make(store: &Store, r: &MachineRequest) -> Result<(MachineRecord, bool), RequestError> {
        store.write_blocking(Durability::Immediate, |tx| request(tx, r, "alice", 1_000))
    }

    /// Twenty creates at once against a quota of seven machines: exactly seven are
    /// recorded, however the transactions interleave.
    fn concurrent_requests_never_exceed_the_quota(store: &Store) {
        setup(
            store,
            QuotaRecord {
                machines: Some(7),
                ..QuotaRecord::default()
            },
        );
        let outcomes: Vec<Result<(MachineRecord, bool), RequestError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..20)
                .map(|i| {
                    let store = store.clone();
                    s.spawn(move || make(&store, &ask(Some(&format!("token-{i}")), 1)))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let made = outcomes.iter().filter(|o| o.is_ok()).count();
        let refused = outcomes
            .iter()
            .filter(|o| matches!(o, Err(RequestError::Quota(q)) if q.what == "machines" && q.limit == 7))
            .count();
        assert_eq!((made, refused), (7, 13), "{outcomes:?}");
        let usage = store.read_blocking(|tx| quotas::usage(tx, "team")).unwrap();
        assert_eq!(usage.machines, 7);
    }

    /// A token makes one machine; the same token for another request is refused; a
    /// failed machine gives its share of the quota back.
    fn tokens_are_idempotent_and_failures_free_the_quota(store: &Store) {
        setup(
            store,
            QuotaRecord {
                cpus: Some(8),
                ..QuotaRecord::default()
            },
        );
        let (first, new) = make(store, &ask(Some("deploy-42"), 8)).unwrap();
        assert!(new);
        let (again, new) = make(store, &ask(Some("deploy-42"), 8)).unwrap();
        assert!(!new);
        assert_eq!(again.id, first.id);
        assert!(matches!(
            make(store, &ask(Some("deploy-42"), 4)),
            Err(RequestError::TokenReused { .. })
        ));
        assert!(matches!(
            make(store, &ask(None, 1)),
            Err(RequestError::Quota(q)) if q.what == "vCPUs" && q.used == 8
        ));
        store
            .write_blocking(Durability::Immediate, |tx| {
                lifecycle::transition(
                    tx,
                    &first.id,
                    MachineState::Failed,
                    "berth",
                    Some("capacity"),
                    2_000,
                )
            })
            .unwrap();
        make(store, &ask(None, 8)).unwrap();
        for bad in ["", "a b", &"x".repeat(65)] {
            assert!(
                matches!(
                    make(store, &ask(Some(bad), 1)),
                    Err(RequestError::Invalid(_))
                ),
                "{bad:?}"
            );
        }
    }

    /// Only a granted, enabled cluster takes requests.
    fn clusters_must_exist_be_enabled_and_granted(store: &Store) {
        setup(store, QuotaRecord::default());
        let mut elsewhere = ask(None, 1);
        elsewhere.project = "web".into();
        assert!(matches!(
            make(store, &elsewhere),
            Err(RequestError::NotGranted { .. })
        ));
        let mut nowhere = ask(None, 1);
        nowhere.cluster = "aws".into();
        assert!(matches!(
            make(store, &nowhere),
            Err(RequestError::NoCluster(_))
        ));
        store
            .write_blocking(Durability::Immediate, |tx| {
                let mut c = tx.scheduling().cluster("pool")?.unwrap();
                c.enabled = false;
                tx.scheduling().put_cluster(&c)
            })
            .unwrap();
        assert!(matches!(
            make(store, &ask(None, 1)),
            Err(RequestError::Disabled(_))
        ));
    }

    /// Twelve creates at once against an enforced budget of 1,000 USD with 100 spent
    /// and eleven days of the month left, each machine at 1 USD an hour (264 USD to the
    /// month's end): exactly three are recorded, and the refusals give the figures.
    fn concurrent_requests_never_exceed_an_enforced_budget(store: &Store) {
        use crate::cost::money::Currency;
        use crate::cost::rate::{Basis, Rate};
        use crate::storage::tables::cost::{BilledPhase, Budget, CostEntry};
        let at = |t: &str| {
            chrono::DateTime::parse_from_rfc3339(t)
                .unwrap()
                .timestamp_millis() as u64
        };
        let now = at("2026-11-20T00:00:00Z");
        store
            .write_blocking(Durability::Immediate, |tx| {
                tx.scheduling()
                    .put_cluster(&crate::scheduling::testing::cluster(
                        "aws",
                        "aws-ec2",
                        &["team"],
                    ))?;
                tx.cost().put_budget(&Budget {
                    project: "team".into(),
                    currency: "USD".into(),
                    monthly: Decimal::from(1000),
                    thresholds: vec![50, 100],
                    enforce: true,
                    set_by: "admin".into(),
                    set_at: 0,
                })?;
                // Spent earlier this month (and last month, which does not count).
                let spent = |from: u64, amount: i64| CostEntry {
                    seq: 0,
                    machine: "m-old".into(),
                    project: "team".into(),
                    cluster: "aws".into(),
                    from,
                    to: from + 3_600_000,
                    phase: BilledPhase::Running,
                    currency: Some("USD".into()),
                    amount: Decimal::from(amount),
                    rate_from: Some(0),
                    note: None,
                };
                tx.cost().append_entries(&[
                    spent(at("2026-11-05T00:00:00Z"), 100),
                    spent(at("2026-10-30T00:00:00Z"), 5000),
                ])?;
                Ok::<_, StoreError>(())
            })
            .unwrap();
        let ask = |i: usize| MachineRequest {
            project: "team".into(),
            cluster: "aws".into(),
            spec: MachineSpec {
                cpus: 2,
                memory_mib: 4096,
                machine_type: Some("m5.large".into()),
                ..MachineSpec::default()
            },
            labels: Default::default(),
            client_token: Some(format!("budget-{i}")),
            price: Some(Rate {
                currency: Currency::parse("USD").unwrap(),
                basis: Basis::Hour,
                running: Decimal::ONE,
                stopped: None,
                source: "provider test".into(),
            }),
            host: None,
        };
        let outcomes: Vec<Result<(MachineRecord, bool), RequestError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..12)
                .map(|i| {
                    let (store, ask) = (store.clone(), ask(i));
                    s.spawn(move || {
                        store.write_blocking(Durability::Immediate, |tx| {
                            request(tx, &ask, "alice", now)
                        })
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let made = outcomes.iter().filter(|o| o.is_ok()).count();
        let refusals: Vec<String> = outcomes
            .iter()
            .filter_map(|o| match o {
                Err(RequestError::Budget(b)) => Some(b.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!((made, refusals.len()), (3, 9), "{outcomes:?}");
        assert!(
            refusals[0].contains(
                "budget of 1000.00 USD for 2026-11: 100.00 USD spent so far, 792.00 USD more"
            ) && refusals[0].contains("would cost 264.00 USD until then (1156.00 USD in all)"),
            "{}",
            refusals[0]
        );
    }

    #[test]
    fn on_redb() {
        for case in [
            concurrent_requests_never_exceed_an_enforced_budget,
            concurrent_requests_never_exceed_the_quota,
            tokens_are_idempotent_and_failures_free_the_quota,
            clusters_must_exist_be_enabled_and_granted,
        ] {
            let (store, _dir) = crate::storage::testing::redb_store();
            case(&store);
        }
    }

    #[test]
    fn on_postgres() {
        for case in [
            concurrent_requests_never_exceed_an_enforced_budget,
            concurrent_requests_never_exceed_the_quota,
            tokens_are_idempotent_and_failures_free_the_quota,
            clusters_must_exist_be_enabled_and_granted,
        ] {
            case(&crate::storage::testing::postgres_store());
        }
    }
}
