//! `aliyun-ecs`: berth's provider for Alibaba Cloud ECS, a WebAssembly component. It speaks
//! ECS's RPC API 2014-05-26 (`rpc.rs`), signs every request with ACS3-HMAC-SHA256 inside
//! the sandbox, and reads the JSON replies (`model.rs`).
//!
//! A cluster of this provider sets:
//! - credentials `access-key-id`, `access-key-secret` (and `security-token` for STS
//!   ones): one cluster per Alibaba Cloud account (or RAM user);
//! - regions (`cn-hangzhou`; the first is where a machine goes when it names none);
//! - optionally an endpoint (a VPC endpoint, or an emulator), else ECS's regional one;
//! - settings: `vswitch` (the vSwitch instances join when a create names no subnet: one
//!   id, or a JSON object of ids by zone; ECS places instances by vSwitch, and the
//!   vSwitch decides the zone), `security-group`
//!   (comma-separated, when a create names none), `machine-types` (comma-separated: the
//!   types the cluster offers; all of the region's otherwise), `image-owners`
//!   (comma-separated `self`, `system`, `others`, `marketplace`; default `self`), and for
//!   endpoints without `DescribePrice` a price sheet `prices` with its `currency` (default
//!   `CNY`).
//!
//! Creates are idempotent by `ClientToken` (berth's machine id) and tagged with berth's
//! tags; listing filters by tag on ECS's side and pages with `NextToken`.

mod model;
mod rpc;

use base64::Engine as _;
use berth_plugin_sdk::provider::{
    Billing, ClusterContext, Description, ErrorKind, HourlyPrice, Image, ListRequest, Machine,
    MachinePage, MachineSpec, MachineState, MachineType, Provider, ProviderError, PurchaseOption,
    Region, RegionListing, Zone, micros,
};
use berth_plugin_sdk::{Plugin, PluginInfo, export_provider};
use serde_json::Value;

use model::parse;
use rpc::{Client, Params};

/// ECS's limit on user data, before base64.
const USER_DATA_LIMIT: usize = 32 * 1024;
/// ECS's most tags on one resource.
const TAG_LIMIT: usize = 20;
/// ECS's most instances per `DescribeInstances` page (and ids per `InstanceIds`).
const MAX_PAGE: u32 = 100;

struct Ecs;

impl Plugin for Ecs {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "aliyun-ecs".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Alibaba Cloud ECS instances through the ECS RPC API".into(),
        }
    }
}

fn param(params: &mut Params, key: impl Into<String>, value: impl Into<String>) {
    params.push((key.into(), value.into()));
}

/// `Tag.N.Key` / `Tag.N.Value` for every tag of `tags` (a key alone matches any value).
fn tag_params(params: &mut Params, tags: &[(String, String)]) -> Result<(), ProviderError> {
    if tags.len() > TAG_LIMIT {
        return Err(ProviderError::invalid(format!(
            "{} tags; ECS takes at most {TAG_LIMIT}",
            tags.len()
        )));
    }
    for (i, (key, value)) in tags.iter().enumerate() {
        param(params, format!("Tag.{}.Key", i + 1), key.clone());
        if !value.is_empty() {
            param(params, format!("Tag.{}.Value", i + 1), value.clone());
        }
    }
    Ok(())
}

/// The vSwitch a create joins, and the zone that puts it in: the spec's subnet, else the
/// cluster's `vswitch` setting (one id, or a JSON object of ids by zone, so that machines
/// spread over zones each find a vSwitch of their zone; with no zone asked, the first).
fn vswitch_for(
    cluster: &ClusterContext,
    spec: &MachineSpec,
) -> Result<(String, Option<String>), ProviderError> {
    if let Some(subnet) = &spec.subnet {
        return Ok((subnet.clone(), spec.zone.clone()));
    }
    let setting = cluster.setting("vswitch").ok_or_else(|| {
        ProviderError::invalid(
            "ECS places instances in a vSwitch: give a subnet, or set the cluster's vswitch",
        )
    })?;
    if !setting.trim_start().starts_with('{') {
        return Ok((setting.to_string(), spec.zone.clone()));
    }
    let by_zone: std::collections::BTreeMap<String, String> = serde_json::from_str(setting)
        .map_err(|e| {
            ProviderError::invalid(format!(
                "the vswitch setting is neither an id nor a JSON object of ids by zone: {e}"
            ))
        })?;
    let found = match &spec.zone {
        Some(zone) => by_zone.get_key_value(zone),
        None => by_zone.iter().next(),
    };
    let (zone, vswitch) = found.ok_or_else(|| {
        ProviderError::invalid(format!(
            "the cluster's vswitch setting has no vSwitch for zone {}",
            spec.zone.as_deref().unwrap_or("(any)")
        ))
    })?;
    Ok((vswitch.clone(), Some(zone.clone())))
}

/// One `DescribeInstances` page: its machines and the token of the next page.
fn instance_page(
    client: &Client,
    region: &str,
    mut params: Params,
    token: Option<&str>,
) -> Result<(Vec<Machine>, Option<String>), ProviderError> {
    param(&mut params, "RegionId", region);
    if let Some(token) = token {
        param(&mut params, "NextToken", token);
    }
    let reply: model::DescribeInstances = parse(
        "DescribeInstances",
        client.call("DescribeInstances", &params)?,
    )?;
    let machines = reply
        .instances
        .items
        .into_iter()
        .map(|i| i.into_machine(region))
        .collect();
    Ok((machines, reply.next_token.filter(|t| !t.is_empty())))
}

/// Answers `Ok` when machine `id` is already where an action would take it, or on its
/// way there (either of `done`), else the conflict itself.
fn already(
    cluster: &ClusterContext,
    region: &str,
    id: &str,
    done: [MachineState; 2],
    conflict: ProviderError,
) -> Result<(), ProviderError> {
    match Ecs::get(cluster.clone(), region.to_string(), id.to_string()) {
        Ok(machine) if done.contains(&machine.state) => Ok(()),
        _ => Err(conflict),
    }
}

fn instance_action(
    cluster: &ClusterContext,
    region: &str,
    action: &str,
    id: &str,
    extra: &[(&str, &str)],
) -> Result<(), ProviderError> {
    let mut params = vec![("InstanceId".to_string(), id.to_string())];
    params.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Client::new(cluster, region)?.call(action, &params)?;
    Ok(())
}

impl Provider for Ecs {
    fn describe(cluster: ClusterContext) -> Result<Description, ProviderError> {
        let home = cluster.home_region()?;
        let client = Client::new(&cluster, &home)?;
        let offered: model::DescribeRegions =
            parse("DescribeRegions", client.call("DescribeRegions", &[])?)?;
        let mut regions = Vec::new();
        for region in &cluster.regions {
            let Some(known) = offered
                .regions
                .items
                .iter()
                .find(|r| &r.region_id == region)
            else {
                let ids: Vec<&str> = offered
                    .regions
                    .items
                    .iter()
                    .map(|r| r.region_id.as_str())
                    .collect();
                return Err(ProviderError::not_found(format!(
                    "ECS has no region {region} for this account (it has {})",
                    ids.join(", ")
                )));
            };
            let params = vec![("RegionId".to_string(), region.clone())];
            let zones: model::DescribeZones = parse(
                "DescribeZones",
                Client::new(&cluster, region)?.call("DescribeZones", &params)?,
            )?;
            regions.push(Region {
                id: region.clone(),
                name: if known.local_name.is_empty() {
                    region.clone()
                } else {
                    known.local_name.clone()
                },
                zones: zones
                    .zones
                    .items
                    .into_iter()
                    .map(|z| Zone { id: z.zone_id })
                    .collect(),
            });
        }
        let mut machine_types = Vec::new();
        let wanted = cluster.list_setting("machine-types");
        // ECS takes at most 10 `InstanceTypes.N` per call.
        let batches: Vec<&[String]> = if wanted.is_empty() {
            vec![&[]]
        } else {
            wanted.chunks(10).collect()
        };
        for batch in batches {
            let mut token: Option<String> = None;
            loop {
                let mut params = Params::new();
                for (i, t) in batch.iter().enumerate() {
                    param(&mut params, format!("InstanceTypes.{}", i + 1), t.clone());
                }
                param(&mut params, "MaxResults", "100");
                if let Some(t) = &token {
                    param(&mut params, "NextToken", t.clone());
                }
                let reply: model::DescribeInstanceTypes = parse(
                    "DescribeInstanceTypes",
                    client.call("DescribeInstanceTypes", &params)?,
                )?;
                machine_types.extend(reply.instance_types.items.into_iter().map(|t| MachineType {
                    id: t.instance_type_id,
                    cpus: t.cpu_core_count,
                    memory_mib: (t.memory_size * 1024.0).round() as u64,
                    gpus: t.gpu_amount,
                    regions: vec![],
                }));
                match reply.next_token.filter(|t| !t.is_empty()) {
                    Some(next) => token = Some(next),
                    None => break,
                }
            }
        }
        let mut owners = cluster.list_setting("image-owners");
        if owners.is_empty() {
            owners.push("self".into());
        }
        let mut images = Vec::new();
        for owner in owners {
            let mut number = 1u64;
            loop {
                let params = vec![
                    ("RegionId".to_string(), home.clone()),
                    ("ImageOwnerAlias".to_string(), owner.clone()),
                    ("PageNumber".to_string(), number.to_string()),
                    ("PageSize".to_string(), "100".to_string()),
                ];
                let reply: model::DescribeImages =
                    parse("DescribeImages", client.call("DescribeImages", &params)?)?;
                let got = reply.images.items.len() as u64;
                images.extend(reply.images.items.into_iter().map(|i| Image {
                    name: if i.image_name.is_empty() {
                        i.image_id.clone()
                    } else {
                        i.image_name
                    },
                    id: i.image_id,
                    os: i.os_name,
                    arch: i.architecture,
                    region: Some(home.clone()),
                }));
                if got == 0 || number * 100 >= reply.total_count {
                    break;
                }
                number += 1;
            }
        }
        Ok(Description {
            regions,
            machine_types,
            images,
        })
    }

    fn price(
        cluster: ClusterContext,
        region: String,
        machine_type: String,
        purchase_option: PurchaseOption,
    ) -> Result<HourlyPrice, ProviderError> {
        // Pay-as-you-go is charged by the second.
        let sheet_currency = cluster.setting("currency").unwrap_or("CNY").to_string();
        let billing = Billing {
            currency: &sheet_currency,
            granularity_secs: 1,
            minimum_secs: 0,
        };
        if purchase_option != PurchaseOption::OnDemand {
            return HourlyPrice::from_sheet(&cluster, &machine_type, purchase_option, billing);
        }
        let params = vec![
            ("RegionId".to_string(), region),
            ("ResourceType".to_string(), "instance".to_string()),
            ("InstanceType".to_string(), machine_type.clone()),
            ("PriceUnit".to_string(), "Hour".to_string()),
        ];
        let client = Client::new(&cluster, &cluster.home_region()?)?;
        let reply = match client.call("DescribePrice", &params) {
            Ok(reply) => reply,
            // An endpoint without DescribePrice: the cluster's sheet.
            Err(e) if e.kind == ErrorKind::Unsupported => {
                return HourlyPrice::from_sheet(&cluster, &machine_type, purchase_option, billing);
            }
            Err(e) => return Err(e),
        };
        let price = &reply["PriceInfo"]["Price"];
        // The number's digits as ECS wrote them, read exactly (never through a float sum).
        let text = match &price["TradePrice"] {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            _ => {
                return Err(ProviderError::new(
                    ErrorKind::Other,
                    "DescribePrice answered no TradePrice",
                ));
            }
        };
        let micros_per_hour = micros(&text).ok_or_else(|| {
            ProviderError::new(ErrorKind::Other, format!("price {text:?} is not a decimal"))
        })?;
        Ok(HourlyPrice {
            currency: price["Currency"].as_str().unwrap_or("CNY").to_string(),
            micros_per_hour,
            purchase_option,
            granularity_secs: 1,
            minimum_secs: 0,
            effective_from: None,
        })
    }

    fn create(cluster: ClusterContext, spec: MachineSpec) -> Result<Machine, ProviderError> {
        if spec.ssh_public_key.is_some() {
            return Err(ProviderError::new(
                ErrorKind::Unsupported,
                "ECS takes a key pair (key_pair), not a public key; import the key as a key pair first",
            ));
        }
        let (vswitch, zone) = vswitch_for(&cluster, &spec)?;
        let groups = if spec.security_groups.is_empty() {
            cluster.list_setting("security-group")
        } else {
            spec.security_groups.clone()
        };
        let client = Client::new(&cluster, &spec.region)?;
        let mut params = Params::new();
        param(&mut params, "RegionId", spec.region.clone());
        param(&mut params, "ImageId", spec.image.clone());
        param(&mut params, "InstanceType", spec.machine_type.clone());
        param(&mut params, "InstanceName", spec.name.clone());
        param(&mut params, "InstanceChargeType", "PostPaid");
        param(&mut params, "Amount", "1");
        param(&mut params, "ClientToken", spec.client_token.clone());
        param(&mut params, "VSwitchId", vswitch);
        if let Some(zone) = &zone {
            param(&mut params, "ZoneId", zone.clone());
        }
        for (i, group) in groups.iter().enumerate() {
            param(
                &mut params,
                format!("SecurityGroupIds.{}", i + 1),
                group.clone(),
            );
        }
        if let Some(key) = &spec.key_pair {
            param(&mut params, "KeyPairName", key.clone());
        }
        if let Some(data) = &spec.user_data {
            if data.len() > USER_DATA_LIMIT {
                return Err(ProviderError::invalid(format!(
                    "user data is {} bytes; ECS takes at most {USER_DATA_LIMIT}",
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
            let prefix = if i == 0 {
                "SystemDisk".to_string()
            } else {
                format!("DataDisk.{i}")
            };
            param(
                &mut params,
                format!("{prefix}.Size"),
                disk.size_gib.to_string(),
            );
            if let Some(kind) = &disk.kind {
                param(&mut params, format!("{prefix}.Category"), kind.clone());
            }
            if i > 0 {
                param(&mut params, format!("{prefix}.DeleteWithInstance"), "true");
            }
        }
        tag_params(&mut params, &spec.tags)?;
        let reply: model::RunInstances =
            parse("RunInstances", client.call("RunInstances", &params)?)?;
        let id = reply
            .instance_id_sets
            .ids
            .into_iter()
            .next()
            .ok_or_else(|| ProviderError::new(ErrorKind::Other, "RunInstances answered no id"))?;
        Ok(Machine {
            id,
            name: spec.name.clone(),
            region: spec.region.clone(),
            zone,
            machine_type: spec.machine_type.clone(),
            image: spec.image.clone(),
            state: MachineState::Pending,
            state_reason: None,
            addresses: Vec::new(),
            created_at: None,
            tags: spec.tags.clone(),
            host_key_fingerprints: Vec::new(),
            billing_started_at: None,
        })
    }

    fn get(cluster: ClusterContext, region: String, id: String) -> Result<Machine, ProviderError> {
        Self::get_many(cluster, region, vec![id.clone()])?
            .into_iter()
            .next()
            .ok_or_else(|| {
                ProviderError::not_found(format!("no instance {id}"))
                    .with_code(Some("InvalidInstanceId.NotFound".into()), None)
            })
    }

    fn get_many(
        cluster: ClusterContext,
        region: String,
        ids: Vec<String>,
    ) -> Result<Vec<Machine>, ProviderError> {
        let client = Client::new(&cluster, &region)?;
        let mut found = Vec::new();
        // InstanceIds leaves out an id ECS does not know, instead of failing the call.
        for chunk in ids.chunks(MAX_PAGE as usize) {
            let params = vec![
                (
                    "InstanceIds".to_string(),
                    serde_json::to_string(chunk).expect("a list of strings serializes"),
                ),
                ("MaxResults".to_string(), MAX_PAGE.to_string()),
            ];
            let mut token: Option<String> = None;
            loop {
                let (machines, next) =
                    instance_page(&client, &region, params.clone(), token.as_deref())?;
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
        tag_params(&mut params, &request.tags)?;
        param(
            &mut params,
            "MaxResults",
            request.page_size.clamp(1, MAX_PAGE).to_string(),
        );
        let (machines, next) = instance_page(&client, region, params, listing.inner())?;
        Ok(listing.answer(machines, next))
    }

    fn start(cluster: ClusterContext, region: String, id: String) -> Result<(), ProviderError> {
        match instance_action(&cluster, &region, "StartInstance", &id, &[]) {
            Err(e) if e.kind == ErrorKind::Conflict => already(
                &cluster,
                &region,
                &id,
                [MachineState::Running, MachineState::Pending],
                e,
            ),
            other => other,
        }
    }

    fn stop(cluster: ClusterContext, region: String, id: String) -> Result<(), ProviderError> {
        match instance_action(&cluster, &region, "StopInstance", &id, &[]) {
            Err(e) if e.kind == ErrorKind::Conflict => already(
                &cluster,
                &region,
                &id,
                [MachineState::Stopped, MachineState::Stopping],
                e,
            ),
            other => other,
        }
    }

    fn delete(cluster: ClusterContext, region: String, id: String) -> Result<(), ProviderError> {
        // Retiring a machine releases it whatever it runs: ECS refuses to release a
        // running instance unless forced (it is then stopped first).
        match instance_action(
            &cluster,
            &region,
            "DeleteInstance",
            &id,
            &[("Force", "true")],
        ) {
            // Gone already: a delete is done when the machine is.
            Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

export_provider!(Ecs);
