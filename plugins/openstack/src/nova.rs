//! Nova's server record, as much of it as berth reads, and what it says as a machine.

use std::collections::BTreeMap;

use berth_plugin_sdk::provider::{Address, AddressKind, Machine, MachineState};
use berth_plugin_sdk::time::parse_utc;
use serde::Deserialize;

#[derive(Deserialize)]
pub struct ServerBody {
    pub server: Server,
}

#[derive(Deserialize)]
pub struct ServerPage {
    pub servers: Vec<Server>,
    #[serde(default)]
    pub servers_links: Vec<Link>,
}

/// A page link; berth pages by marker, so only its relation is read.
#[derive(Deserialize)]
pub struct Link {
    pub rel: String,
}

#[derive(Deserialize)]
pub struct Server {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub flavor: Option<FlavorRef>,
    /// `""` for a server booted from a volume, an object otherwise.
    #[serde(default)]
    pub image: serde_json::Value,
    #[serde(default)]
    pub addresses: BTreeMap<String, Vec<ServerAddress>>,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(rename = "OS-SRV-USG:launched_at", default)]
    pub launched_at: Option<String>,
    #[serde(rename = "OS-EXT-AZ:availability_zone", default)]
    pub zone: Option<String>,
    #[serde(rename = "OS-EXT-STS:task_state", default)]
    pub task_state: Option<String>,
    #[serde(default)]
    pub fault: Option<Fault>,
}

#[derive(Deserialize)]
pub struct FlavorRef {
    /// From microversion 2.47.
    #[serde(default)]
    pub original_name: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
}

#[derive(Deserialize)]
pub struct ServerAddress {
    pub addr: String,
    #[serde(default)]
    pub version: u8,
    #[serde(rename = "OS-EXT-IPS:type", default)]
    pub kind: Option<String>,
}

#[derive(Deserialize)]
pub struct Fault {
    #[serde(default)]
    pub message: String,
}

impl Server {
    /// What the server is as a machine in `region`.
    pub fn into_machine(self, region: &str) -> Machine {
        let state = match (self.status.as_str(), self.task_state.as_deref()) {
            (_, Some("deleting")) => MachineState::Terminating,
            (_, Some("powering-off")) => MachineState::Stopping,
            ("BUILD" | "REBUILD", _) => MachineState::Pending,
            (
                "ACTIVE" | "REBOOT" | "HARD_REBOOT" | "PASSWORD" | "RESIZE" | "VERIFY_RESIZE"
                | "REVERT_RESIZE" | "MIGRATING" | "RESCUE",
                _,
            ) => MachineState::Running,
            (
                "SHUTOFF" | "STOPPED" | "PAUSED" | "SUSPENDED" | "SHELVED" | "SHELVED_OFFLOADED",
                _,
            ) => MachineState::Stopped,
            ("ERROR", _) => MachineState::Error,
            ("DELETED" | "SOFT_DELETED", _) => MachineState::Terminated,
            _ => MachineState::Unknown,
        };
        let mut addresses: Vec<(u8, Address)> = self
            .addresses
            .into_values()
            .flatten()
            .map(|a| {
                let kind = if a.kind.as_deref() == Some("floating") {
                    AddressKind::Public
                } else {
                    AddressKind::Private
                };
                (a.version, Address { kind, ip: a.addr })
            })
            .collect();
        // IPv4 first: what the hosts beside it reach today.
        addresses.sort_by_key(|(version, _)| *version != 4);
        let state_reason = match state {
            MachineState::Error => self.fault.map(|f| f.message).filter(|m| !m.is_empty()),
            _ => None,
        };
        Machine {
            id: self.id,
            name: self.name,
            region: region.to_string(),
            zone: self.zone.filter(|z| !z.is_empty()),
            machine_type: self
                .flavor
                .and_then(|f| f.original_name.or(f.id))
                .unwrap_or_default(),
            image: self
                .image
                .get("id")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string(),
            state,
            state_reason,
            addresses: addresses.into_iter().map(|(_, a)| a).collect(),
            created_at: self.created.as_deref().and_then(parse_utc),
            tags: self.metadata.into_iter().collect(),
            host_key_fingerprints: Vec::new(),
            billing_started_at: self.launched_at.as_deref().and_then(parse_utc),
        }
    }
}

#[derive(Deserialize)]
pub struct FlavorPage {
    pub flavors: Vec<Flavor>,
}

#[derive(Deserialize)]
pub struct Flavor {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub vcpus: u32,
    /// MiB.
    #[serde(default)]
    pub ram: u64,
}

#[derive(Deserialize)]
pub struct ZoneInfo {
    #[serde(rename = "availabilityZoneInfo")]
    pub zones: Vec<ZoneEntry>,
}

#[derive(Deserialize)]
pub struct ZoneEntry {
    #[serde(rename = "zoneName")]
    pub name: String,
    #[serde(rename = "zoneState")]
    pub state: ZoneState,
}

#[derive(Deserialize)]
pub struct ZoneState {
    pub available: bool,
}

#[derive(Deserialize)]
pub struct ImagePage {
    pub images: Vec<GlanceImage>,
    #[serde(default)]
    pub next: Option<String>,
}

#[derive(Deserialize)]
pub struct GlanceImage {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub os_distro: Option<String>,
    #[serde(default)]
    pub architecture: Option<String>,
}
