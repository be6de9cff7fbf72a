//! Placement: where `count` machines of a request go, across the clusters a project may
//! use. The policy, in order:
//!
//! 1. **Fits**: enabled clusters granted to the project and matching the constraints
//!    (cluster names, cluster labels, regions, zones); on a physical pool, a free host with
//!    the vCPUs, memory and labels asked for; on a provider's cluster, the machine type
//!    asked for, or every type with at least the vCPUs and memory asked for.
//! 2. **Cheapest**: options are ranked by hourly price. A free pool host costs nothing
//!    more than the hardware already paid for, so pools come first (until the cost ledger
//!    gives them a price sheet); a cloud type without a price comes after every priced
//!    one, and is left out when a maximum price is set. Ties go to fewer vCPUs, then less
//!    memory, then names, so a plan is the same each time it is asked.
//! 3. **Spread**: with `spread: zones` (or `clusters`), machines are dealt round-robin over
//!    the zones (clusters) that offer the cheapest option, before a dearer one is used.
//!
//! A plan is only read: `dry_run` answers it; `place` records one machine per entry, each
//! through the ordinary create (quota, idempotency, jobs).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::machines::{MachineView, NewMachine};
use super::{ClusterRecord, MachineSpec, Scheduling, SchedulingError, SchedulingResult, pool};

/// The most machines one placement request creates.
pub const MAX_COUNT: u32 = 100;

/// `POST /api/v1/machines/place` (and `/plan`, the dry run).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlacementRequest {
    /// The project that will own them.
    pub project: String,
    /// How many (default 1, at most 100).
    #[serde(default = "one")]
    pub count: u32,
    /// A machine type (provider clusters); or give `cpus` and `memory_mib`.
    #[serde(default)]
    pub machine_type: Option<String>,
    /// At least this many vCPUs.
    #[serde(default)]
    pub cpus: u32,
    /// At least this much memory, MiB.
    #[serde(default)]
    pub memory_mib: u64,
    /// The image (provider clusters need one).
    #[serde(default)]
    pub image: Option<String>,
    /// Labels the machines get (a pool host must carry them).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Where they may go.
    #[serde(default)]
    pub constraints: Constraints,
    /// An idempotency token: machine `i` is created with `<token>-<i>`.
    #[serde(default)]
    pub client_token: Option<String>,
}

fn one() -> u32 {
    1
}

/// Where machines may go.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Constraints {
    /// Only these clusters.
    pub clusters: Vec<String>,
    /// Only clusters carrying these labels.
    pub cluster_labels: BTreeMap<String, String>,
    /// Only these regions.
    pub regions: Vec<String>,
    /// Only these zones.
    pub zones: Vec<String>,
    /// At most this price per hour per machine, in millionths of `currency`.
    pub max_micros_per_hour: Option<u64>,
    /// The currency of the maximum (default USD); options priced in another are left out.
    pub currency: Option<String>,
    /// Deal machines over zones or clusters.
    pub spread: Spread,
}

/// How machines of one request are spread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Spread {
    /// All on the cheapest option while it lasts.
    #[default]
    None,
    /// Round-robin over the zones offering the cheapest option.
    Zones,
    /// Round-robin over the clusters offering the cheapest option.
    Clusters,
}

/// One machine of a plan.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct Placement {
    /// The cluster.
    pub cluster: String,
    /// The region, where the cluster has them.
    pub region: Option<String>,
    /// The zone.
    pub zone: Option<String>,
    /// The machine type (provider clusters).
    pub machine_type: Option<String>,
    /// The pool host it would take (physical pools).
    pub host: Option<String>,
    /// Its vCPUs.
    pub cpus: u32,
    /// Its memory, MiB.
    pub memory_mib: u64,
    /// Its price per hour in millionths of `currency`, when known (a pool host: 0).
    pub micros_per_hour: Option<u64>,
    /// The price's currency.
    pub currency: Option<String>,
}

/// A plan: where each machine goes, and what was left out and why.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Plan {
    /// One entry per machine.
    pub placements: Vec<Placement>,
    /// The price per hour of them all, by currency (millionths).
    pub micros_per_hour: BTreeMap<String, u64>,
    /// Clusters left out, with the reason.
    pub excluded: BTreeMap<String, String>,
}

/// What `place` made.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Placed {
    /// The plan it followed.
    pub plan: Plan,
    /// The machines, in plan order.
    pub machines: Vec<MachineView>,
}

/// One option: a kind of machine at one place, and how many of it there are (pool hosts
/// are counted; a cloud type is as many as asked).
#[derive(Debug, Clone)]
struct Candidate {
    placement: Placement,
    /// Ranking key: pools (0) before priced cloud types (1) before unpriced (2).
    rank: (u8, u64, u32, u64),
    available: u32,
}

impl Scheduling {
    /// The plan for `request`, creating nothing.
    pub async fn plan(&self, request: &PlacementRequest) -> SchedulingResult<Plan> {
        if request.count == 0 || request.count > MAX_COUNT {
            return Err(SchedulingError::Invalid(format!(
                "count must be 1 to {MAX_COUNT}"
            )));
        }
        if request.machine_type.is_none() && (request.cpus == 0 || request.memory_mib == 0) {
            return Err(SchedulingError::Invalid(
                "give a machine type, or the least vCPUs and memory (cpus, memory_mib)".into(),
            ));
        }
        let c = &request.constraints;
        let currency = c.currency.clone().unwrap_or_else(|| "USD".into());
        let clusters: Vec<ClusterRecord> = self.store.read(|tx| tx.scheduling().clusters()).await?;
        let mut excluded = BTreeMap::new();
        let mut candidates = Vec::new();
        for cluster in clusters {
            let why = if !cluster.enabled {
                Some("disabled".to_string())
            } else if !cluster.projects.contains(&request.project) {
                Some(format!("not granted to project {}", request.project))
            } else if !c.clusters.is_empty() && !c.clusters.contains(&cluster.name) {
                Some("not among the clusters asked for".into())
            } else if !c
                .cluster_labels
                .iter()
                .all(|(k, v)| cluster.labels.get(k) == Some(v))
            {
                Some("lacks the cluster labels asked for".into())
            } else {
                None
            };
            if let Some(why) = why {
                excluded.insert(cluster.name.clone(), why);
                continue;
            }
            let found = if cluster.provider == pool::PROVIDER {
                self.pool_candidates(&cluster, request).await
            } else {
                self.provider_candidates(&cluster, request, &currency).await
            };
            match found {
                Ok(found) if found.is_empty() => {
                    excluded.insert(cluster.name.clone(), "nothing there fits".into());
                }
                Ok(found) => candidates.extend(found),
                Err(why) => {
                    excluded.insert(cluster.name.clone(), why);
                }
            }
        }
        let placements = deal(candidates, request.count as usize, c.spread);
        if placements.len() < request.count as usize {
            return Err(SchedulingError::Conflict(format!(
                "only {} of {} machines fit anywhere this project may place them; left out: {}",
                placements.len(),
                request.count,
                excluded
                    .iter()
                    .map(|(k, v)| format!("{k} ({v})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let mut total: BTreeMap<String, u64> = BTreeMap::new();
        for p in &placements {
            if let (Some(micros), Some(currency)) = (p.micros_per_hour, &p.currency) {
                *total.entry(currency.clone()).or_default() += micros;
            }
        }
        Ok(Plan {
            placements,
            micros_per_hour: total,
            excluded,
        })
    }

    /// Plans `request` and creates its machines, each through the ordinary create.
    pub async fn place(&self, request: &PlacementRequest, actor: &str) -> SchedulingResult<Placed> {
        let plan = self.plan(request).await?;
        let mut machines = Vec::with_capacity(plan.placements.len());
        for (i, p) in plan.placements.iter().enumerate() {
            let new = NewMachine {
                project: request.project.clone(),
                cluster: p.cluster.clone(),
                spec: MachineSpec {
                    machine_type: p.machine_type.clone(),
                    cpus: if p.machine_type.is_some() {
                        0
                    } else {
                        request.cpus
                    },
                    memory_mib: if p.machine_type.is_some() {
                        0
                    } else {
                        request.memory_mib
                    },
                    image: request.image.clone(),
                    region: p.region.clone(),
                    zone: p.zone.clone(),
                    ..MachineSpec::default()
                },
                labels: request.labels.clone(),
                client_token: request.client_token.as_ref().map(|t| format!("{t}-{i}")),
            };
            machines.push(self.create_machine(new, actor).await?.0);
        }
        Ok(Placed { plan, machines })
    }

    /// A physical pool's free hosts that fit, one candidate each.
    async fn pool_candidates(
        &self,
        cluster: &ClusterRecord,
        request: &PlacementRequest,
    ) -> Result<Vec<Candidate>, String> {
        if request.machine_type.is_some() {
            return Err("a physical pool has no machine types".into());
        }
        if !request.constraints.regions.is_empty() {
            return Err("a physical pool has no regions".into());
        }
        let name = cluster.name.clone();
        let hosts = self
            .store
            .read(move |tx| tx.scheduling().pool_hosts(&name))
            .await
            .map_err(|e| e.to_string())?;
        let c = &request.constraints;
        Ok(hosts
            .into_iter()
            .filter(|h| {
                h.machine.is_none()
                    && h.cpus >= request.cpus
                    && h.memory_mib >= request.memory_mib
                    && request
                        .labels
                        .iter()
                        .all(|(k, v)| h.labels.get(k) == Some(v))
                    && (c.zones.is_empty() || h.zone.as_ref().is_some_and(|z| c.zones.contains(z)))
            })
            .map(|h| Candidate {
                rank: (0, 0, h.cpus, h.memory_mib),
                available: 1,
                placement: Placement {
                    cluster: cluster.name.clone(),
                    region: None,
                    zone: h.zone.clone(),
                    machine_type: None,
                    host: Some(h.name.clone()),
                    cpus: h.cpus,
                    memory_mib: h.memory_mib,
                    micros_per_hour: Some(0),
                    currency: None,
                },
            })
            .collect())
    }

    /// A provider cluster's fitting types in each allowed region and zone, priced.
    async fn provider_candidates(
        &self,
        cluster: &ClusterRecord,
        request: &PlacementRequest,
        currency: &str,
    ) -> Result<Vec<Candidate>, String> {
        if request.image.is_none() {
            return Err("a provider's cluster needs an image".into());
        }
        let described = self.described(cluster).await.map_err(|e| e.to_string())?;
        let provider = self.provider_of(cluster).await?;
        let c = &request.constraints;
        let types: Vec<_> = described
            .machine_types
            .iter()
            .filter(|t| match &request.machine_type {
                Some(wanted) => &t.id == wanted,
                None => t.cpus >= request.cpus && t.memory_mib >= request.memory_mib,
            })
            .collect();
        let mut found = Vec::new();
        let regions: Vec<_> = described
            .regions
            .iter()
            .filter(|r| {
                (c.regions.is_empty() || c.regions.contains(&r.id))
                    && (cluster.regions.is_empty() || cluster.regions.contains(&r.id))
            })
            .collect();
        let wanted: Vec<(String, String)> = regions
            .iter()
            .flat_map(|region| {
                types
                    .iter()
                    .filter(|t| t.regions.is_empty() || t.regions.contains(&region.id))
                    .map(|t| (region.id.clone(), t.id.clone()))
            })
            .collect();
        // A type the provider cannot price is still an option, ranked last.
        let prices = self.prices(cluster, &provider, &wanted).await;
        for region in regions {
            let zones: Vec<Option<String>> = if region.zones.is_empty() {
                vec![None]
            } else {
                region
                    .zones
                    .iter()
                    .filter(|z| c.zones.is_empty() || c.zones.contains(&z.id))
                    .map(|z| Some(z.id.clone()))
                    .collect()
            };
            for t in types
                .iter()
                .filter(|t| t.regions.is_empty() || t.regions.contains(&region.id))
            {
                let key = (region.id.clone(), t.id.clone());
                let price = prices.get(&key);
                let priced = price.filter(|p| p.currency == currency);
                if let Some(max) = c.max_micros_per_hour
                    && priced.is_none_or(|p| p.micros_per_hour > max)
                {
                    continue;
                }
                for zone in &zones {
                    found.push(Candidate {
                        rank: match priced {
                            Some(p) => (1, p.micros_per_hour, t.cpus, t.memory_mib),
                            None => (2, 0, t.cpus, t.memory_mib),
                        },
                        available: u32::MAX,
                        placement: Placement {
                            cluster: cluster.name.clone(),
                            region: Some(region.id.clone()),
                            zone: zone.clone(),
                            machine_type: Some(t.id.clone()),
                            host: None,
                            cpus: t.cpus,
                            memory_mib: t.memory_mib,
                            micros_per_hour: price.map(|p| p.micros_per_hour),
                            currency: price.map(|p| p.currency.clone()),
                        },
                    });
                }
            }
        }
        Ok(found)
    }
}

/// Deals `count` machines over `candidates`: cheapest first; within the cheapest rank,
/// round-robin over zones or clusters when spreading.
fn deal(mut candidates: Vec<Candidate>, count: usize, spread: Spread) -> Vec<Placement> {
    candidates.sort_by(|a, b| {
        (
            a.rank,
            &a.placement.cluster,
            &a.placement.zone,
            &a.placement.host,
        )
            .cmp(&(
                b.rank,
                &b.placement.cluster,
                &b.placement.zone,
                &b.placement.host,
            ))
    });
    let mut placements = Vec::with_capacity(count);
    let mut used: HashMap<String, u32> = HashMap::new();
    let mut i = 0;
    while placements.len() < count && i < candidates.len() {
        // The candidates of the cheapest rank left: one price level of one kind.
        let rank = candidates[i].rank;
        let level: Vec<usize> = (i..candidates.len())
            .take_while(|j| candidates[*j].rank == rank)
            .collect();
        i += level.len();
        let spread_key = |c: &Candidate| match spread {
            Spread::None => String::new(),
            Spread::Zones => format!(
                "{}/{}",
                c.placement.cluster,
                c.placement.zone.as_deref().unwrap_or("")
            ),
            Spread::Clusters => c.placement.cluster.clone(),
        };
        // Group the level by what is spread over, keeping order.
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for j in level {
            let key = spread_key(&candidates[j]);
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push(j),
                None => groups.push((key, vec![j])),
            }
        }
        loop {
            let mut dealt = false;
            for (_, members) in &groups {
                if placements.len() >= count {
                    break;
                }
                // The first member of the group with something left.
                let Some(&j) = members.iter().find(|j| {
                    let key = identity(&candidates[**j].placement);
                    used.get(&key).copied().unwrap_or(0) < candidates[**j].available
                }) else {
                    continue;
                };
                *used.entry(identity(&candidates[j].placement)).or_default() += 1;
                placements.push(candidates[j].placement.clone());
                dealt = true;
                if spread == Spread::None {
                    break;
                }
            }
            if !dealt || placements.len() >= count {
                break;
            }
        }
    }
    placements
}

/// What one candidate is, for counting how much of it is used.
fn identity(p: &Placement) -> String {
    format!(
        "{}/{}/{}/{}/{}",
        p.cluster,
        p.region.as_deref().unwrap_or(""),
        p.zone.as_deref().unwrap_or(""),
        p.machine_type.as_deref().unwrap_or(""),
        p.host.as_deref().unwrap_or("")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cloud(cluster: &str, zone: &str, machine_type: &str, micros: Option<u64>) -> Candidate {
        Candidate {
            rank: match micros {
                Some(m) => (1, m, 2, 1024),
                None => (2, 0, 2, 1024),
            },
            available: u32::MAX,
            placement: Placement {
                cluster: cluster.into(),
                region: Some("r".into()),
                zone: Some(zone.into()),
                machine_type: Some(machine_type.into()),
                host: None,
                cpus: 2,
                memory_mib: 1024,
                micros_per_hour: micros,
                currency: micros.map(|_| "USD".into()),
            },
        }
    }

    fn host(cluster: &str, name: &str) -> Candidate {
        Candidate {
            rank: (0, 0, 4, 8192),
            available: 1,
            placement: Placement {
                cluster: cluster.into(),
                region: None,
                zone: None,
                machine_type: None,
                host: Some(name.into()),
                cpus: 4,
                memory_mib: 8192,
                micros_per_hour: Some(0),
                currency: None,
            },
        }
    }

    #[test]
    fn pool_hosts_first_then_the_cheapest_type_then_dearer_ones() {
        let plan = deal(
            vec![
                cloud("aws", "a", "m5.large", Some(96_000)),
                cloud("aws", "a", "t3.micro", Some(10_400)),
                host("rack", "h1"),
                cloud("aws", "a", "t3.small", None),
            ],
            3,
            Spread::None,
        );
        let picked: Vec<(Option<&str>, Option<&str>)> = plan
            .iter()
            .map(|p| (p.host.as_deref(), p.machine_type.as_deref()))
            .collect();
        assert_eq!(
            picked,
            [
                (Some("h1"), None),
                (None, Some("t3.micro")),
                (None, Some("t3.micro"))
            ]
        );
    }

    #[test]
    fn spreading_deals_the_cheapest_option_round_robin_over_zones() {
        let plan = deal(
            vec![
                cloud("aws", "a", "t3.micro", Some(10_400)),
                cloud("aws", "b", "t3.micro", Some(10_400)),
                cloud("aws", "c", "t3.micro", Some(10_400)),
                cloud("aws", "a", "m5.large", Some(96_000)),
            ],
            5,
            Spread::Zones,
        );
        let zones: Vec<&str> = plan.iter().map(|p| p.zone.as_deref().unwrap()).collect();
        assert_eq!(zones, ["a", "b", "c", "a", "b"]);
        assert!(
            plan.iter()
                .all(|p| p.machine_type.as_deref() == Some("t3.micro"))
        );
    }

    #[test]
    fn a_pool_runs_out_and_the_rest_go_to_the_cloud() {
        let plan = deal(
            vec![
                host("rack", "h1"),
                host("rack", "h2"),
                cloud("aws", "a", "t3.micro", Some(10_400)),
            ],
            4,
            Spread::Clusters,
        );
        let hosts: Vec<Option<&str>> = plan.iter().map(|p| p.host.as_deref()).collect();
        assert_eq!(hosts, [Some("h1"), Some("h2"), None, None]);
    }
}
