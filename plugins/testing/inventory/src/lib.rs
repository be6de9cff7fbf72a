//! A cloud provider over a small JSON inventory API (the end-to-end tests serve one):
//! `GET/POST {endpoint}/machines`, `GET/DELETE {endpoint}/machines/{id}`,
//! `POST {endpoint}/machines/{id}/start|stop`, with `Authorization: Bearer <secret>`.
//!
//! Configuration: `endpoint` (required), `token-secret` (the secret's name, default
//! `inventory-token`), `regions` (comma-separated, default `local`).

use berth_plugin_sdk::http::Request;
use berth_plugin_sdk::provider::{
    Address, AddressKind, Description, HourlyPrice, Machine, MachineSpec, MachineState,
    MachineType, Provider, ProviderError, Region, Zone,
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
            created_at: None,
            tags: vec![],
        }
    }
}

fn endpoint() -> Result<String, ProviderError> {
    host::config("endpoint")
        .ok_or_else(|| ProviderError::Invalid("config endpoint is not set".into()))
}

fn authed(request: Request) -> Result<Request, ProviderError> {
    let secret = host::config_or("token-secret", "inventory-token");
    Ok(request.bearer(&secrets::get(&secret)?))
}

impl Provider for Inventory {
    fn describe() -> Result<Description, ProviderError> {
        let regions = host::config_or("regions", "local")
            .split(',')
            .map(|r| Region {
                id: r.trim().into(),
                name: r.trim().into(),
                zones: vec![Zone {
                    id: format!("{}-a", r.trim()),
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

    fn price(_region: String, machine_type: String) -> Result<HourlyPrice, ProviderError> {
        match machine_type.as_str() {
            "small" => Ok(HourlyPrice {
                currency: "USD".into(),
                micros_per_hour: 41_600,
            }),
            other => Err(ProviderError::NotFound(format!("machine type {other}"))),
        }
    }

    fn create(spec: MachineSpec) -> Result<Machine, ProviderError> {
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
        };
        let record: Record =
            authed(Request::post(format!("{}/machines", endpoint()?)).json(&body))?
                .send()?
                .error_for_status()?
                .json()?;
        Ok(record.into())
    }

    fn get(_region: String, id: String) -> Result<Machine, ProviderError> {
        let record: Record = authed(Request::get(format!("{}/machines/{id}", endpoint()?)))?
            .send()?
            .error_for_status()?
            .json()?;
        Ok(record.into())
    }

    fn list(region: Option<String>) -> Result<Vec<Machine>, ProviderError> {
        let mut request = Request::get(format!("{}/machines", endpoint()?));
        if let Some(region) = &region {
            request = request.query(&[("region", region)]);
        }
        let records: Vec<Record> = authed(request)?.send()?.error_for_status()?.json()?;
        Ok(records.into_iter().map(Machine::from).collect())
    }

    fn start(_region: String, id: String) -> Result<(), ProviderError> {
        authed(Request::post(format!(
            "{}/machines/{id}/start",
            endpoint()?
        )))?
        .send()?
        .error_for_status()?;
        Ok(())
    }

    fn stop(_region: String, id: String) -> Result<(), ProviderError> {
        authed(Request::post(format!("{}/machines/{id}/stop", endpoint()?)))?
            .send()?
            .error_for_status()?;
        Ok(())
    }

    fn delete(_region: String, id: String) -> Result<(), ProviderError> {
        authed(Request::delete(format!("{}/machines/{id}", endpoint()?)))?
            .send()?
            .error_for_status()?;
        Ok(())
    }
}

export_provider!(Inventory);
