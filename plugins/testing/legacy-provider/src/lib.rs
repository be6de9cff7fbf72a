//! A cloud provider built against the frozen `berth:plugin@0.1.0` directly (not the SDK,
//! which builds for the newest version), over the same JSON inventory API as
//! `plugins/testing/inventory`: `endpoint` from its configuration, the bearer token from
//! the secret `inventory-token`. The host must keep creating, reading, listing and
//! deleting machines through it, with no cluster context, paging or tag filter of its own.

wit_bindgen::generate!({
    path: "../../../wit/v0.1.0",
    world: "cloud-provider",
    generate_all,
});

use berth::plugin::http::{self, Method, Request};
use berth::plugin::{host, secrets};
use exports::berth::plugin::meta::{Guest as Meta, PluginInfo};
use exports::berth::plugin::provider::{
    Address, AddressKind, Description, Guest as ProviderGuest, HourlyPrice, Machine, MachineSpec,
    MachineState, MachineType, ProviderError, Region,
};
use serde_json::{Value, json};

struct LegacyProvider;

impl Meta for LegacyProvider {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "legacy-provider".into(),
            version: "0.1.0".into(),
            description: "a provider built for berth:plugin@0.1.0".into(),
        }
    }
}

fn call(method: Method, path: &str, body: Option<Value>) -> Result<Option<Value>, ProviderError> {
    let endpoint = host::config("endpoint")
        .ok_or_else(|| ProviderError::Invalid("config endpoint is not set".into()))?;
    let token = secrets::get("inventory-token").map_err(|_| {
        ProviderError::Auth("secret inventory-token is not granted or not set".into())
    })?;
    let mut headers = vec![("authorization".to_string(), format!("Bearer {token}"))];
    if body.is_some() {
        headers.push(("content-type".into(), "application/json".into()));
    }
    let response = http::send(&Request {
        method,
        url: format!("{}{path}", endpoint.trim_end_matches('/')),
        headers,
        body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
        timeout_ms: None,
    })
    .map_err(|e| ProviderError::Other(format!("{e:?}")))?;
    match response.status {
        200..=299 if response.body.is_empty() => Ok(None),
        200..=299 => serde_json::from_slice(&response.body)
            .map(Some)
            .map_err(|e| ProviderError::Other(e.to_string())),
        401 | 403 => Err(ProviderError::Auth(format!("HTTP {}", response.status))),
        404 => Err(ProviderError::NotFound(path.into())),
        status => Err(ProviderError::Other(format!("HTTP {status}"))),
    }
}

fn machine(record: &Value) -> Machine {
    let text = |key: &str| record[key].as_str().unwrap_or_default().to_string();
    Machine {
        id: text("id"),
        name: text("name"),
        region: text("region"),
        zone: None,
        machine_type: text("machine_type"),
        image: text("image"),
        state: match record["state"].as_str() {
            Some("pending") => MachineState::Pending,
            Some("running") => MachineState::Running,
            Some("stopped") => MachineState::Stopped,
            Some("terminated") => MachineState::Terminated,
            _ => MachineState::Unknown,
        },
        addresses: vec![Address {
            kind: AddressKind::Private,
            ip: text("ip"),
        }],
        created_at: None,
        tags: record["tags"]
            .as_array()
            .map(|tags| {
                tags.iter()
                    .filter_map(|t| Some((t[0].as_str()?.into(), t[1].as_str()?.into())))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

impl ProviderGuest for LegacyProvider {
    fn describe() -> Result<Description, ProviderError> {
        Ok(Description {
            regions: vec![Region {
                id: "local".into(),
                name: "local".into(),
                zones: vec![],
            }],
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
        let body = json!({
            "id": "", "name": spec.name, "region": spec.region,
            "machine_type": spec.machine_type, "image": spec.image, "state": "pending",
            "ip": "", "client_token": spec.client_token, "tags": spec.tags,
        });
        let record = call(Method::Post, "/machines", Some(body))?.unwrap_or_default();
        Ok(machine(&record))
    }

    fn get(_region: String, id: String) -> Result<Machine, ProviderError> {
        let record = call(Method::Get, &format!("/machines/{id}"), None)?.unwrap_or_default();
        Ok(machine(&record))
    }

    fn list(_region: Option<String>) -> Result<Vec<Machine>, ProviderError> {
        let records = call(Method::Get, "/machines", None)?.unwrap_or_default();
        Ok(records
            .as_array()
            .map(|all| all.iter().map(machine).collect())
            .unwrap_or_default())
    }

    fn start(_region: String, id: String) -> Result<(), ProviderError> {
        call(Method::Post, &format!("/machines/{id}/start"), None).map(|_| ())
    }

    fn stop(_region: String, id: String) -> Result<(), ProviderError> {
        call(Method::Post, &format!("/machines/{id}/stop"), None).map(|_| ())
    }

    fn delete(_region: String, id: String) -> Result<(), ProviderError> {
        match call(Method::Delete, &format!("/machines/{id}"), None) {
            Err(ProviderError::NotFound(_)) | Ok(_) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

export!(LegacyProvider);
