//! Cloud providers in berth's own terms: the domain types the scheduler calls
//! `cloud-provider` plugins with, and the one typed call that converts them to and from
//! whichever package version a plugin was built for. No version's bindings leave this
//! module, so the scheduler never changes when a new package version appears.
//!
//! Plugins built for 0.1.0 and 0.2.0 know no cluster context, paging, tag filters or
//! `get-many`: the host answers those for them (one page, filtered here; one `get` per
//! id), and refuses a spec that asks for what they cannot take rather than dropping it.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::calls::across_versions;
use crate::error::CallError;
use crate::plugin::{Plugin, WorldPre};
use crate::runtime::Runtime;
use crate::state::CallScope;
use crate::world::Kind;
use crate::{v0_1_0, v0_2_0, v0_3_0};

/// A point in wall-clock time: seconds and nanoseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Datetime {
    pub seconds: u64,
    pub nanoseconds: u32,
}

/// Which cluster a call is about (see `cluster-context` in the WIT).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterContext {
    pub name: String,
    pub endpoint: Option<String>,
    pub regions: Vec<String>,
    /// Settings, a string value as it is and any other as JSON text.
    pub settings: Vec<(String, String)>,
    /// The names of the credential values the call may read.
    pub credentials: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Zone {
    pub id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Region {
    pub id: String,
    pub name: String,
    pub zones: Vec<Zone>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineType {
    pub id: String,
    pub cpus: u32,
    pub memory_mib: u64,
    pub gpus: u32,
    /// Regions that offer it; empty means every region.
    pub regions: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    pub id: String,
    pub name: String,
    pub os: String,
    pub arch: String,
    pub region: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Description {
    pub regions: Vec<Region>,
    pub machine_types: Vec<MachineType>,
    pub images: Vec<Image>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PurchaseOption {
    OnDemand,
    Spot,
    Prepaid,
}

/// An hourly price as an exact decimal (`micros_per_hour` millionths of `currency`), and
/// how the provider bills it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    pub currency: String,
    pub micros_per_hour: u64,
    pub purchase_option: PurchaseOption,
    pub granularity_secs: u32,
    pub minimum_secs: u32,
    pub effective_from: Option<Datetime>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    pub size_gib: u32,
    pub kind: Option<String>,
    pub device: Option<String>,
}

/// What to create (see `machine-spec` in the WIT).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineSpec {
    pub client_token: String,
    pub name: String,
    pub region: String,
    pub zone: Option<String>,
    pub machine_type: String,
    pub image: String,
    pub network: Option<String>,
    pub subnet: Option<String>,
    pub security_groups: Vec<String>,
    pub disks: Vec<Disk>,
    pub key_pair: Option<String>,
    pub ssh_public_key: Option<String>,
    pub tags: Vec<(String, String)>,
    /// Raw bytes; the plugin encodes them as its API wants.
    pub user_data: Option<Vec<u8>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MachineState {
    Pending,
    Running,
    Stopping,
    Stopped,
    Terminating,
    Terminated,
    Error,
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AddressKind {
    Private,
    Public,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub kind: AddressKind,
    pub ip: String,
}

/// A machine as its provider reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    pub id: String,
    pub name: String,
    pub region: String,
    pub zone: Option<String>,
    pub machine_type: String,
    pub image: String,
    pub state: MachineState,
    #[serde(default)]
    pub state_reason: Option<String>,
    pub addresses: Vec<Address>,
    pub created_at: Option<Datetime>,
    pub tags: Vec<(String, String)>,
    #[serde(default)]
    pub host_key_fingerprints: Vec<String>,
    #[serde(default)]
    pub billing_started_at: Option<Datetime>,
}

impl Machine {
    /// The value of tag `key`, if it carries one.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRequest {
    pub region: Option<String>,
    /// Only machines with every one of these tags; an empty value matches any value.
    pub tags: Vec<(String, String)>,
    pub page_token: Option<String>,
    pub page_size: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachinePage {
    pub machines: Vec<Machine>,
    pub next_page_token: Option<String>,
}

/// What went wrong at the provider, as the host must treat it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorKind {
    NotFound,
    Capacity,
    Quota,
    Conflict,
    AlreadyExists,
    Throttled,
    Transient,
    Auth,
    NotGranted,
    Invalid,
    Unsupported,
    Other,
}

impl ErrorKind {
    /// The WIT's name of the kind (`not-found`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not-found",
            ErrorKind::Capacity => "capacity",
            ErrorKind::Quota => "quota",
            ErrorKind::Conflict => "conflict",
            ErrorKind::AlreadyExists => "already-exists",
            ErrorKind::Throttled => "throttled",
            ErrorKind::Transient => "transient",
            ErrorKind::Auth => "auth",
            ErrorKind::NotGranted => "not-granted",
            ErrorKind::Invalid => "invalid",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Other => "other",
        }
    }
}

/// A provider's answer that it could not do what was asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderError {
    pub kind: ErrorKind,
    pub message: String,
    pub code: Option<String>,
    pub request_id: Option<String>,
    pub retry_after_ms: Option<u32>,
}

impl ProviderError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ProviderError {
            kind,
            message: message.into(),
            code: None,
            request_id: None,
            retry_after_ms: None,
        }
    }
}

impl std::fmt::Display for ProviderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The message is the plugin's text: escaped, so it cannot forge lines.
        write!(
            f,
            "{}: {}",
            self.kind.as_str(),
            crate::log::escape(&self.message)
        )?;
        if let Some(code) = &self.code {
            write!(f, " (code {})", crate::log::escape(code))?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " (request {})", crate::log::escape(id))?;
        }
        Ok(())
    }
}

/// Why a provider call did not give its answer: the provider said no, or the call itself
/// failed (a limit, a trap). [`ProviderFailure::retryable`] is the one place that decides
/// whether trying again can help, so the scheduler never guesses.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ProviderFailure {
    #[error("{0}")]
    Provider(ProviderError),
    #[error(transparent)]
    Call(#[from] CallError),
}

impl ProviderFailure {
    /// Whether the same call may succeed later: throttling and transient failures at the
    /// provider, and a call that ran out of wall time (a slow cloud) or failed in the
    /// host. A trap, a CPU or memory limit, or any other answer of the provider would
    /// fail the same way again.
    pub fn retryable(&self) -> bool {
        match self {
            ProviderFailure::Provider(e) => {
                matches!(e.kind, ErrorKind::Throttled | ErrorKind::Transient)
            }
            ProviderFailure::Call(e) => {
                matches!(e, CallError::WallTime { .. } | CallError::Host { .. })
            }
        }
    }

    /// How long the provider asked to wait before the next try, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderFailure::Provider(e) => e
                .retry_after_ms
                .map(|ms| Duration::from_millis(u64::from(ms))),
            ProviderFailure::Call(_) => None,
        }
    }

    /// The provider's error kind; none when the call itself failed.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            ProviderFailure::Provider(e) => Some(e.kind),
            ProviderFailure::Call(_) => None,
        }
    }
}

/// Which cluster a provider call is about, and what the call alone may reach (the
/// cluster's endpoint and credentials).
#[derive(Clone, Debug)]
pub struct Target {
    pub cluster: ClusterContext,
    pub scope: Arc<CallScope>,
}

/// One provider function and its arguments.
#[derive(Clone, Debug)]
enum Call {
    Describe,
    Price {
        region: String,
        machine_type: String,
        purchase_option: PurchaseOption,
    },
    Create(Box<MachineSpec>),
    Get {
        region: String,
        id: String,
    },
    GetMany {
        region: String,
        ids: Vec<String>,
    },
    List(ListRequest),
    Start {
        region: String,
        id: String,
    },
    Stop {
        region: String,
        id: String,
    },
    Delete {
        region: String,
        id: String,
    },
}

impl Call {
    fn function(&self) -> &'static str {
        match self {
            Call::Describe => "describe",
            Call::Price { .. } => "price",
            Call::Create(_) => "create",
            Call::Get { .. } => "get",
            Call::GetMany { .. } => "get-many",
            Call::List(_) => "list",
            Call::Start { .. } => "start",
            Call::Stop { .. } => "stop",
            Call::Delete { .. } => "delete",
        }
    }
}

/// What a provider function answered.
enum Answer {
    Description(Description),
    Price(Price),
    Machine(Box<Machine>),
    Machines(Vec<Machine>),
    Page(MachinePage),
    Done,
}

type Answered = Result<Answer, ProviderError>;

/// One call to a 0.1.0 or 0.2.0 provider (`$v`), answered in the current terms.
macro_rules! legacy_call {
    ($v:ident, $p:expr, $store:expr, $call:expr, $version:expr) => {{
        let p = $p;
        let s = &mut *$store;
        let legacy = |r: Result<Answer, $v::provider::ProviderError>| -> Answered {
            r.map_err(|e| legacy_error(&e))
        };
        let machine =
            |m: $v::provider::Machine| -> wasmtime::Result<Machine> { across_versions(&m) };
        let answered: Answered = match $call {
            Call::Describe => match p.call_describe(s).await? {
                Ok(d) => Ok(Answer::Description(across_versions(&d)?)),
                Err(e) => Err(legacy_error(&e)),
            },
            Call::Price {
                region,
                machine_type,
                purchase_option,
            } => match p.call_price(s, &region, &machine_type).await? {
                // These versions price on-demand use by the hour, and nothing else.
                Ok(price) if purchase_option == PurchaseOption::OnDemand => {
                    Ok(Answer::Price(Price {
                        currency: price.currency,
                        micros_per_hour: price.micros_per_hour,
                        purchase_option,
                        granularity_secs: 3600,
                        minimum_secs: 0,
                        effective_from: None,
                    }))
                }
                Ok(_) => Err(ProviderError::new(
                    ErrorKind::Unsupported,
                    format!(
                        "the plugin is built for berth:plugin@{}, which prices on-demand use only",
                        $version
                    ),
                )),
                Err(e) => Err(legacy_error(&e)),
            },
            Call::Create(spec) => match legacy_spec(&spec, &$version) {
                Err(e) => Err(e),
                Ok(old) => {
                    let old: $v::provider::MachineSpec = serde_json::from_value(old)?;
                    match p.call_create(s, &old).await? {
                        Ok(m) => Ok(Answer::Machine(Box::new(machine(m)?))),
                        Err(e) => Err(legacy_error(&e)),
                    }
                }
            },
            Call::Get { region, id } => match p.call_get(s, &region, &id).await? {
                Ok(m) => Ok(Answer::Machine(Box::new(machine(m)?))),
                Err(e) => Err(legacy_error(&e)),
            },
            Call::GetMany { region, ids } => {
                let mut found = Vec::new();
                let mut failed = None;
                for id in ids {
                    match p.call_get(&mut *s, &region, &id).await? {
                        Ok(m) => found.push(machine(m)?),
                        Err(e) => {
                            let e = legacy_error(&e);
                            if e.kind != ErrorKind::NotFound {
                                failed = Some(e);
                                break;
                            }
                        }
                    }
                }
                match failed {
                    Some(e) => Err(e),
                    None => Ok(Answer::Machines(found)),
                }
            }
            Call::List(request) => {
                if request.page_token.is_some() {
                    // Everything came on the first page.
                    Ok(Answer::Page(MachinePage::default()))
                } else {
                    match p.call_list(s, request.region.as_deref()).await? {
                        Ok(all) => {
                            let mut machines = Vec::with_capacity(all.len());
                            for m in all {
                                let m = machine(m)?;
                                if has_tags(&m, &request.tags) {
                                    machines.push(m);
                                }
                            }
                            Ok(Answer::Page(MachinePage {
                                machines,
                                next_page_token: None,
                            }))
                        }
                        Err(e) => Err(legacy_error(&e)),
                    }
                }
            }
            Call::Start { region, id } => {
                legacy(p.call_start(s, &region, &id).await?.map(|()| Answer::Done))
            }
            Call::Stop { region, id } => {
                legacy(p.call_stop(s, &region, &id).await?.map(|()| Answer::Done))
            }
            Call::Delete { region, id } => {
                legacy(p.call_delete(s, &region, &id).await?.map(|()| Answer::Done))
            }
        };
        Ok(answered)
    }};
}

impl Runtime {
    pub async fn provider_describe(
        &self,
        plugin: &Plugin,
        target: &Target,
    ) -> Result<Description, ProviderFailure> {
        match self.provider_call(plugin, target, Call::Describe).await? {
            Answer::Description(d) => Ok(d),
            _ => unreachable!("describe answers a description"),
        }
    }

    pub async fn provider_price(
        &self,
        plugin: &Plugin,
        target: &Target,
        region: &str,
        machine_type: &str,
        purchase_option: PurchaseOption,
    ) -> Result<Price, ProviderFailure> {
        let call = Call::Price {
            region: region.to_owned(),
            machine_type: machine_type.to_owned(),
            purchase_option,
        };
        match self.provider_call(plugin, target, call).await? {
            Answer::Price(p) => Ok(p),
            _ => unreachable!("price answers a price"),
        }
    }

    /// Creates a machine; idempotent by `spec.client_token`.
    pub async fn provider_create(
        &self,
        plugin: &Plugin,
        target: &Target,
        spec: MachineSpec,
    ) -> Result<Machine, ProviderFailure> {
        match self
            .provider_call(plugin, target, Call::Create(Box::new(spec)))
            .await?
        {
            Answer::Machine(m) => Ok(*m),
            _ => unreachable!("create answers a machine"),
        }
    }

    pub async fn provider_get(
        &self,
        plugin: &Plugin,
        target: &Target,
        region: &str,
        id: &str,
    ) -> Result<Machine, ProviderFailure> {
        let call = Call::Get {
            region: region.to_owned(),
            id: id.to_owned(),
        };
        match self.provider_call(plugin, target, call).await? {
            Answer::Machine(m) => Ok(*m),
            _ => unreachable!("get answers a machine"),
        }
    }

    /// The machines of `ids` that exist.
    pub async fn provider_get_many(
        &self,
        plugin: &Plugin,
        target: &Target,
        region: &str,
        ids: Vec<String>,
    ) -> Result<Vec<Machine>, ProviderFailure> {
        let call = Call::GetMany {
            region: region.to_owned(),
            ids,
        };
        match self.provider_call(plugin, target, call).await? {
            Answer::Machines(m) => Ok(m),
            _ => unreachable!("get-many answers machines"),
        }
    }

    /// One page of the machines that match `request`.
    pub async fn provider_list(
        &self,
        plugin: &Plugin,
        target: &Target,
        request: ListRequest,
    ) -> Result<MachinePage, ProviderFailure> {
        match self
            .provider_call(plugin, target, Call::List(request))
            .await?
        {
            Answer::Page(p) => Ok(p),
            _ => unreachable!("list answers a page"),
        }
    }

    /// Starts, stops or deletes machine `id` (`function` is `start`, `stop` or
    /// `delete`); each succeeds when the machine is already where it would take it.
    pub async fn provider_power(
        &self,
        plugin: &Plugin,
        target: &Target,
        function: Power,
        region: &str,
        id: &str,
    ) -> Result<(), ProviderFailure> {
        let (region, id) = (region.to_owned(), id.to_owned());
        let call = match function {
            Power::Start => Call::Start { region, id },
            Power::Stop => Call::Stop { region, id },
            Power::Delete => Call::Delete { region, id },
        };
        match self.provider_call(plugin, target, call).await? {
            Answer::Done => Ok(()),
            _ => unreachable!("start, stop and delete answer nothing"),
        }
    }

    async fn provider_call(
        &self,
        plugin: &Plugin,
        target: &Target,
        call: Call,
    ) -> Result<Answer, ProviderFailure> {
        if plugin.kind() != Kind::CloudProvider {
            return Err(CallError::NoSuchFunction {
                plugin: plugin.name().to_string(),
                function: call.function().to_string(),
                kind: plugin.kind(),
            }
            .into());
        }
        let version = plugin.inspection().world_version.clone();
        let cluster = target.cluster.clone();
        let function = call.function();
        let answered = self
            .call_scoped(
                plugin,
                function,
                false,
                Some(target.scope.clone()),
                move |pre, store| {
                    Box::pin(async move {
                        match pre {
                            WorldPre::Provider030(pre) => {
                                let world = pre.instantiate_async(&mut *store).await?;
                                let p = world.berth_plugin_provider();
                                current_call(p, store, &cluster, call).await
                            }
                            WorldPre::Provider020(pre) => {
                                let world = pre.instantiate_async(&mut *store).await?;
                                let p = world.berth_plugin_provider();
                                legacy_call!(v0_2_0, p, store, call, version)
                            }
                            WorldPre::Provider010(pre) => {
                                let world = pre.instantiate_async(&mut *store).await?;
                                let p = world.berth_plugin_provider();
                                legacy_call!(v0_1_0, p, store, call, version)
                            }
                            _ => unreachable!("the kind was checked"),
                        }
                    })
                },
            )
            .await?;
        answered.map_err(ProviderFailure::Provider)
    }
}

/// Start, stop or delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Power {
    Start,
    Stop,
    Delete,
}

/// A value of one side's types as the same shape of the other's (see
/// [`across_versions`]), for both sides of a result.
fn both<T, U, E>(result: Result<T, E>, wrap: fn(U) -> Answer) -> wasmtime::Result<Answered>
where
    T: Serialize,
    U: serde::de::DeserializeOwned,
    E: Serialize,
{
    Ok(match result {
        Ok(value) => Ok(wrap(across_versions(&value)?)),
        Err(error) => Err(across_versions(&error)?),
    })
}

async fn current_call(
    p: &v0_3_0::provider::Guest,
    store: &mut wasmtime::Store<crate::state::CallState>,
    cluster: &ClusterContext,
    call: Call,
) -> wasmtime::Result<Answered> {
    use v0_3_0::provider as wit;
    let ctx: wit::ClusterContext = across_versions(cluster)?;
    let s = &mut *store;
    match call {
        Call::Describe => both(p.call_describe(s, &ctx).await?, Answer::Description),
        Call::Price {
            region,
            machine_type,
            purchase_option,
        } => {
            let option: wit::PurchaseOption = across_versions(&purchase_option)?;
            both(
                p.call_price(s, &ctx, &region, &machine_type, option)
                    .await?,
                Answer::Price,
            )
        }
        Call::Create(spec) => {
            let spec: wit::MachineSpec = across_versions(&*spec)?;
            both(p.call_create(s, &ctx, &spec).await?, |m| {
                Answer::Machine(Box::new(m))
            })
        }
        Call::Get { region, id } => both(p.call_get(s, &ctx, &region, &id).await?, |m| {
            Answer::Machine(Box::new(m))
        }),
        Call::GetMany { region, ids } => both(
            p.call_get_many(s, &ctx, &region, &ids).await?,
            Answer::Machines,
        ),
        Call::List(request) => {
            let request: wit::ListRequest = across_versions(&request)?;
            both(p.call_list(s, &ctx, &request).await?, Answer::Page)
        }
        Call::Start { region, id } => both(p.call_start(s, &ctx, &region, &id).await?, |()| {
            Answer::Done
        }),
        Call::Stop { region, id } => {
            both(p.call_stop(s, &ctx, &region, &id).await?, |()| Answer::Done)
        }
        Call::Delete { region, id } => both(p.call_delete(s, &ctx, &region, &id).await?, |()| {
            Answer::Done
        }),
    }
}

/// A 0.1.0 or 0.2.0 provider's error (a variant: `{"NotFound": "…"}`, `{"Throttled":
/// {"message": …, "retry_after_ms": …}}`) as a [`ProviderError`].
fn legacy_error<E: Serialize>(error: &E) -> ProviderError {
    let value = serde_json::to_value(error).unwrap_or(Value::Null);
    let (case, payload) = match &value {
        Value::Object(o) if o.len() == 1 => o.iter().next().expect("one entry"),
        _ => return ProviderError::new(ErrorKind::Other, value.to_string()),
    };
    let kind = match case.as_str() {
        "NotFound" => ErrorKind::NotFound,
        "Quota" => ErrorKind::Quota,
        "Throttled" => ErrorKind::Throttled,
        "Auth" => ErrorKind::Auth,
        "NotGranted" => ErrorKind::NotGranted,
        "Invalid" => ErrorKind::Invalid,
        _ => ErrorKind::Other,
    };
    let mut error = ProviderError::new(kind, "");
    match payload {
        Value::String(message) => error.message = message.clone(),
        Value::Object(o) => {
            error.message = o["message"].as_str().unwrap_or_default().to_owned();
            error.retry_after_ms = o
                .get("retry_after_ms")
                .and_then(Value::as_u64)
                .and_then(|ms| u32::try_from(ms).ok());
        }
        other => error.message = other.to_string(),
    }
    error
}

/// A spec as a 0.1.0/0.2.0 provider takes it, or why it cannot: those versions have no
/// network, subnet, security groups, disks or keys, and user data only as text.
fn legacy_spec(spec: &MachineSpec, version: &str) -> Result<Value, ProviderError> {
    let mut unsupported = Vec::new();
    for (set, name) in [
        (spec.network.is_some(), "network"),
        (spec.subnet.is_some(), "subnet"),
        (!spec.security_groups.is_empty(), "security groups"),
        (!spec.disks.is_empty(), "disks"),
        (spec.key_pair.is_some(), "key pair"),
        (spec.ssh_public_key.is_some(), "SSH public key"),
    ] {
        if set {
            unsupported.push(name);
        }
    }
    if !unsupported.is_empty() {
        return Err(ProviderError::new(
            ErrorKind::Unsupported,
            format!(
                "the plugin is built for berth:plugin@{version}, whose create takes no {}; \
                 rebuild it against berth:plugin@0.3.0 or leave them out",
                unsupported.join(", ")
            ),
        ));
    }
    let user_data = match &spec.user_data {
        None => None,
        Some(bytes) => Some(String::from_utf8(bytes.clone()).map_err(|_| {
            ProviderError::new(
                ErrorKind::Unsupported,
                format!(
                    "the plugin is built for berth:plugin@{version}, which takes user data \
                     only as UTF-8 text"
                ),
            )
        })?),
    };
    Ok(json!({
        "client_token": spec.client_token,
        "name": spec.name,
        "region": spec.region,
        "zone": spec.zone,
        "machine_type": spec.machine_type,
        "image": spec.image,
        "tags": spec.tags,
        "user_data": user_data,
    }))
}

/// Whether `machine` carries every tag of `wanted` (an empty value matches any).
pub fn has_tags(machine: &Machine, wanted: &[(String, String)]) -> bool {
    wanted.iter().all(|(key, value)| {
        machine
            .tag(key)
            .is_some_and(|v| value.is_empty() || v == value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_throttling_transient_failures_and_slow_calls_are_retried() {
        for kind in [ErrorKind::Throttled, ErrorKind::Transient] {
            assert!(ProviderFailure::Provider(ProviderError::new(kind, "x")).retryable());
        }
        for kind in [
            ErrorKind::NotFound,
            ErrorKind::Capacity,
            ErrorKind::Quota,
            ErrorKind::Conflict,
            ErrorKind::AlreadyExists,
            ErrorKind::Auth,
            ErrorKind::NotGranted,
            ErrorKind::Invalid,
            ErrorKind::Unsupported,
            ErrorKind::Other,
        ] {
            assert!(!ProviderFailure::Provider(ProviderError::new(kind, "x")).retryable());
        }
        let slow = CallError::WallTime {
            plugin: "p".into(),
            function: "create".into(),
            limit_ms: 1,
        };
        assert!(ProviderFailure::Call(slow).retryable());
        let trap = CallError::Trap {
            plugin: "p".into(),
            function: "create".into(),
            message: "unreachable".into(),
        };
        assert!(!ProviderFailure::Call(trap).retryable());
    }

    #[test]
    fn a_legacy_spec_refuses_what_its_version_cannot_take() {
        let spec = MachineSpec {
            subnet: Some("s-1".into()),
            ..MachineSpec::default()
        };
        let e = legacy_spec(&spec, "0.1.0").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unsupported);
        assert!(e.message.contains("subnet"), "{e}");
        let spec = MachineSpec {
            user_data: Some(vec![0xff, 0xfe]),
            ..MachineSpec::default()
        };
        assert_eq!(
            legacy_spec(&spec, "0.2.0").unwrap_err().kind,
            ErrorKind::Unsupported
        );
        let spec = MachineSpec {
            user_data: Some(b"#!/bin/sh\n".to_vec()),
            ..MachineSpec::default()
        };
        assert_eq!(
            legacy_spec(&spec, "0.2.0").unwrap()["user_data"],
            "#!/bin/sh\n"
        );
    }

    #[test]
    fn legacy_errors_keep_their_kind_message_and_wait() {
        let e =
            legacy_error(&json!({"Throttled": {"message": "slow down", "retry_after_ms": 1500}}));
        assert_eq!(e.kind, ErrorKind::Throttled);
        assert_eq!(e.message, "slow down");
        assert_eq!(e.retry_after_ms, Some(1500));
        let e = legacy_error(&json!({"NotGranted": "http://x"}));
        assert_eq!(e.kind, ErrorKind::NotGranted);
        assert_eq!(legacy_error(&json!({"Quota": "q"})).kind, ErrorKind::Quota);
    }
}
