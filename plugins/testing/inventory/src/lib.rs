//! A cloud provider over a small JSON inventory API (the end-to-end tests serve one):
//! `GET/POST {endpoint}/machines`, `GET/DELETE {endpoint}/machines/{id}`,
//! `POST {endpoint}/machines/{id}/start|stop`, with `Authorization: Bearer <secret>`.
//!
//! The API is the cluster's endpoint, or the plugin's `endpoint` configuration; the token
//! the cluster's credential `token`, or the plugin's secret named by `token-secret`
//! (default `inventory-token`). Regions are the cluster's, or `local`. Machines carry
//! the tags they were created with, and listing filters by them.

use berth_plugin_sdk::http::Request;
use berth_plugin_sdk::provider::{
    Address, AddressKind, ClusterContext, Description, ErrorKind, HourlyPrice, ListRequest,
    Machine, MachinePage, MachineSpec, MachineState, MachineType, Provider, ProviderError,
    PurchaseOption, Region, Zone,
};
use berth_plugin_sdk::{Plugin, PluginInfo, export_provider, host, secrets};
use serde::{Deserialize, Serialize};

struct Inventory;

impl Plugin for Inventory {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "inventory".into(),
            version: "0.1.0".into(),
            description: "machines from a JSON inventory API".into(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Record {
    id: String,
    name: String,
    region: String,
    machine_type: String,
    image: String,
    state: String,
    ip: String,
    #[serde(default)]
    client_token: String,
    #[serde(default)]
    tags: Vec<(String, String)>,
}

impl From<Record> for Machine {
    fn from(r: Record) -> Machine {
        let state = match r.state.as_str() {
            "pending" => MachineState::Pending,
            "running" => MachineState::Running,
            "stopped" => MachineState::Stopped,
            "terminated" => MachineState::Terminated,
            _ => MachineState::Unknown,
        };
        Machine {
            id: r.id,
            name: r.name,
            region: r.region,
            zone: None,
            machine_type: r.machine_type,
            image: r.image,
            state,
            addresses: vec![Address {
                kind: AddressKind::Private,
                ip: r.ip,
            }],
            state_reason: None,
            created_at: None,
            tags: r.tags,
            host_key_fingerprints: vec![],
            billing_started_at: None,
        }
    }
}

fn endpoint(cluster: &ClusterContext) -> Result<String, ProviderError> {
    cluster
        .endpoint
        .clone()
        .or_else(|| host::config("endpoint"))
        .map(|e| e.trim_end_matches('/').to_string())
        .ok_or_else(|| {
            ProviderError::invalid("the cluster has no endpoint and config endpoint is not set")
        })
}

fn authed(cluster: &ClusterContext, request: Request) -> Result<Request, ProviderError> {
    let token = if cluster.credentials.iter().any(|c| c == "token") {
        cluster.credential("token")?
    } else {
        secrets::get(&host::config_or("token-secret", "inventory-token"))?
    };
    Ok(request.bearer(&token))
}

impl Provider for Inventory {
    fn describe(cluster: ClusterContext) -> Result<Description, ProviderError> {
        let mut names = cluster.regions.clone();
        if names.is_empty() {
            names.push("local".into());
        }
        let regions = names
            .iter()
            .map(|r| Region {
                id: r.clone(),
                name: r.clone(),
                zones: vec![Zone {
                    id: format!("{r}-a"),
                }],
            })
            .collect();
        Ok(Description {
            regions,
            machine_types: vec![MachineType {
                id: "small".into(),
                cpus: 2,
                memory_mib: 4096,
                gpus: 0,
                regions: vec![],
            }],
            images: vec![],
        })
    }

    fn price(
        _cluster: ClusterContext,
        _region: String,
        machine_type: String,
        purchase_option: PurchaseOption,
    ) -> Result<HourlyPrice, ProviderError> {
        match machine_type.as_str() {
            "small" => Ok(HourlyPrice {
                currency: "USD".into(),
                micros_per_hour: 41_600,
                purchase_option,
                granularity_secs: 1,
                minimum_secs: 60,
                effective_from: None,
            }),
            other => Err(ProviderError::not_found(format!("machine type {other}"))),
        }
    }

    fn create(cluster: ClusterContext, spec: MachineSpec) -> Result<Machine, ProviderError> {
        host::info(
            "creating a machine",
            &[("name", &spec.name), ("client-token", &spec.client_token)],
        );
        let body = Record {
            id: String::new(),
            name: spec.name,
            region: spec.region,
            machine_type: spec.machine_type,
            image: spec.image,
            state: "pending".into(),
            ip: String::new(),
            client_token: spec.client_token,
            tags: spec.tags,
        };
        let url = format!("{}/machines", endpoint(&cluster)?);
        let record: Record = authed(&cluster, Request::post(url).json(&body))?
            .send()?
            .error_for_status()?
            .json()?;
        Ok(record.into())
    }

    fn get(cluster: ClusterContext, _region: String, id: String) -> Result<Machine, ProviderError> {
        let url = format!("{}/machines/{id}", endpoint(&cluster)?);
        let record: Record = authed(&cluster, Request::get(url))?
            .send()?
            .error_for_status()?
            .json()?;
        Ok(record.into())
    }

    fn list(cluster: ClusterContext, request: ListRequest) -> Result<MachinePage, ProviderError> {
        if request.page_token.is_some() {
            return Ok(MachinePage {
                machines: vec![],
                next_page_token: None,
            });
        }
        let mut http = Request::get(format!("{}/machines", endpoint(&cluster)?));
        if let Some(region) = &request.region {
            http = http.query(&[("region", region)]);
        }
        let records: Vec<Record> = authed(&cluster, http)?.send()?.error_for_status()?.json()?;
        let machines = records
            .into_iter()
            .map(Machine::from)
            .filter(|m| {
                request
                    .tags
                    .iter()
                    .all(|(k, v)| m.tag(k).is_some_and(|x| v.is_empty() || x == v))
            })
            .collect();
        Ok(MachinePage {
            machines,
            next_page_token: None,
        })
    }

    fn start(cluster: ClusterContext, _region: String, id: String) -> Result<(), ProviderError> {
        let url = format!("{}/machines/{id}/start", endpoint(&cluster)?);
        authed(&cluster, Request::post(url))?
            .send()?
            .error_for_status()?;
        Ok(())
    }

    fn stop(cluster: ClusterContext, _region: String, id: String) -> Result<(), ProviderError> {
        let url = format!("{}/machines/{id}/stop", endpoint(&cluster)?);
        authed(&cluster, Request::post(url))?
            .send()?
            .error_for_status()?;
        Ok(())
    }

    fn delete(cluster: ClusterContext, _region: String, id: String) -> Result<(), ProviderError> {
        let url = format!("{}/machines/{id}", endpoint(&cluster)?);
        match authed(&cluster, Request::delete(url))?
            .send()?
            .error_for_status()
        {
            Ok(_) => Ok(()),
            // Already gone: a delete is done when the machine is.
            Err(e) if ProviderError::from(e.clone()).kind == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

export_provider!(Inventory);
