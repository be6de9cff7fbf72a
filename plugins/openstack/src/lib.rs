//! `openstack`: berth's provider for OpenStack clouds, a WebAssembly component. It signs in
//! through Keystone v3 (`keystone.rs`), finds Nova and Glance in the service catalog, and
//! reads Nova's servers as machines (`nova.rs`); errors by status (`errors.rs`).
//!
//! A cluster of this provider sets:
//! - endpoint: Keystone's v3 URL (`https://keystone.example:5000/v3`); and, since the
//!   catalog's services live elsewhere, the setting `service-endpoints` granting them
//!   (comma-separated URL prefixes, as in the catalog: `https://nova.example:8774/`);
//! - credentials `application-credential-id` and `application-credential-secret`, or
//!   `password` with the settings `username` and `project` (and `user-domain`,
//!   `project-domain`, default `Default`);
//! - regions (catalog region ids); settings `interface` (`public`, default, or
//!   `internal`), `network` (the network id servers join when a create names none; Nova's
//!   `auto` otherwise), `prices` (a price sheet per flavor, see `HourlyPrice::from_sheet`;
//!   Nova has no prices), `currency` (the sheet's, default `USD`).
//!
//! Nova takes no client token, so a create is idempotent by lookup: the server is named
//! after berth's machine id and carries it in its metadata (`berth:client-token`), and a
//! create first looks for a server with that name and metadata.

mod errors;
mod keystone;
mod nova;

use base64::Engine as _;
use berth_plugin_sdk::http::Method;
use berth_plugin_sdk::provider::{
    Billing, ClusterContext, Description, ErrorKind, HourlyPrice, Image, ListRequest, Machine,
    MachinePage, MachineSpec, MachineState, MachineType, Provider, ProviderError, PurchaseOption,
    Region, RegionListing, Zone,
};
use berth_plugin_sdk::{Plugin, PluginInfo, export_provider};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use keystone::Session;

/// The metadata key that makes a create idempotent.
const CLIENT_TOKEN_KEY: &str = "berth:client-token";

/// Nova's most servers per page.
const MAX_PAGE: u32 = 1000;

struct OpenStack;

impl Plugin for OpenStack {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "openstack".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "OpenStack Nova servers, signed in through Keystone v3".into(),
        }
    }
}

/// What is escaped in a path segment or a query value: all but RFC 3986's unreserved
/// characters (a server id's `-` stays as it is).
const ESCAPED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn encode(text: &str) -> String {
    utf8_percent_encode(text, ESCAPED).to_string()
}

/// One page of the project's servers after `marker`: the servers, and the marker of the
/// next page when there is one.
fn server_page(
    session: &mut Session<'_>,
    region: &str,
    extra: &str,
    marker: Option<&str>,
    limit: u32,
) -> Result<(Vec<Machine>, Option<String>), ProviderError> {
    let mut path = format!("/servers/detail?limit={limit}{extra}");
    if let Some(marker) = marker {
        path.push_str(&format!("&marker={}", encode(marker)));
    }
    let page: nova::ServerPage = session
        .compute(Method::Get, &path, None, "listing servers")?
        .json()?;
    let more = page.servers_links.iter().any(|l| l.rel == "next");
    let next = more
        .then(|| page.servers.last().map(|s| s.id.clone()))
        .flatten();
    let machines = page
        .servers
        .into_iter()
        .map(|s| s.into_machine(region))
        .collect();
    Ok((machines, next))
}

/// Every server of the project in `region` whose name matches `name` (a Nova regular
/// expression), page by page.
fn all_servers(
    session: &mut Session<'_>,
    region: &str,
    name: Option<&str>,
) -> Result<Vec<Machine>, ProviderError> {
    let extra = name
        .map(|n| format!("&name={}", encode(n)))
        .unwrap_or_default();
    let mut all = Vec::new();
    let mut marker = None;
    loop {
        let (machines, next) = server_page(session, region, &extra, marker.as_deref(), MAX_PAGE)?;
        all.extend(machines);
        match next {
            Some(next) => marker = Some(next),
            None => return Ok(all),
        }
    }
}

/// Nova's regular expression matching exactly `text`.
fn exactly(text: &str) -> String {
    let mut escaped = String::from("^");
    for c in text.chars() {
        if !c.is_ascii_alphanumeric() && c != '-' && c != '_' {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped.push('$');
    escaped
}

/// The id of flavor `wanted` (its name or its id).
fn flavor_id(session: &mut Session<'_>, wanted: &str) -> Result<String, ProviderError> {
    let flavors: nova::FlavorPage = session
        .compute(Method::Get, "/flavors/detail", None, "listing flavors")?
        .json()?;
    flavors
        .flavors
        .into_iter()
        .find(|f| f.name == wanted || f.id == wanted)
        .map(|f| f.id)
        .ok_or_else(|| ProviderError::invalid(format!("no flavor {wanted}")))
}

/// Answers `Ok` when machine `id` is already in `state` (a start of a running server, a
/// stop of a stopped one), else the conflict itself.
fn already(
    session: &mut Session<'_>,
    region: &str,
    id: &str,
    state: MachineState,
    conflict: ProviderError,
) -> Result<(), ProviderError> {
    let server: nova::ServerBody = session
        .compute(
            Method::Get,
            &format!("/servers/{}", encode(id)),
            None,
            "reading a server",
        )?
        .json()?;
    if server.server.into_machine(region).state == state {
        Ok(())
    } else {
        Err(conflict)
    }
}

fn action(
    cluster: &ClusterContext,
    region: &str,
    id: &str,
    name: &str,
    done: MachineState,
) -> Result<(), ProviderError> {
    let mut session = Session::open(cluster, region)?;
    let body = json!({ name: Value::Null });
    let path = format!("/servers/{}/action", encode(id));
    match session.compute(Method::Post, &path, Some(&body), name) {
        Ok(_) => Ok(()),
        Err(e) if e.kind == ErrorKind::Conflict => already(&mut session, region, id, done, e),
        Err(e) => Err(e),
    }
}

impl Provider for OpenStack {
    fn describe(cluster: ClusterContext) -> Result<Description, ProviderError> {
        let home = cluster.home_region()?;
        let mut regions = Vec::new();
        for region in &cluster.regions {
            let mut session = Session::open(&cluster, region)?;
            let zones: nova::ZoneInfo = session
                .compute(Method::Get, "/os-availability-zone", None, "listing zones")?
                .json()?;
            regions.push(Region {
                id: region.clone(),
                name: region.clone(),
                zones: zones
                    .zones
                    .into_iter()
                    .filter(|z| z.state.available)
                    .map(|z| Zone { id: z.name })
                    .collect(),
            });
        }
        let mut session = Session::open(&cluster, &home)?;
        let flavors: nova::FlavorPage = session
            .compute(Method::Get, "/flavors/detail", None, "listing flavors")?
            .json()?;
        let machine_types = flavors
            .flavors
            .into_iter()
            .map(|f| MachineType {
                id: f.name,
                cpus: f.vcpus,
                memory_mib: f.ram,
                gpus: 0,
                regions: vec![],
            })
            .collect();
        let mut images = Vec::new();
        if let Some(base) = session.image.clone() {
            // Glance's `next` is a path from its root (`/v2/images?marker=…`).
            let mut next = Some("/v2/images?limit=100".to_string());
            while let Some(path) = next.take() {
                let page: nova::ImagePage = session
                    .get(&format!("{base}{path}"), "listing images")?
                    .json()?;
                images.extend(page.images.into_iter().map(|i| Image {
                    name: i.name.unwrap_or_else(|| i.id.clone()),
                    id: i.id,
                    os: i.os_distro.unwrap_or_default(),
                    arch: i.architecture.unwrap_or_default(),
                    region: Some(home.clone()),
                }));
                next = page.next;
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
        _region: String,
        machine_type: String,
        purchase_option: PurchaseOption,
    ) -> Result<HourlyPrice, ProviderError> {
        let currency = cluster.setting("currency").unwrap_or("USD").to_string();
        // A private cloud's sheet charges by the second, with no minimum.
        let billing = Billing {
            currency: &currency,
            granularity_secs: 1,
            minimum_secs: 0,
        };
        HourlyPrice::from_sheet(&cluster, &machine_type, purchase_option, billing)
    }

    fn create(cluster: ClusterContext, spec: MachineSpec) -> Result<Machine, ProviderError> {
        let mut session = Session::open(&cluster, &spec.region)?;
        // No client token in Nova: the server named so, carrying the token, is this create.
        let earlier = all_servers(&mut session, &spec.region, Some(&exactly(&spec.name)))?
            .into_iter()
            .find(|m| {
                m.tag(CLIENT_TOKEN_KEY) == Some(spec.client_token.as_str())
                    && !matches!(
                        m.state,
                        MachineState::Terminating | MachineState::Terminated
                    )
            });
        if let Some(earlier) = earlier {
            return Ok(earlier);
        }
        if spec.ssh_public_key.is_some() {
            return Err(ProviderError::new(
                ErrorKind::Unsupported,
                "Nova takes a key pair (key_pair), not a public key; import the key as a key pair first",
            ));
        }
        if !spec.disks.is_empty() {
            return Err(ProviderError::new(
                ErrorKind::Unsupported,
                "a server's disk is its flavor's; choose a flavor with the disk you need",
            ));
        }
        let flavor = flavor_id(&mut session, &spec.machine_type)?;
        let mut metadata: serde_json::Map<String, Value> = spec
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        metadata.insert(CLIENT_TOKEN_KEY.into(), spec.client_token.clone().into());
        let network = spec
            .network
            .clone()
            .or_else(|| cluster.setting("network").map(str::to_string));
        let mut server = json!({
            "name": spec.name,
            "flavorRef": flavor,
            "imageRef": spec.image,
            "networks": match network {
                Some(id) => json!([{"uuid": id}]),
                None => json!("auto"),
            },
            "metadata": metadata,
        });
        if let Some(zone) = &spec.zone {
            server["availability_zone"] = zone.clone().into();
        }
        if let Some(key) = &spec.key_pair {
            server["key_name"] = key.clone().into();
        }
        if !spec.security_groups.is_empty() {
            server["security_groups"] = spec
                .security_groups
                .iter()
                .map(|g| json!({ "name": g }))
                .collect();
        }
        if let Some(data) = &spec.user_data {
            server["user_data"] = base64::engine::general_purpose::STANDARD
                .encode(data)
                .into();
        }
        let created: Value = session
            .compute(
                Method::Post,
                "/servers",
                Some(&json!({ "server": server })),
                "creating a server",
            )?
            .json()?;
        let id = created["server"]["id"]
            .as_str()
            .ok_or_else(|| ProviderError::new(ErrorKind::Other, "Nova answered no server id"))?;
        Ok(Machine {
            id: id.to_string(),
            name: spec.name.clone(),
            region: spec.region.clone(),
            zone: spec.zone.clone(),
            machine_type: spec.machine_type.clone(),
            image: spec.image.clone(),
            state: MachineState::Pending,
            state_reason: None,
            addresses: Vec::new(),
            created_at: None,
            tags: metadata
                .into_iter()
                .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string()))
                .collect(),
            host_key_fingerprints: Vec::new(),
            billing_started_at: None,
        })
    }

    fn get(cluster: ClusterContext, region: String, id: String) -> Result<Machine, ProviderError> {
        let mut session = Session::open(&cluster, &region)?;
        let server: nova::ServerBody = session
            .compute(
                Method::Get,
                &format!("/servers/{}", encode(&id)),
                None,
                "reading a server",
            )?
            .json()?;
        Ok(server.server.into_machine(&region))
    }

    fn get_many(
        cluster: ClusterContext,
        region: String,
        ids: Vec<String>,
    ) -> Result<Vec<Machine>, ProviderError> {
        let mut session = Session::open(&cluster, &region)?;
        if ids.len() <= 2 {
            let mut found = Vec::new();
            for id in ids {
                let path = format!("/servers/{}", encode(&id));
                match session.compute(Method::Get, &path, None, "reading a server") {
                    Ok(response) => {
                        let server: nova::ServerBody = response.json()?;
                        found.push(server.server.into_machine(&region));
                    }
                    Err(e) if e.kind == ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(found);
        }
        // Nova reads many servers only by listing: one listing, not one read each.
        Ok(all_servers(&mut session, &region, None)?
            .into_iter()
            .filter(|m| ids.contains(&m.id))
            .collect())
    }

    fn list(cluster: ClusterContext, request: ListRequest) -> Result<MachinePage, ProviderError> {
        let Some(listing) = RegionListing::of(&cluster, &request)? else {
            return Ok(MachinePage::empty());
        };
        let region = &listing.region;
        let mut session = Session::open(&cluster, region)?;
        let limit = request.page_size.clamp(1, MAX_PAGE);
        let (machines, next) = server_page(&mut session, region, "", listing.inner(), limit)?;
        // Nova filters by metadata nowhere: the tags are matched here.
        let machines = machines
            .into_iter()
            .filter(|m| {
                request.tags.iter().all(|(key, value)| match m.tag(key) {
                    Some(found) => value.is_empty() || found == value,
                    None => false,
                })
            })
            .collect();
        Ok(listing.answer(machines, next))
    }

    fn start(cluster: ClusterContext, region: String, id: String) -> Result<(), ProviderError> {
        action(&cluster, &region, &id, "os-start", MachineState::Running)
    }

    fn stop(cluster: ClusterContext, region: String, id: String) -> Result<(), ProviderError> {
        action(&cluster, &region, &id, "os-stop", MachineState::Stopped)
    }

    fn delete(cluster: ClusterContext, region: String, id: String) -> Result<(), ProviderError> {
        let mut session = Session::open(&cluster, &region)?;
        let path = format!("/servers/{}", encode(&id));
        match session.compute(Method::Delete, &path, None, "deleting a server") {
            Ok(_) => Ok(()),
            // Gone already: a delete is done when the machine is.
            Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

export_provider!(OpenStack);
