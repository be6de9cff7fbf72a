//! `redfish`: power control of physical hosts through their BMCs' Redfish API (DMTF
//! DSP0266). It is a `cloud-provider` plugin that manages existing machines and makes
//! none: `get` reads a system's power state, `start` powers it on, `stop` shuts it down;
//! `describe`, `price`, `create`, `list` and `delete` are `unsupported`.
//!
//! Each call's cluster context names one BMC: its endpoint is the BMC's base URL
//! (`https://10.0.9.5`), the id is the system's id under `/redfish/v1/Systems/`, and the
//! credentials `bmc-username` and `bmc-password`, when the cluster has them, log in with
//! HTTP Basic. The setting `stop-reset-type` chooses how `stop` shuts down
//! (`GracefulShutdown` by default; `ForceOff` for hosts that ignore it).

use base64::Engine as _;
use berth_plugin_sdk::http::Request;
use berth_plugin_sdk::provider::{
    ClusterContext, Description, ErrorKind, HourlyPrice, ListRequest, Machine, MachinePage,
    MachineSpec, MachineState, Provider, ProviderError, PurchaseOption,
};
use berth_plugin_sdk::{Plugin, PluginInfo, export_provider};
use serde::Deserialize;

struct Redfish;

impl Plugin for Redfish {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "redfish".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "power control of physical hosts through Redfish".into(),
        }
    }
}

fn unsupported(what: &str) -> ProviderError {
    ProviderError::new(
        ErrorKind::Unsupported,
        format!("redfish controls the power of existing hosts; it cannot {what}"),
    )
}

/// The system's URL, refusing an id that would leave `/redfish/v1/Systems/`.
fn system_url(cluster: &ClusterContext, id: &str) -> Result<String, ProviderError> {
    let base = cluster
        .endpoint
        .as_deref()
        .ok_or_else(|| ProviderError::invalid("the BMC has no endpoint"))?
        .trim_end_matches('/');
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        || id.contains("..")
    {
        return Err(ProviderError::invalid(format!(
            "{id:?} is not a Redfish system id"
        )));
    }
    Ok(format!("{base}/redfish/v1/Systems/{id}"))
}

/// `request` with the BMC's login, when the cluster has one.
fn login(cluster: &ClusterContext, request: Request) -> Result<Request, ProviderError> {
    if !cluster.credentials.iter().any(|c| c == "bmc-username") {
        return Ok(request);
    }
    let user = cluster.credential("bmc-username")?;
    let password = cluster.credential("bmc-password")?;
    Ok(request.header(
        "authorization",
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        ),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct System {
    id: String,
    #[serde(default)]
    name: String,
    power_state: Option<String>,
}

fn read(cluster: &ClusterContext, id: &str) -> Result<System, ProviderError> {
    let request = login(cluster, Request::get(system_url(cluster, id)?))?;
    Ok(request.send()?.error_for_status()?.json()?)
}

fn reset(cluster: &ClusterContext, id: &str, reset_type: &str) -> Result<(), ProviderError> {
    let url = format!("{}/Actions/ComputerSystem.Reset", system_url(cluster, id)?);
    let request = login(
        cluster,
        Request::post(url).json(&serde_json::json!({"ResetType": reset_type})),
    )?;
    request.send()?.error_for_status()?;
    Ok(())
}

impl Provider for Redfish {
    fn describe(_cluster: ClusterContext) -> Result<Description, ProviderError> {
        Err(unsupported("describe machines to create"))
    }

    fn price(
        _cluster: ClusterContext,
        _region: String,
        _machine_type: String,
        _purchase_option: PurchaseOption,
    ) -> Result<HourlyPrice, ProviderError> {
        Err(unsupported("price machines"))
    }

    fn create(_cluster: ClusterContext, _spec: MachineSpec) -> Result<Machine, ProviderError> {
        Err(unsupported("create machines"))
    }

    fn get(cluster: ClusterContext, region: String, id: String) -> Result<Machine, ProviderError> {
        let system = read(&cluster, &id)?;
        let state = match system.power_state.as_deref() {
            Some("On") => MachineState::Running,
            Some("Off") => MachineState::Stopped,
            Some("PoweringOn") => MachineState::Pending,
            Some("PoweringOff") => MachineState::Stopping,
            _ => MachineState::Unknown,
        };
        Ok(Machine {
            id: system.id,
            name: system.name,
            region,
            zone: None,
            machine_type: String::new(),
            image: String::new(),
            state,
            state_reason: system.power_state.map(|s| format!("power {s}")),
            addresses: vec![],
            created_at: None,
            tags: vec![],
            host_key_fingerprints: vec![],
            billing_started_at: None,
        })
    }

    fn list(_cluster: ClusterContext, _request: ListRequest) -> Result<MachinePage, ProviderError> {
        Err(unsupported("list machines"))
    }

    fn start(cluster: ClusterContext, _region: String, id: String) -> Result<(), ProviderError> {
        // Already on (or coming on): done, as the contract asks.
        if matches!(
            read(&cluster, &id)?.power_state.as_deref(),
            Some("On" | "PoweringOn")
        ) {
            return Ok(());
        }
        reset(&cluster, &id, "On")
    }

    fn stop(cluster: ClusterContext, _region: String, id: String) -> Result<(), ProviderError> {
        if matches!(
            read(&cluster, &id)?.power_state.as_deref(),
            Some("Off" | "PoweringOff")
        ) {
            return Ok(());
        }
        let reset_type = cluster
            .setting("stop-reset-type")
            .unwrap_or("GracefulShutdown")
            .to_string();
        reset(&cluster, &id, &reset_type)
    }

    fn delete(_cluster: ClusterContext, _region: String, _id: String) -> Result<(), ProviderError> {
        Err(unsupported("delete machines"))
    }
}

export_provider!(Redfish);
