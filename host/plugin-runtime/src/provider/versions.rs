//! Provider calls to each package version: the current one through serde across the
//! same shapes, 0.1.0 and 0.2.0 by hand (one page, filtered here; one `get` per id; a spec
//! they cannot take refused rather than dropped).

use serde::Serialize;
use serde_json::{Value, json};

use super::types::*;
use crate::calls::across_versions;
use crate::plugin::WorldPre;
use crate::{v0_1_0, v0_2_0, v0_3_0};

/// One provider function and its arguments.
#[derive(Clone, Debug)]
pub(super) enum Call {
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
    pub(super) fn function(&self) -> &'static str {
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
pub(super) enum Answer {
    Description(Description),
    Price(Price),
    Machine(Box<Machine>),
    Machines(Vec<Machine>),
    Page(MachinePage),
    Done,
}

pub(super) type Answered = Result<Answer, ProviderError>;

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

/// Runs `call` on a fresh instance of whichever version the plugin was built for.
pub(super) async fn dispatch(
    pre: &WorldPre,
    store: &mut wasmtime::Store<crate::state::CallState>,
    cluster: &ClusterContext,
    call: Call,
    version: String,
) -> wasmtime::Result<Answered> {
    match pre {
        WorldPre::Provider030(pre) => {
            let world = pre.instantiate_async(&mut *store).await?;
            let p = world.berth_plugin_provider();
            current_call(p, store, cluster, call).await
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
