//! `aws-ec2`: berth's provider for AWS EC2, a WebAssembly component. It speaks the EC2
//! Query API (`query.rs`), signs every request with SigV4 inside the sandbox, and reads
//! the XML replies (`model.rs`).
//!
//! A cluster of this provider sets:
//! - credentials `access-key-id`, `secret-access-key` (and `session-token` for temporary
//!   ones): one cluster per AWS account;
//! - regions (the first is where a machine goes when it names none);
//! - optionally an endpoint (a VPC endpoint, or an emulator), else EC2's regional one;
//! - settings: `machine-types` (comma-separated: the types the cluster offers; all of the
//!   region's otherwise), `image-owners` (comma-separated owners whose images `describe`
//!   lists; default `self`), `prices` (a JSON object of on-demand USD per hour by type,
//!   `{"t3.micro": "0.0104"}`: EC2's Query API has no prices).
//!
//! Creates are idempotent by `ClientToken` (berth's machine id) and tagged with berth's
//! tags; listing filters by tags on EC2's side and pages with `NextToken`.

mod model;
mod query;

use base64::Engine as _;
use berth_plugin_sdk::provider::{
    Billing, ClusterContext, Description, ErrorKind, HourlyPrice, ListRequest, Machine,
    MachinePage, MachineSpec, MachineType, Provider, ProviderError, PurchaseOption, Region,
    RegionListing, Zone,
};
use berth_plugin_sdk::{Plugin, PluginInfo, export_provider};

use model::parse;
use query::Client;

/// EC2's limit on user data, before base64.
const USER_DATA_LIMIT: usize = 16 * 1024;

struct Ec2;

impl Plugin for Ec2 {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "aws-ec2".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "AWS EC2 instances through the EC2 Query API".into(),
        }
    }
}

type Params = Vec<(String, String)>;

fn param(params: &mut Params, key: impl Into<String>, value: impl Into<String>) {
    params.push((key.into(), value.into()));
}

/// `DescribeInstances` parameters selecting machines with every tag of `tags`.
fn tag_filters(params: &mut Params, tags: &[(String, String)], first: usize) -> usize {
    let mut n = first;
    for (key, value) in tags {
        if value.is_empty() {
            param(params, format!("Filter.{n}.Name"), "tag-key");
            param(params, format!("Filter.{n}.Value.1"), key.clone());
        } else {
            param(params, format!("Filter.{n}.Name"), format!("tag:{key}"));
            param(params, format!("Filter.{n}.Value.1"), value.clone());
        }
        n += 1;
    }
    n
}

/// The instances of a `DescribeInstances` reply, as machines.
fn machines_of(reply: model::DescribeInstances, region: &str) -> (Vec<Machine>, Option<String>) {
    let machines = reply
        .reservation_set
        .items
        .into_iter()
        .flat_map(|r| r.instances_set.items)
        .map(|i| i.into_machine(region))
        .collect();
    (machines, reply.next_token.filter(|t| !t.is_empty()))
}

impl Provider for Ec2 {
    fn describe(cluster: ClusterContext) -> Result<Description, ProviderError> {
        let home = cluster.home_region()?;
        let client = Client::new(&cluster, &home)?;
        let mut regions = Vec::new();
        for region in &cluster.regions {
            let zones_xml =
                Client::new(&cluster, region)?.call("DescribeAvailabilityZones", &[])?;
            let zones: model::DescribeAvailabilityZones =
                parse("DescribeAvailabilityZones", &zones_xml)?;
            regions.push(Region {
                id: region.clone(),
                name: region.clone(),
                zones: zones
                    .availability_zone_info
                    .items
                    .into_iter()
                    .map(|z| Zone { id: z.zone_name })
                    .collect(),
            });
        }
        let mut machine_types = Vec::new();
        let wanted = cluster.list_setting("machine-types");
        let mut token: Option<String> = None;
        loop {
            let mut params = Params::new();
            for (i, t) in wanted.iter().enumerate() {
                param(&mut params, format!("InstanceType.{}", i + 1), t.clone());
            }
            if wanted.is_empty() {
                param(&mut params, "MaxResults", "100");
            }
            if let Some(t) = &token {
                param(&mut params, "NextToken", t.clone());
            }
            let reply: model::DescribeInstanceTypes = parse(
                "DescribeInstanceTypes",
                &client.call("DescribeInstanceTypes", &params)?,
            )?;
            machine_types.extend(reply.instance_type_set.items.into_iter().map(|t| {
                MachineType {
                    id: t.instance_type,
                    cpus: t.vcpu_info.default_vcpus,
                    memory_mib: t.memory_info.size_in_mib,
                    gpus: t
                        .gpu_info
                        .map(|g| g.gpus.items.iter().map(|g| g.count).sum())
                        .unwrap_or(0),
                    regions: vec![],
                }
            }));
            match reply.next_token.filter(|t| !t.is_empty()) {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        let mut params = Params::new();
        let mut owners = cluster.list_setting("image-owners");
        if owners.is_empty() {
            owners.push("self".into());
        }
        for (i, owner) in owners.iter().enumerate() {
            param(&mut params, format!("Owner.{}", i + 1), owner.clone());
        }
        let images: model::DescribeImages =
            parse("DescribeImages", &client.call("DescribeImages", &params)?)?;
        Ok(Description {
            regions,
            machine_types,
            images: images
                .images_set
                .items
                .into_iter()
                .map(|i| berth_plugin_sdk::provider::Image {
                    id: i.image_id,
                    name: i.name,
                    os: i.platform_details,
                    arch: i.architecture,
                    region: Some(home.clone()),
                })
                .collect(),
        })
    }

    fn price(
        cluster: ClusterContext,
        _region: String,
        machine_type: String,
        purchase_option: PurchaseOption,
    ) -> Result<HourlyPrice, ProviderError> {
        // Linux on-demand: per second, with a minimum of 60 s.
        let billing = Billing {
            currency: "USD",
            granularity_secs: 1,
            minimum_secs: 60,
        };
        HourlyPrice::from_sheet(&cluster, &machine_type, purchase_option, billing)
    }

    fn create(cluster: ClusterContext, spec: MachineSpec) -> Result<Machine, ProviderError> {
        let client = Client::new(&cluster, &spec.region)?;
        let mut params = Params::new();
        param(&mut params, "ImageId", spec.image.clone());
        param(&mut params, "InstanceType", spec.machine_type.clone());
        param(&mut params, "MinCount", "1");
        param(&mut params, "MaxCount", "1");
        param(&mut params, "ClientToken", spec.client_token.clone());
        if let Some(zone) = &spec.zone {
            param(&mut params, "Placement.AvailabilityZone", zone.clone());
        }
        if let Some(subnet) = &spec.subnet {
            param(&mut params, "SubnetId", subnet.clone());
        }
        for (i, group) in spec.security_groups.iter().enumerate() {
            param(
                &mut params,
                format!("SecurityGroupId.{}", i + 1),
                group.clone(),
            );
        }
        if let Some(key) = &spec.key_pair {
            param(&mut params, "KeyName", key.clone());
        }
        if spec.ssh_public_key.is_some() {
            return Err(ProviderError::new(
                ErrorKind::Unsupported,
                "EC2 takes a key pair (key_pair), not a public key; import the key as a key pair first",
            ));
        }
        if let Some(data) = &spec.user_data {
            if data.len() > USER_DATA_LIMIT {
                return Err(ProviderError::invalid(format!(
                    "user data is {} bytes; EC2 takes at most {USER_DATA_LIMIT}",
                    data.len()
                )));
            }
            param(
                &mut params,
                "UserData",
                base64::engine::general_purpose::STANDARD.encode(data),
            );
        }
        for (i, disk) in spec.disks.iter().enumerate() {
            let n = i + 1;
            let device = disk.device.clone().unwrap_or_else(|| {
                if i == 0 {
                    "/dev/xvda".into()
                } else {
                    format!("/dev/sd{}", (b'a' + i as u8) as char)
                }
            });
            param(
                &mut params,
                format!("BlockDeviceMapping.{n}.DeviceName"),
                device,
            );
            param(
                &mut params,
                format!("BlockDeviceMapping.{n}.Ebs.VolumeSize"),
                disk.size_gib.to_string(),
            );
            if let Some(kind) = &disk.kind {
                param(
                    &mut params,
                    format!("BlockDeviceMapping.{n}.Ebs.VolumeType"),
                    kind.clone(),
                );
            }
            param(
                &mut params,
                format!("BlockDeviceMapping.{n}.Ebs.DeleteOnTermination"),
                "true",
            );
        }
        let mut tags = spec.tags.clone();
        if !tags.iter().any(|(k, _)| k == "Name") {
            tags.push(("Name".into(), spec.name.clone()));
        }
        // The instance and its volumes carry the tags, so nothing berth made is anonymous.
        for (s, resource) in ["instance", "volume"].iter().enumerate() {
            let s = s + 1;
            param(
                &mut params,
                format!("TagSpecification.{s}.ResourceType"),
                *resource,
            );
            for (i, (key, value)) in tags.iter().enumerate() {
                param(
                    &mut params,
                    format!("TagSpecification.{s}.Tag.{}.Key", i + 1),
                    key.clone(),
                );
                param(
                    &mut params,
                    format!("TagSpecification.{s}.Tag.{}.Value", i + 1),
                    value.clone(),
                );
            }
        }
        let reply: model::RunInstances =
            parse("RunInstances", &client.call("RunInstances", &params)?)?;
        reply
            .instances_set
            .items
            .into_iter()
            .next()
            .map(|i| i.into_machine(&spec.region))
            .ok_or_else(|| {
                ProviderError::new(ErrorKind::Other, "RunInstances answered no instance")
            })
    }

    fn get(cluster: ClusterContext, region: String, id: String) -> Result<Machine, ProviderError> {
        Self::get_many(cluster, region, vec![id.clone()])?
            .into_iter()
            .next()
            .ok_or_else(|| {
                ProviderError::not_found(format!("no instance {id}"))
                    .with_code(Some("InvalidInstanceID.NotFound".into()), None)
            })
    }

    fn get_many(
        cluster: ClusterContext,
        region: String,
        ids: Vec<String>,
    ) -> Result<Vec<Machine>, ProviderError> {
        let client = Client::new(&cluster, &region)?;
        let mut found = Vec::new();
        // A filter, not InstanceId.N: an id EC2 does not know is left out, instead of
        // failing the whole call.
        for chunk in ids.chunks(200) {
            let mut params = Params::new();
            param(&mut params, "Filter.1.Name", "instance-id");
            for (i, id) in chunk.iter().enumerate() {
                param(&mut params, format!("Filter.1.Value.{}", i + 1), id.clone());
            }
            let mut token: Option<String> = None;
            loop {
                let mut page = params.clone();
                if let Some(t) = &token {
                    param(&mut page, "NextToken", t.clone());
                }
                let reply = parse(
                    "DescribeInstances",
                    &client.call("DescribeInstances", &page)?,
                )?;
                let (machines, next) = machines_of(reply, &region);
                found.extend(machines);
                match next {
                    Some(next) => token = Some(next),
                    None => break,
                }
            }
        }
        Ok(found)
    }

    fn list(cluster: ClusterContext, request: ListRequest) -> Result<MachinePage, ProviderError> {
        let Some(listing) = RegionListing::of(&cluster, &request)? else {
            return Ok(MachinePage::empty());
        };
        let region = &listing.region;
        let client = Client::new(&cluster, region)?;
        let mut params = Params::new();
        tag_filters(&mut params, &request.tags, 1);
        // EC2 answers 5 to 1000 per page.
        param(
            &mut params,
            "MaxResults",
            request.page_size.clamp(5, 1000).to_string(),
        );
        if let Some(t) = listing.inner() {
            param(&mut params, "NextToken", t);
        }
        let reply = parse(
            "DescribeInstances",
            &client.call("DescribeInstances", &params)?,
        )?;
        let (machines, next) = machines_of(reply, region);
        Ok(listing.answer(machines, next))
    }

    fn start(cluster: ClusterContext, region: String, id: String) -> Result<(), ProviderError> {
        let params = vec![("InstanceId.1".to_string(), id)];
        Client::new(&cluster, &region)?.call("StartInstances", &params)?;
        Ok(())
    }

    fn stop(cluster: ClusterContext, region: String, id: String) -> Result<(), ProviderError> {
        let params = vec![("InstanceId.1".to_string(), id)];
        Client::new(&cluster, &region)?.call("StopInstances", &params)?;
        Ok(())
    }

    fn delete(cluster: ClusterContext, region: String, id: String) -> Result<(), ProviderError> {
        let params = vec![("InstanceId.1".to_string(), id)];
        match Client::new(&cluster, &region)?.call("TerminateInstances", &params) {
            Ok(_) => Ok(()),
            // Gone already: a delete is done when the machine is.
            Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

export_provider!(Ec2);
