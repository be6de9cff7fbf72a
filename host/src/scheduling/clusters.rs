//! The cluster service: where machines come from. System administrators add, change and
//! remove clusters, grant them to projects, and set projects' quotas; a cluster's
//! credentials are sealed at rest and never shown again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::lifecycle::holds_resources;
use super::pool::{self, HostSpec};
use super::quotas::{self, Usage};
use super::{Scheduling, SchedulingError, SchedulingResult};
use crate::storage::store::now_millis;
use crate::storage::tables::scheduling::{
    ClusterRecord, MachineFilter, MachineState, PoolHostRecord, Probe, QuotaRecord,
};

/// `POST /api/v1/clusters`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCluster {
    /// Lowercase letters and digits, separated by `.`, `_` or `-`.
    pub name: String,
    /// The provider plugin that serves it (a loaded `cloud-provider` plugin), or
    /// `static-pool` for physical hosts.
    pub provider: String,
    /// The regions it may place machines in.
    #[serde(default)]
    pub regions: Vec<String>,
    /// The provider's API endpoint, when not its default.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The provider's settings (a JSON object).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
    /// The credentials (a JSON object, the provider's to read); stored sealed.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub credentials: Option<serde_json::Value>,
    /// Labels placement can select on.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The projects allowed to use it.
    #[serde(default)]
    pub projects: Vec<String>,
    /// How berth tells its machines answer (default: SSH on port 22).
    #[serde(default)]
    pub probe: Probe,
    /// Whether it takes new machines (default yes).
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// A field that is present, even as `null` (`Some(None)`), apart from an absent one.
fn present<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// `PATCH /api/v1/clusters/{name}`: what to change; absent fields stay.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterChange {
    /// New regions.
    pub regions: Option<Vec<String>>,
    /// A new endpoint (`null` clears it).
    #[serde(default, deserialize_with = "present")]
    pub endpoint: Option<Option<String>>,
    /// New settings.
    #[schema(value_type = Option<Object>)]
    pub settings: Option<serde_json::Value>,
    /// New credentials (`null` removes them).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub credentials: Option<Option<serde_json::Value>>,
    /// New labels.
    pub labels: Option<BTreeMap<String, String>>,
    /// A new probe.
    pub probe: Option<Probe>,
    /// Enable or disable it.
    pub enabled: Option<bool>,
}

/// A cluster as the API shows it: never its credentials.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClusterView {
    /// Its name.
    pub name: String,
    /// The provider plugin, or `static-pool`.
    pub provider: String,
    /// Its regions.
    pub regions: Vec<String>,
    /// Its endpoint.
    pub endpoint: Option<String>,
    /// The provider's settings.
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
    /// Whether credentials are stored (sealed).
    pub has_credentials: bool,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// The projects allowed to use it.
    pub projects: Vec<String>,
    /// How berth tells its machines answer.
    pub probe: Probe,
    /// Whether it takes new machines.
    pub enabled: bool,
    /// Who added it.
    pub created_by: String,
    /// When (ms since the epoch).
    pub created_at: u64,
    /// When it last changed.
    pub updated_at: u64,
}

impl From<ClusterRecord> for ClusterView {
    fn from(r: ClusterRecord) -> ClusterView {
        ClusterView {
            name: r.name,
            provider: r.provider,
            regions: r.regions,
            endpoint: r.endpoint,
            settings: r.settings,
            has_credentials: r.sealed_credentials.is_some(),
            labels: r.labels,
            projects: r.projects,
            probe: r.probe,
            enabled: r.enabled,
            created_by: r.created_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// A project's quota and what its machines hold.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QuotaView {
    /// The project.
    pub project: String,
    /// Its limits (absent: none).
    pub quota: QuotaRecord,
    /// What its machines hold now.
    pub usage: Usage,
}

/// Where the sealed credentials of cluster `name` are bound: sealed for one cluster, they
/// open for no other.
fn credentials_context(name: &str) -> String {
    format!("cluster/{name}/credentials")
}

fn check_name(name: &str) -> SchedulingResult<()> {
    if name.len() <= 63 && crate::names::component_is_valid(name) {
        Ok(())
    } else {
        Err(SchedulingError::Invalid(format!(
            "invalid cluster name {:?}: lowercase letters and digits, separated by '.', '_', '__' or '-', at most 63 characters",
            name.chars().take(80).collect::<String>()
        )))
    }
}

fn check_object(what: &str, value: &serde_json::Value) -> SchedulingResult<()> {
    if value.is_object() || value.is_null() {
        Ok(())
    } else {
        Err(SchedulingError::Invalid(format!(
            "{what} must be a JSON object"
        )))
    }
}

/// A cluster's endpoint is what its provider plugin may reach during calls about it, so
/// it must be a grantable endpoint: http or https, a host, an optional port and path.
fn check_endpoint(endpoint: &str) -> SchedulingResult<()> {
    berth_plugin_runtime::Endpoint::parse(endpoint)
        .map(|_| ())
        .map_err(|why| SchedulingError::Invalid(format!("endpoint: {why}")))
}

/// The cluster setting listing further endpoints its provider plugin may reach during
/// calls about it (comma-separated), beside its endpoint: where a provider learns its
/// services' addresses from the endpoint (OpenStack's catalog), each must be granted by
/// the administrator, never taken from what a remote service says.
pub const SERVICE_ENDPOINTS: &str = "service-endpoints";

/// The endpoints `settings` grant beside the cluster's endpoint.
pub(super) fn service_endpoints(settings: &serde_json::Value) -> Vec<String> {
    settings
        .get(SERVICE_ENDPOINTS)
        .and_then(|v| v.as_str())
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Every service endpoint of `settings` must be grantable, as the endpoint itself.
fn check_service_endpoints(settings: &serde_json::Value) -> SchedulingResult<()> {
    if settings
        .get(SERVICE_ENDPOINTS)
        .is_some_and(|v| !v.is_string())
    {
        return Err(SchedulingError::Invalid(format!(
            "settings.{SERVICE_ENDPOINTS} must be a comma-separated string of URLs"
        )));
    }
    for endpoint in service_endpoints(settings) {
        berth_plugin_runtime::Endpoint::parse(&endpoint).map_err(|why| {
            SchedulingError::Invalid(format!("settings.{SERVICE_ENDPOINTS}: {endpoint}: {why}"))
        })?;
    }
    Ok(())
}

/// The credentials of `cluster`, opened: each value as a string (any other JSON value as
/// its text). They are handed to its provider plugin for one call at a time.
pub(super) fn open_credentials(
    sealer: &crate::storage::sealing::Sealer,
    cluster: &ClusterRecord,
) -> Result<BTreeMap<String, String>, String> {
    let Some(sealed) = &cluster.sealed_credentials else {
        return Ok(BTreeMap::new());
    };
    let plain = sealer
        .unseal(&credentials_context(&cluster.name), sealed)
        .ok_or_else(|| {
            format!(
                "the credentials of cluster {} do not open with this node's sealing key",
                cluster.name
            )
        })?;
    let value: serde_json::Value = serde_json::from_slice(&plain).map_err(|e| {
        format!(
            "the credentials of cluster {} are damaged: {e}",
            cluster.name
        )
    })?;
    Ok(as_strings(&value))
}

/// A JSON object's values as strings: a string as it is, any other value as JSON text
/// (how credentials and settings reach a plugin).
pub(super) fn as_strings(value: &serde_json::Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| {
                    let text = match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), text)
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Scheduling {
    /// Whether `provider` can serve a cluster: `static-pool`, or a loaded plugin of the
    /// `cloud-provider` world.
    async fn check_provider(&self, provider: &str) -> SchedulingResult<()> {
        if provider == pool::PROVIDER {
            return Ok(());
        }
        match self.plugins.get(provider).await {
            Ok(status) if status.record.kind == berth_plugin_runtime::Kind::CloudProvider => Ok(()),
            Ok(status) => Err(SchedulingError::Invalid(format!(
                "plugin {provider} is a {:?} plugin, not a cloud provider",
                status.record.kind
            ))),
            Err(_) => Err(SchedulingError::Invalid(format!(
                "no provider {provider}: load a cloud-provider plugin of that name (`berth plugin load`), or use static-pool"
            ))),
        }
    }

    /// Adds a cluster.
    pub async fn add_cluster(&self, new: NewCluster, actor: &str) -> SchedulingResult<ClusterView> {
        check_name(&new.name)?;
        check_object("settings", &new.settings)?;
        check_service_endpoints(&new.settings)?;
        if let Some(credentials) = &new.credentials {
            check_object("credentials", credentials)?;
        }
        if let Some(endpoint) = &new.endpoint {
            check_endpoint(endpoint)?;
        }
        self.check_provider(&new.provider).await?;
        let now = now_millis();
        let record = ClusterRecord {
            sealed_credentials: new.credentials.as_ref().map(|c| {
                self.sealer
                    .seal(&credentials_context(&new.name), c.to_string().as_bytes())
            }),
            name: new.name,
            provider: new.provider,
            regions: new.regions,
            endpoint: new.endpoint,
            settings: new.settings,
            labels: new.labels,
            projects: Vec::new(),
            probe: new.probe,
            enabled: new.enabled,
            created_by: actor.to_owned(),
            created_at: now,
            updated_at: now,
        };
        let projects = new.projects;
        self.store
            .write(move |tx| -> SchedulingResult<ClusterView> {
                if tx.scheduling().cluster(&record.name)?.is_some() {
                    return Err(SchedulingError::Conflict(format!(
                        "cluster {} exists already",
                        record.name
                    )));
                }
                let mut record = record.clone();
                for project in &projects {
                    project_exists(tx.read(), project)?;
                    if !record.projects.contains(project) {
                        record.projects.push(project.clone());
                    }
                }
                tx.scheduling().put_cluster(&record)?;
                Ok(record.into())
            })
            .await
    }

    /// Every cluster.
    pub async fn clusters(&self) -> SchedulingResult<Vec<ClusterView>> {
        Ok(self
            .store
            .read(|tx| tx.scheduling().clusters())
            .await?
            .into_iter()
            .map(ClusterView::from)
            .collect())
    }

    /// Cluster `name`.
    pub async fn cluster(&self, name: &str) -> SchedulingResult<ClusterView> {
        let name = name.to_owned();
        self.store
            .read(move |tx| -> SchedulingResult<ClusterView> {
                Ok(tx
                    .scheduling()
                    .cluster(&name)?
                    .ok_or_else(|| SchedulingError::NotFound(format!("no cluster {name}")))?
                    .into())
            })
            .await
    }

    /// Changes cluster `name`.
    pub async fn update_cluster(
        &self,
        name: &str,
        change: ClusterChange,
    ) -> SchedulingResult<ClusterView> {
        if let Some(settings) = &change.settings {
            check_object("settings", settings)?;
            check_service_endpoints(settings)?;
        }
        if let Some(Some(credentials)) = &change.credentials {
            check_object("credentials", credentials)?;
        }
        if let Some(Some(endpoint)) = &change.endpoint {
            check_endpoint(endpoint)?;
        }
        let sealed = change.credentials.as_ref().map(|c| {
            c.as_ref().map(|c| {
                self.sealer
                    .seal(&credentials_context(name), c.to_string().as_bytes())
            })
        });
        let name = name.to_owned();
        self.store
            .write(move |tx| -> SchedulingResult<ClusterView> {
                let mut record = tx
                    .scheduling()
                    .cluster(&name)?
                    .ok_or_else(|| SchedulingError::NotFound(format!("no cluster {name}")))?;
                let change = change.clone();
                if let Some(regions) = change.regions {
                    record.regions = regions;
                }
                if let Some(endpoint) = change.endpoint {
                    record.endpoint = endpoint;
                }
                if let Some(settings) = change.settings {
                    record.settings = settings;
                }
                if let Some(sealed) = &sealed {
                    record.sealed_credentials = sealed.clone();
                }
                if let Some(labels) = change.labels {
                    record.labels = labels;
                }
                if let Some(probe) = change.probe {
                    record.probe = probe;
                }
                if let Some(enabled) = change.enabled {
                    record.enabled = enabled;
                }
                record.updated_at = now_millis();
                tx.scheduling().put_cluster(&record)?;
                Ok(record.into())
            })
            .await
    }

    /// Removes cluster `name`; refused while machines there may hold resources, whose
    /// records (and costs) would lose their cluster.
    pub async fn remove_cluster(&self, name: &str) -> SchedulingResult<()> {
        let name = name.to_owned();
        self.store
            .write(move |tx| -> SchedulingResult<()> {
                if tx.scheduling().cluster(&name)?.is_none() {
                    return Err(SchedulingError::NotFound(format!("no cluster {name}")));
                }
                let living: Vec<MachineState> = MachineState::ALL
                    .into_iter()
                    .filter(|s| holds_resources(*s))
                    .collect();
                let machines = tx.scheduling().machines(&MachineFilter {
                    cluster: Some(name.clone()),
                    states: living,
                    ..MachineFilter::default()
                })?;
                if !machines.is_empty() {
                    return Err(SchedulingError::Conflict(format!(
                        "cluster {name} still has {} machines that are not retired; retire them first",
                        machines.len()
                    )));
                }
                for host in tx.scheduling().pool_hosts(&name)? {
                    tx.scheduling().remove_pool_host(&name, &host.name)?;
                }
                tx.scheduling().remove_cluster(&name)?;
                Ok(())
            })
            .await
    }

    /// Lets `project` use cluster `name` (`grant`), or stops it (`!grant`; its machines
    /// stay).
    pub async fn grant(
        &self,
        name: &str,
        project: &str,
        grant: bool,
    ) -> SchedulingResult<ClusterView> {
        let (name, project) = (name.to_owned(), project.to_owned());
        self.store
            .write(move |tx| -> SchedulingResult<ClusterView> {
                let mut record = tx
                    .scheduling()
                    .cluster(&name)?
                    .ok_or_else(|| SchedulingError::NotFound(format!("no cluster {name}")))?;
                if grant {
                    project_exists(tx.read(), &project)?;
                    if !record.projects.contains(&project) {
                        record.projects.push(project.clone());
                        record.projects.sort();
                    }
                } else if !record.projects.contains(&project) {
                    return Err(SchedulingError::NotFound(format!(
                        "project {project} has no grant on cluster {name}"
                    )));
                } else {
                    record.projects.retain(|p| p != &project);
                }
                record.updated_at = now_millis();
                tx.scheduling().put_cluster(&record)?;
                Ok(record.into())
            })
            .await
    }

    /// Sets `project`'s quota (absent limits: none).
    pub async fn set_quota(
        &self,
        project: &str,
        quota: QuotaRecord,
    ) -> SchedulingResult<QuotaView> {
        let project = project.to_owned();
        self.store
            .write(move |tx| -> SchedulingResult<QuotaView> {
                project_exists(tx.read(), &project)?;
                tx.scheduling().put_quota(&project, &quota)?;
                Ok(QuotaView {
                    project: project.clone(),
                    quota: quota.clone(),
                    usage: quotas::usage(tx.read(), &project)?,
                })
            })
            .await
    }

    /// `project`'s quota and usage.
    pub async fn quota(&self, project: &str) -> SchedulingResult<QuotaView> {
        let project = project.to_owned();
        self.store
            .read(move |tx| -> SchedulingResult<QuotaView> {
                project_exists(tx, &project)?;
                Ok(QuotaView {
                    quota: tx.scheduling().quota(&project)?.unwrap_or_default(),
                    usage: quotas::usage(tx, &project)?,
                    project,
                })
            })
            .await
    }

    /// Adds or updates hosts of physical pool `cluster`; returns the pool's hosts.
    pub async fn import_hosts(
        &self,
        cluster: &str,
        hosts: Vec<HostSpec>,
    ) -> SchedulingResult<Vec<PoolHostRecord>> {
        let cluster = cluster.to_owned();
        self.store
            .write(move |tx| -> SchedulingResult<Vec<PoolHostRecord>> {
                pool::import(tx, &cluster, &hosts)?;
                Ok(tx.scheduling().pool_hosts(&cluster)?)
            })
            .await
    }

    /// The hosts of physical pool `cluster`.
    pub async fn pool_hosts(&self, cluster: &str) -> SchedulingResult<Vec<PoolHostRecord>> {
        let cluster = cluster.to_owned();
        self.store
            .read(move |tx| -> SchedulingResult<Vec<PoolHostRecord>> {
                match tx.scheduling().cluster(&cluster)? {
                    Some(c) if c.provider == pool::PROVIDER => {
                        Ok(tx.scheduling().pool_hosts(&cluster)?)
                    }
                    Some(_) => Err(SchedulingError::Invalid(format!(
                        "cluster {cluster} is not a physical pool"
                    ))),
                    None => Err(SchedulingError::NotFound(format!("no cluster {cluster}"))),
                }
            })
            .await
    }
}

/// Refuses a project that does not exist (auth owns projects).
pub(super) fn project_exists(
    tx: &dyn crate::storage::store::ReadTx,
    project: &str,
) -> SchedulingResult<()> {
    match crate::auth::AccessControl::project_in(tx, project)? {
        Some(_) => Ok(()),
        None => Err(SchedulingError::NotFound(format!("no project {project}"))),
    }
}
