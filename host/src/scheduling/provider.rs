//! Calls to a cluster's provider plugin. A call about a cluster carries that cluster's
//! context (name, endpoint, regions, settings, credential names), and only that call may
//! reach the cluster's endpoint and read its credentials, opened from their seal for it.
//! A failure is tried again exactly when the plugin runtime classifies it as retryable,
//! after the provider's own wait when it named one; the scheduler never guesses.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use berth_plugin_runtime::provider::{
    self as wire, ClusterContext, ListRequest, Machine, MachinePage, Power, ProviderFailure, Target,
};
use berth_plugin_runtime::{CallScope, Endpoint, Grants, Plugin, Runtime};

use super::cache::TtlCache;
use super::clusters::{as_strings, open_credentials};
use super::{ClusterRecord, MachineRecord, Scheduling, SchedulingError};

/// Tries of one provider call before a retryable failure is final.
const ATTEMPTS: u32 = 5;
/// The pause after the first retryable failure; it doubles each time.
const FIRST_PAUSE: Duration = Duration::from_millis(500);
/// The longest pause between tries, whatever the provider asks.
const MAX_PAUSE: Duration = Duration::from_secs(20);
/// Machines asked for per page when listing.
pub(super) const PAGE_SIZE: u32 = 500;

/// The tag every machine berth creates carries: how it finds the machine again after a
/// crash between the provider's answer and berth's record, and how the reconciler tells
/// berth's machines from others.
pub const MACHINE_ID_TAG: &str = "berth:machine-id";
/// The tag naming the owning project.
pub const PROJECT_TAG: &str = "berth:project";
/// The tag naming the cluster.
pub const CLUSTER_TAG: &str = "berth:cluster";

/// How long a provider's description of what a cluster offers, and its prices, are
/// trusted.
const PROVIDER_ANSWER_TTL: Duration = Duration::from_secs(600);

/// Each provider cluster's description, by cluster name.
pub(super) type Descriptions = TtlCache<String, Arc<wire::Description>>;

/// On-demand prices, by (cluster, region, machine type); `None` where the provider said
/// for good that it cannot price the type (asked again once the entry expires or the
/// cluster changes), so that a create does not ask again each time.
pub(super) type Prices = TtlCache<(String, String, String), Option<wire::Price>>;

/// The caches of provider answers a new service starts with.
pub(super) fn answer_caches() -> (Descriptions, Prices) {
    (
        TtlCache::new(PROVIDER_ANSWER_TTL),
        TtlCache::new(PROVIDER_ANSWER_TTL),
    )
}

/// One cluster's provider, ready for calls about that cluster.
pub(super) struct ClusterProvider<'a> {
    runtime: &'a Runtime,
    plugin: Plugin,
    target: Target,
}

impl Scheduling {
    /// The provider of `cluster` (not a physical pool), or why it cannot be called: no
    /// such plugin loaded, or credentials that do not open.
    pub(super) async fn provider_of(
        &self,
        cluster: &ClusterRecord,
    ) -> Result<ClusterProvider<'_>, String> {
        let mut endpoints: Vec<String> = cluster.endpoint.iter().cloned().collect();
        endpoints.extend(super::clusters::service_endpoints(&cluster.settings));
        self.provider_with(&cluster.provider, cluster, &endpoints)
            .await
    }

    /// Plugin `plugin` for calls about `cluster`, reaching `endpoints` (a power
    /// controller's BMC for a pool host; the cluster's own endpoint and service endpoints
    /// otherwise; the first is the one the call's context names) with the cluster's
    /// credentials.
    pub(super) async fn provider_with(
        &self,
        plugin: &str,
        cluster: &ClusterRecord,
        endpoints: &[String],
    ) -> Result<ClusterProvider<'_>, String> {
        let (runtime, plugin) = self
            .plugins
            .provider(plugin)
            .await
            .map_err(|e| format!("cluster {}: {e}", cluster.name))?;
        let secrets = open_credentials(&self.sealer, cluster)?;
        let mut grants = Grants::default();
        for endpoint in endpoints {
            grants.endpoints.push(
                Endpoint::parse(endpoint)
                    .map_err(|why| format!("cluster {}: endpoint {why}", cluster.name))?,
            );
        }
        let mut cluster_context = context(cluster, &secrets);
        cluster_context.endpoint = endpoints.first().cloned();
        let target = Target {
            cluster: cluster_context,
            scope: Arc::new(CallScope { grants, secrets }),
        };
        Ok(ClusterProvider {
            runtime,
            plugin,
            target,
        })
    }
}

impl Scheduling {
    /// The on-demand prices of `wanted` (region, machine type) in provider cluster
    /// `cluster`: kept answers where they are fresh, the rest asked of its provider a few
    /// at a time. A type the provider cannot price now is absent (and asked again next
    /// time).
    pub(super) async fn prices(
        &self,
        cluster: &ClusterRecord,
        provider: &ClusterProvider<'_>,
        wanted: &[(String, String)],
    ) -> HashMap<(String, String), wire::Price> {
        use futures::StreamExt as _;
        let key = |(region, machine_type): &(String, String)| {
            (cluster.name.clone(), region.clone(), machine_type.clone())
        };
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        for pair in wanted {
            match self.prices.get(&key(pair), cluster.updated_at) {
                Some(Some(price)) => {
                    found.insert(pair.clone(), price);
                }
                Some(None) => {}
                None => missing.push(pair.clone()),
            }
        }
        let asked: Vec<_> = futures::stream::iter(missing)
            .map(|pair| async move {
                let price = provider.price(&pair.0, &pair.1).await;
                (pair, price)
            })
            .buffer_unordered(8)
            .collect()
            .await;
        for (pair, price) in asked {
            match price {
                Ok(price) => {
                    self.prices
                        .put(key(&pair), cluster.updated_at, Some(price.clone()));
                    found.insert(pair, price);
                }
                // A refusal that would be the same next time (no such type, no price
                // list): remembered; a throttled or transient one is asked again.
                Err(e) if !e.retryable() => {
                    self.prices.put(key(&pair), cluster.updated_at, None);
                }
                Err(_) => {}
            }
        }
        found
    }

    /// What provider cluster `cluster` offers (regions and zones, machine types,
    /// images), as its provider described it at most ten minutes ago.
    pub(super) async fn described(
        &self,
        cluster: &ClusterRecord,
    ) -> Result<Arc<wire::Description>, SchedulingError> {
        if let Some(described) = self.descriptions.get(&cluster.name, cluster.updated_at) {
            return Ok(described);
        }
        let provider = self
            .provider_of(cluster)
            .await
            .map_err(SchedulingError::Provider)?;
        let described = Arc::new(provider.describe().await.map_err(|e| {
            SchedulingError::Provider(format!(
                "cluster {}: {} could not describe what it offers: {e}",
                cluster.name,
                provider.plugin_name()
            ))
        })?);
        self.descriptions
            .put(cluster.name.clone(), cluster.updated_at, described.clone());
        Ok(described)
    }

    /// The vCPUs and memory (MiB) of machine type `machine_type` in provider cluster
    /// `cluster`, from its provider's description.
    pub(super) async fn machine_type_size(
        &self,
        cluster: &ClusterRecord,
        machine_type: &str,
    ) -> Result<(u32, u64), SchedulingError> {
        let described = self.described(cluster).await?;
        described
            .machine_types
            .iter()
            .find(|t| t.id == machine_type)
            .map(|t| (t.cpus, t.memory_mib))
            .ok_or_else(|| {
                let mut offered: Vec<&str> = described
                    .machine_types
                    .iter()
                    .map(|t| t.id.as_str())
                    .collect();
                offered.sort_unstable();
                offered.truncate(20);
                SchedulingError::Invalid(format!(
                    "cluster {} offers no machine type {machine_type:?} (some it offers: {})",
                    cluster.name,
                    offered.join(", ")
                ))
            })
    }
}

/// What a call about `cluster` tells its plugin.
fn context(cluster: &ClusterRecord, secrets: &BTreeMap<String, String>) -> ClusterContext {
    let settings = as_strings(&cluster.settings).into_iter().collect();
    ClusterContext {
        name: cluster.name.clone(),
        endpoint: cluster.endpoint.clone(),
        regions: cluster.regions.clone(),
        settings,
        credentials: secrets.keys().cloned().collect(),
    }
}

/// Where machine `machine` of `cluster` lives: where its provider placed it, else the
/// region it asked for, else the cluster's first.
pub(super) fn region_of(machine: &MachineRecord, cluster: &ClusterRecord) -> Option<String> {
    machine
        .region
        .clone()
        .or_else(|| machine.spec.region.clone())
        .or_else(|| cluster.regions.first().cloned())
}

/// The provider's create spec for `machine`: its client token is the machine's id (unique,
/// and the same on every try of this create), and it is tagged with its id, project,
/// cluster and labels.
pub(super) fn create_spec(
    machine: &MachineRecord,
    cluster: &ClusterRecord,
) -> Result<wire::MachineSpec, String> {
    let machine_type = machine.spec.machine_type.clone().ok_or_else(|| {
        format!(
            "cluster {} is a {} cluster: name a machine type",
            cluster.name, cluster.provider
        )
    })?;
    let image = machine.spec.image.clone().ok_or_else(|| {
        format!(
            "cluster {} is a {} cluster: name an image",
            cluster.name, cluster.provider
        )
    })?;
    let region = region_of(machine, cluster).ok_or_else(|| {
        format!(
            "cluster {} has no region and the machine names none",
            cluster.name
        )
    })?;
    let mut tags = vec![
        (MACHINE_ID_TAG.to_owned(), machine.id.clone()),
        (PROJECT_TAG.to_owned(), machine.project.clone()),
        (CLUSTER_TAG.to_owned(), cluster.name.clone()),
    ];
    tags.extend(machine.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(wire::MachineSpec {
        client_token: machine.id.clone(),
        name: machine.id.clone(),
        region,
        zone: machine.spec.zone.clone(),
        machine_type,
        image,
        network: machine.spec.network.clone(),
        subnet: machine.spec.subnet.clone(),
        security_groups: machine.spec.security_groups.clone(),
        disks: machine
            .spec
            .disk_gib
            .map(|size_gib| wire::Disk {
                size_gib,
                kind: None,
                device: None,
            })
            .into_iter()
            .collect(),
        key_pair: machine.spec.key_pair.clone(),
        ssh_public_key: None,
        tags,
        user_data: None,
    })
}

impl ClusterProvider<'_> {
    /// Regions, machine types and images.
    pub(super) async fn describe(&self) -> Result<wire::Description, ProviderFailure> {
        retrying("describe", || {
            self.runtime.provider_describe(&self.plugin, &self.target)
        })
        .await
    }

    /// Creates a machine; the same spec again is the same machine.
    pub(super) async fn create(
        &self,
        spec: &wire::MachineSpec,
    ) -> Result<Machine, ProviderFailure> {
        retrying("create", || {
            self.runtime
                .provider_create(&self.plugin, &self.target, spec.clone())
        })
        .await
    }

    pub(super) async fn get(&self, region: &str, id: &str) -> Result<Machine, ProviderFailure> {
        retrying("get", || {
            self.runtime
                .provider_get(&self.plugin, &self.target, region, id)
        })
        .await
    }

    /// One page of at most `page_size` machines carrying every tag of `tags`.
    pub(super) async fn list_page(
        &self,
        region: Option<&str>,
        tags: &[(String, String)],
        page_token: Option<String>,
        page_size: u32,
    ) -> Result<MachinePage, ProviderFailure> {
        let request = ListRequest {
            region: region.map(str::to_owned),
            tags: tags.to_vec(),
            page_token,
            page_size,
        };
        retrying("list", || {
            self.runtime
                .provider_list(&self.plugin, &self.target, request.clone())
        })
        .await
    }

    /// The machine berth created as `machine_id`, if the provider has it: found by its tag,
    /// so a create that reached the provider before a crash is not made twice.
    pub(super) async fn find_by_machine_id(
        &self,
        region: &str,
        machine_id: &str,
    ) -> Result<Option<Machine>, ProviderFailure> {
        let tags = [(MACHINE_ID_TAG.to_owned(), machine_id.to_owned())];
        let mut page_token = None;
        loop {
            let page = self
                .list_page(Some(region), &tags, page_token, PAGE_SIZE)
                .await?;
            // Terminated machines linger in some APIs' listings for a while: they are
            // not the machine (a create that failed and was cleaned up).
            if let Some(found) = page.machines.into_iter().find(|m| {
                m.tag(MACHINE_ID_TAG) == Some(machine_id)
                    && !matches!(
                        m.state,
                        wire::MachineState::Terminated | wire::MachineState::Terminating
                    )
            }) {
                return Ok(Some(found));
            }
            match page.next_page_token {
                Some(next) => page_token = Some(next),
                None => return Ok(None),
            }
        }
    }

    /// Every machine of every region of the cluster that carries every tag of `tags`, page
    /// by page (`page_size` at a time), up to `limit` machines.
    pub(super) async fn list_all(
        &self,
        tags: &[(String, String)],
        page_size: u32,
        limit: usize,
    ) -> Result<Vec<Machine>, ProviderFailure> {
        let mut all = Vec::new();
        let mut page_token = None;
        loop {
            let page = self.list_page(None, tags, page_token, page_size).await?;
            all.extend(page.machines);
            match page.next_page_token {
                Some(next) if all.len() < limit => page_token = Some(next),
                _ => return Ok(all),
            }
        }
    }

    /// The machines of `ids` in `region` that the provider has.
    pub(super) async fn get_many(
        &self,
        region: &str,
        ids: &[String],
    ) -> Result<Vec<Machine>, ProviderFailure> {
        retrying("get-many", || {
            self.runtime
                .provider_get_many(&self.plugin, &self.target, region, ids.to_vec())
        })
        .await
    }

    /// The on-demand price of `machine_type` in `region`.
    pub(super) async fn price(
        &self,
        region: &str,
        machine_type: &str,
    ) -> Result<wire::Price, ProviderFailure> {
        retrying("price", || {
            self.runtime.provider_price(
                &self.plugin,
                &self.target,
                region,
                machine_type,
                wire::PurchaseOption::OnDemand,
            )
        })
        .await
    }

    /// Starts or stops a machine (`start` succeeds on a running one, `stop` on a stopped
    /// one).
    pub(super) async fn switch(
        &self,
        power: Power,
        region: &str,
        id: &str,
    ) -> Result<(), ProviderFailure> {
        retrying(
            if power == Power::Start {
                "start"
            } else {
                "stop"
            },
            || {
                self.runtime
                    .provider_power(&self.plugin, &self.target, power, region, id)
            },
        )
        .await
    }

    /// Deletes a machine; done when it is already gone.
    pub(super) async fn delete(&self, region: &str, id: &str) -> Result<(), ProviderFailure> {
        retrying("delete", || {
            self.runtime
                .provider_power(&self.plugin, &self.target, Power::Delete, region, id)
        })
        .await
    }

    /// The plugin's name, for messages.
    pub(super) fn plugin_name(&self) -> &str {
        self.plugin.name()
    }
}

/// Runs `call` until it succeeds, fails for good, or has failed [`ATTEMPTS`] times.
async fn retrying<T, F, Fut>(what: &str, mut call: F) -> Result<T, ProviderFailure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ProviderFailure>>,
{
    let mut pause = FIRST_PAUSE;
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(e) if e.retryable() && attempt < ATTEMPTS => {
                let wait = e.retry_after().unwrap_or(pause).min(MAX_PAUSE);
                tracing::warn!(call = what, attempt, wait_ms = wait.as_millis() as u64, error = %e, "provider call failed; trying again");
                tokio::time::sleep(wait).await;
                pause = (pause * 2).min(MAX_PAUSE);
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduling::testing;
    use crate::storage::tables::scheduling::{MachineSpec, MachineState};
    use berth_plugin_runtime::provider::{ErrorKind, ProviderError};

    fn machine() -> MachineRecord {
        MachineRecord {
            id: "m-1".into(),
            cluster: "aws".into(),
            project: "team".into(),
            provider_id: None,
            region: None,
            zone: None,
            client_token: "tok".into(),
            spec: MachineSpec {
                machine_type: Some("t3.micro".into()),
                image: Some("ami-1".into()),
                disk_gib: Some(20),
                ..MachineSpec::default()
            },
            addresses: vec![],
            labels: [("tier".to_string(), "web".to_string())].into(),
            state: MachineState::Requested,
            reason: None,
            host_key_fingerprint: None,
            billing_started_at: None,
            created_by: "alice".into(),
            created_at: 1,
            updated_at: 1,
        }
    }

    #[test]
    fn a_create_is_tagged_with_its_machine_and_keyed_by_its_id() {
        let mut cluster = testing::cluster("aws", "aws-ec2", &["team"]);
        cluster.regions = vec!["us-east-1".into()];
        let spec = create_spec(&machine(), &cluster).unwrap();
        assert_eq!(spec.client_token, "m-1");
        assert_eq!(spec.region, "us-east-1");
        assert_eq!(spec.disks[0].size_gib, 20);
        for tag in [
            (MACHINE_ID_TAG, "m-1"),
            (PROJECT_TAG, "team"),
            (CLUSTER_TAG, "aws"),
            ("tier", "web"),
        ] {
            assert!(
                spec.tags.contains(&(tag.0.to_string(), tag.1.to_string())),
                "{tag:?}"
            );
        }
        let mut bare = machine();
        bare.spec.image = None;
        assert!(create_spec(&bare, &cluster).unwrap_err().contains("image"));
        cluster.regions.clear();
        assert!(
            create_spec(&machine(), &cluster)
                .unwrap_err()
                .contains("no region")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn only_retryable_failures_are_tried_again_and_not_forever() {
        let calls = std::sync::atomic::AtomicU32::new(0);
        let throttled: Result<(), _> = retrying("t", || async {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err::<(), _>(ProviderFailure::Provider(ProviderError::new(
                ErrorKind::Throttled,
                "slow down",
            )))
        })
        .await;
        assert!(throttled.is_err());
        assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), ATTEMPTS);
        calls.store(0, std::sync::atomic::Ordering::Relaxed);
        let capacity: Result<(), _> = retrying("c", || async {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err::<(), _>(ProviderFailure::Provider(ProviderError::new(
                ErrorKind::Capacity,
                "none left",
            )))
        })
        .await;
        assert!(capacity.is_err());
        assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 1);
    }
}
