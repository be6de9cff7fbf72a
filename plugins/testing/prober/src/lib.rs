//! A cloud provider that fetches whatever it is asked for, to probe the host's grant
//! checks from inside the sandbox: `get(region, url)` sends `GET url` and answers a
//! machine whose `name` is the status and whose `image` is the body; a refused request
//! comes back as an `other` error naming the refusal. Each line of `region` that reads
//! `Name: value` is sent as a request header. The other functions are inert.

use berth_plugin_sdk::http::{HttpError, Request, describe};
use berth_plugin_sdk::provider::{
    ClusterContext, Description, ErrorKind, HourlyPrice, ListRequest, Machine, MachinePage,
    MachineSpec, MachineState, Provider, ProviderError, PurchaseOption,
};
use berth_plugin_sdk::{Plugin, PluginInfo, export_provider};

struct Prober;

impl Plugin for Prober {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "prober".into(),
            version: "0.1.0".into(),
            description: "fetches the URL it is given".into(),
        }
    }
}

fn inert() -> ProviderError {
    ProviderError::invalid("the prober only answers get")
}

impl Provider for Prober {
    fn describe(_cluster: ClusterContext) -> Result<Description, ProviderError> {
        Err(inert())
    }
    fn price(
        _cluster: ClusterContext,
        _region: String,
        _machine_type: String,
        _option: PurchaseOption,
    ) -> Result<HourlyPrice, ProviderError> {
        Err(inert())
    }
    fn create(_cluster: ClusterContext, _spec: MachineSpec) -> Result<Machine, ProviderError> {
        Err(inert())
    }
    fn get(
        _cluster: ClusterContext,
        region: String,
        url: String,
    ) -> Result<Machine, ProviderError> {
        let headers = region.lines().filter_map(|line| line.split_once(": "));
        let request = headers.fold(Request::get(url.clone()), |request, (name, value)| {
            request.header(name, value)
        });
        let response = request.send().map_err(|e| {
            // The kind of refusal, spelled out, so a test can tell them apart.
            let kind = match &e {
                HttpError::NotGranted(_) => "not-granted",
                HttpError::InvalidRequest(_) => "invalid-request",
                HttpError::Connection(_) => "connection",
                HttpError::Timeout => "timeout",
                HttpError::TooLarge(_) => "too-large",
            };
            ProviderError::new(ErrorKind::Other, format!("{kind}: {}", describe(&e)))
        })?;
        Ok(Machine {
            id: url,
            name: response.status.to_string(),
            region,
            zone: None,
            machine_type: String::new(),
            image: response.text(),
            state: MachineState::Unknown,
            state_reason: None,
            addresses: vec![],
            created_at: None,
            tags: vec![],
            host_key_fingerprints: vec![],
            billing_started_at: None,
        })
    }
    fn list(_cluster: ClusterContext, _request: ListRequest) -> Result<MachinePage, ProviderError> {
        Err(inert())
    }
    fn start(_cluster: ClusterContext, _region: String, _id: String) -> Result<(), ProviderError> {
        Err(inert())
    }
    fn stop(_cluster: ClusterContext, _region: String, _id: String) -> Result<(), ProviderError> {
        Err(inert())
    }
    fn delete(_cluster: ClusterContext, _region: String, _id: String) -> Result<(), ProviderError> {
        Err(inert())
    }
}

export_provider!(Prober);
