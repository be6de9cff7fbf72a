//! Cloud providers in berth's own terms: the domain types the scheduler calls
//! `cloud-provider` plugins with, and the one typed call that converts them to and from
//! whichever package version a plugin was built for. No version's bindings leave this
//! module, so the scheduler never changes when a new package version appears.
//!
//! Plugins built for 0.1.0 and 0.2.0 know no cluster context, paging, tag filters or
//! `get-many`: the host answers those for them (one page, filtered here; one `get` per
//! id), and refuses a spec that asks for what they cannot take rather than dropping it.

mod types;
mod versions;

use std::sync::Arc;

pub use types::*;
use versions::{Answer, Call};

use crate::error::CallError;
use crate::plugin::Plugin;
use crate::runtime::Runtime;
use crate::state::CallScope;
use crate::world::Kind;

/// Which cluster a provider call is about, and what the call alone may reach (the
/// cluster's endpoint and credentials).
#[derive(Clone, Debug)]
pub struct Target {
    pub cluster: ClusterContext,
    pub scope: Arc<CallScope>,
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
                        versions::dispatch(pre, store, &cluster, call, version).await
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
