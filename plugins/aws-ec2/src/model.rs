//! EC2's XML replies, read with serde (elements are camelCase; lists are `<item>`s), and
//! an EC2 instance as berth's machine.

use berth_plugin_sdk::provider::{Address, AddressKind, Machine, MachineState, ProviderError};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// Reads an XML reply of `action`.
pub fn parse<T: DeserializeOwned>(action: &str, xml: &str) -> Result<T, ProviderError> {
    quick_xml::de::from_str(xml).map_err(|e| {
        ProviderError::new(
            berth_plugin_sdk::provider::ErrorKind::Other,
            format!("{action}: unreadable reply: {e}"),
        )
    })
}

/// An EC2 list: `<xSet><item>…</item>…</xSet>`.
#[derive(Deserialize)]
pub struct Items<T> {
    #[serde(rename = "item", default = "Vec::new")]
    pub items: Vec<T>,
}

impl<T> Default for Items<T> {
    fn default() -> Self {
        Items { items: Vec::new() }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeInstances {
    #[serde(default)]
    pub reservation_set: Items<Reservation>,
    pub next_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    #[serde(default)]
    pub instances_set: Items<Instance>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunInstances {
    #[serde(default)]
    pub instances_set: Items<Instance>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    pub instance_id: String,
    #[serde(default)]
    pub image_id: String,
    pub instance_state: InstanceState,
    #[serde(default)]
    pub instance_type: String,
    pub private_ip_address: Option<String>,
    pub ip_address: Option<String>,
    pub launch_time: Option<String>,
    pub placement: Option<Placement>,
    pub state_reason: Option<StateReason>,
    #[serde(default)]
    pub tag_set: Items<Tag>,
}

#[derive(Deserialize)]
pub struct InstanceState {
    pub name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    pub availability_zone: Option<String>,
}

#[derive(Deserialize)]
pub struct StateReason {
    pub message: Option<String>,
}

#[derive(Deserialize)]
pub struct Tag {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeInstanceTypes {
    #[serde(default)]
    pub instance_type_set: Items<InstanceTypeInfo>,
    pub next_token: Option<String>,
}

#[derive(Deserialize)]
pub struct InstanceTypeInfo {
    #[serde(rename = "instanceType")]
    pub instance_type: String,
    #[serde(rename = "vCpuInfo")]
    pub vcpu_info: VcpuInfo,
    #[serde(rename = "memoryInfo")]
    pub memory_info: MemoryInfo,
    #[serde(rename = "gpuInfo")]
    pub gpu_info: Option<GpuInfo>,
}

#[derive(Deserialize)]
pub struct VcpuInfo {
    #[serde(rename = "defaultVCpus")]
    pub default_vcpus: u32,
}

#[derive(Deserialize)]
pub struct MemoryInfo {
    #[serde(rename = "sizeInMiB")]
    pub size_in_mib: u64,
}

#[derive(Deserialize)]
pub struct GpuInfo {
    #[serde(default)]
    pub gpus: Items<Gpu>,
}

#[derive(Deserialize)]
pub struct Gpu {
    #[serde(default)]
    pub count: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeAvailabilityZones {
    #[serde(default)]
    pub availability_zone_info: Items<Zone>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Zone {
    pub zone_name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeImages {
    #[serde(default)]
    pub images_set: Items<ImageInfo>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageInfo {
    pub image_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub platform_details: String,
    #[serde(default)]
    pub architecture: String,
}

impl Instance {
    /// The instance as berth's machine, in `region`.
    pub fn into_machine(self, region: &str) -> Machine {
        let state = match self.instance_state.name.as_str() {
            "pending" => MachineState::Pending,
            "running" => MachineState::Running,
            "stopping" => MachineState::Stopping,
            "stopped" => MachineState::Stopped,
            "shutting-down" => MachineState::Terminating,
            "terminated" => MachineState::Terminated,
            _ => MachineState::Unknown,
        };
        let mut addresses = Vec::new();
        if let Some(ip) = self.private_ip_address.filter(|ip| !ip.is_empty()) {
            addresses.push(Address {
                kind: AddressKind::Private,
                ip,
            });
        }
        if let Some(ip) = self.ip_address.filter(|ip| !ip.is_empty()) {
            addresses.push(Address {
                kind: AddressKind::Public,
                ip,
            });
        }
        let launched = self
            .launch_time
            .as_deref()
            .and_then(berth_plugin_sdk::time::parse_utc);
        let tags: Vec<(String, String)> = self
            .tag_set
            .items
            .into_iter()
            .map(|t| (t.key, t.value))
            .collect();
        let name = tags
            .iter()
            .find(|(k, _)| k == "Name")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| self.instance_id.clone());
        Machine {
            id: self.instance_id,
            name,
            region: region.to_string(),
            zone: self.placement.and_then(|p| p.availability_zone),
            machine_type: self.instance_type,
            image: self.image_id,
            state,
            state_reason: self.state_reason.and_then(|r| r.message),
            addresses,
            created_at: launched,
            tags,
            // EC2 shows host keys only in the console output, which is not a record.
            host_key_fingerprints: Vec::new(),
            // EC2 bills an instance from when it runs; its launch time is when it began.
            billing_started_at: launched.filter(|_| state == MachineState::Running),
        }
    }
}
