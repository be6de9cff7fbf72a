//! ECS's JSON replies, read with serde (PascalCase fields; lists wrapped in an object named
//! for their item: `{"Instances": {"Instance": [...]}}`), and an ECS instance as berth's
//! machine.

use berth_plugin_sdk::provider::{
    Address, AddressKind, ErrorKind, Machine, MachineState, ProviderError,
};
use berth_plugin_sdk::time::parse_utc;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Reads the reply of `action`.
pub fn parse<T: DeserializeOwned>(action: &str, reply: Value) -> Result<T, ProviderError> {
    serde_json::from_value(reply).map_err(|e| {
        ProviderError::new(ErrorKind::Other, format!("{action}: unreadable reply: {e}"))
    })
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeInstances {
    #[serde(default)]
    pub instances: InstanceList,
    #[serde(default)]
    pub next_token: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct InstanceList {
    #[serde(rename = "Instance", default)]
    pub items: Vec<Instance>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunInstances {
    pub instance_id_sets: IdSet,
}

#[derive(Deserialize)]
pub struct IdSet {
    #[serde(rename = "InstanceIdSet", default)]
    pub ids: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Instance {
    pub instance_id: String,
    #[serde(default)]
    pub instance_name: String,
    #[serde(default)]
    pub zone_id: Option<String>,
    #[serde(default)]
    pub instance_type: String,
    #[serde(default)]
    pub image_id: String,
    pub status: String,
    #[serde(default)]
    pub creation_time: Option<String>,
    #[serde(default)]
    pub vpc_attributes: Option<VpcAttributes>,
    #[serde(default)]
    pub public_ip_address: Option<IpList>,
    #[serde(default)]
    pub eip_address: Option<Eip>,
    #[serde(default)]
    pub tags: Option<TagList>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VpcAttributes {
    #[serde(default)]
    pub private_ip_address: Option<IpList>,
}

#[derive(Deserialize, Default)]
pub struct IpList {
    #[serde(rename = "IpAddress", default)]
    pub addresses: Vec<String>,
}

#[derive(Deserialize)]
pub struct Eip {
    #[serde(rename = "IpAddress", default)]
    pub address: String,
}

#[derive(Deserialize, Default)]
pub struct TagList {
    #[serde(rename = "Tag", default)]
    pub items: Vec<Tag>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    pub tag_key: String,
    #[serde(default)]
    pub tag_value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeRegions {
    pub regions: RegionList,
}

#[derive(Deserialize)]
pub struct RegionList {
    #[serde(rename = "Region", default)]
    pub items: Vec<RegionItem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegionItem {
    pub region_id: String,
    #[serde(default)]
    pub local_name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeZones {
    pub zones: ZoneList,
}

#[derive(Deserialize)]
pub struct ZoneList {
    #[serde(rename = "Zone", default)]
    pub items: Vec<ZoneItem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ZoneItem {
    pub zone_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeInstanceTypes {
    pub instance_types: InstanceTypeList,
    #[serde(default)]
    pub next_token: Option<String>,
}

#[derive(Deserialize)]
pub struct InstanceTypeList {
    #[serde(rename = "InstanceType", default)]
    pub items: Vec<InstanceType>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceType {
    pub instance_type_id: String,
    #[serde(default)]
    pub cpu_core_count: u32,
    /// GiB, fractional for small types.
    #[serde(default)]
    pub memory_size: f64,
    #[serde(rename = "GPUAmount", default)]
    pub gpu_amount: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeImages {
    pub images: ImageList,
    #[serde(default)]
    pub total_count: u64,
}

#[derive(Deserialize)]
pub struct ImageList {
    #[serde(rename = "Image", default)]
    pub items: Vec<ImageItem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageItem {
    pub image_id: String,
    #[serde(default)]
    pub image_name: String,
    #[serde(rename = "OSName", default)]
    pub os_name: String,
    #[serde(default)]
    pub architecture: String,
}

impl Instance {
    pub fn into_machine(self, region: &str) -> Machine {
        let state = match self.status.as_str() {
            // ECS's Starting (after Pending, or after a start of a stopped instance) is
            // not yet running.
            "Pending" | "Starting" => MachineState::Pending,
            "Running" => MachineState::Running,
            "Stopping" => MachineState::Stopping,
            "Stopped" => MachineState::Stopped,
            "Deleted" => MachineState::Terminated,
            _ => MachineState::Unknown,
        };
        let mut addresses = Vec::new();
        let private = self
            .vpc_attributes
            .and_then(|v| v.private_ip_address)
            .unwrap_or_default();
        for ip in private.addresses.into_iter().filter(|ip| !ip.is_empty()) {
            addresses.push(Address {
                kind: AddressKind::Private,
                ip,
            });
        }
        let public = self.public_ip_address.unwrap_or_default().addresses;
        let eip = self.eip_address.map(|e| e.address);
        for ip in public.into_iter().chain(eip).filter(|ip| !ip.is_empty()) {
            addresses.push(Address {
                kind: AddressKind::Public,
                ip,
            });
        }
        // Pay-as-you-go instances are charged from their creation.
        let created = self.creation_time.as_deref().and_then(parse_utc);
        let name = if self.instance_name.is_empty() {
            self.instance_id.clone()
        } else {
            self.instance_name
        };
        Machine {
            id: self.instance_id,
            name,
            region: region.to_string(),
            zone: self.zone_id.filter(|z| !z.is_empty()),
            machine_type: self.instance_type,
            image: self.image_id,
            state,
            state_reason: None,
            addresses,
            created_at: created,
            tags: self
                .tags
                .unwrap_or_default()
                .items
                .into_iter()
                .map(|t| (t.tag_key, t.tag_value))
                .collect(),
            host_key_fingerprints: Vec::new(),
            billing_started_at: created,
        }
    }
}
