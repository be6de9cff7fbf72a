//! One typed method per exported function of every world, and `invoke`, which calls any
//! of them with JSON in and out (for `berth plugin call` and the admin API).

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::CallError;
use crate::plugin::{Plugin, WorldInstance};
use crate::runtime::Runtime;
use crate::v0_1_0::{init_step, provider, strategy, types};
use crate::world::Kind;

/// Generates a typed method that checks the plugin's kind, then calls one export.
macro_rules! typed_call {
    ($(#[$doc:meta])* $method:ident, $kind:ident, $variant:ident, $accessor:ident, $export:ident,
     ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        $(#[$doc])*
        pub async fn $method(&self, plugin: &Plugin, $($arg: $ty),*) -> Result<$ret, CallError> {
            // Errors name the WIT function (`plan`), which is what plugin authors know.
            let function = &stringify!($export)["call_".len()..];
            expect_kind(plugin, Kind::$kind, function)?;
            self.call(plugin, function, move |instance, store| {
                Box::pin(async move {
                    let WorldInstance::$variant(world) = instance else { unreachable!("kind checked") };
                    world.$accessor().$export(&mut *store, $(&$arg),*).await
                })
            })
            .await
        }
    };
}

impl Runtime {
    /// The plugin's name, version and description, asked afresh.
    pub async fn info(&self, plugin: &Plugin) -> Result<types::PluginInfo, CallError> {
        self.call(plugin, "info", |instance, store| {
            Box::pin(async move { instance.info(store).await })
        })
        .await
    }

    typed_call!(
        /// Regions, machine types and images.
        describe, CloudProvider, Provider, berth_plugin_provider, call_describe,
        () -> Result<provider::Description, provider::ProviderError>);
    typed_call!(
        /// The hourly price of a machine type in a region.
        price, CloudProvider, Provider, berth_plugin_provider, call_price,
        (region: String, machine_type: String) -> Result<provider::HourlyPrice, provider::ProviderError>);
    typed_call!(
        /// Creates a machine; idempotent by the spec's client token.
        create_machine, CloudProvider, Provider, berth_plugin_provider, call_create,
        (spec: provider::MachineSpec) -> Result<provider::Machine, provider::ProviderError>);
    typed_call!(
        /// One machine.
        get_machine, CloudProvider, Provider, berth_plugin_provider, call_get,
        (region: String, id: String) -> Result<provider::Machine, provider::ProviderError>);
    /// Machines in one region or all.
    pub async fn list_machines(
        &self,
        plugin: &Plugin,
        region: Option<String>,
    ) -> Result<Result<Vec<provider::Machine>, provider::ProviderError>, CallError> {
        expect_kind(plugin, Kind::CloudProvider, "list")?;
        self.call(plugin, "list", move |instance, store| {
            Box::pin(async move {
                let WorldInstance::Provider(world) = instance else {
                    unreachable!("kind checked")
                };
                world
                    .berth_plugin_provider()
                    .call_list(&mut *store, region.as_deref())
                    .await
            })
        })
        .await
    }
    typed_call!(
        /// Starts a stopped machine.
        start_machine, CloudProvider, Provider, berth_plugin_provider, call_start,
        (region: String, id: String) -> Result<(), provider::ProviderError>);
    typed_call!(
        /// Stops a running machine.
        stop_machine, CloudProvider, Provider, berth_plugin_provider, call_stop,
        (region: String, id: String) -> Result<(), provider::ProviderError>);
    typed_call!(
        /// Deletes (terminates) a machine.
        delete_machine, CloudProvider, Provider, berth_plugin_provider, call_delete,
        (region: String, id: String) -> Result<(), provider::ProviderError>);
    typed_call!(
        /// A replication plan.
        plan_replication, ReplicationStrategy, Strategy, berth_plugin_strategy, call_plan,
        (request: strategy::PlanRequest) -> Result<strategy::ReplicationPlan, strategy::PlanError>);
    typed_call!(
        /// The parameters a host-init step takes.
        init_parameters, HostInit, Init, berth_plugin_init_step, call_parameters,
        () -> Vec<init_step::Parameter>);
    typed_call!(
        /// The actions that bring a host to the step's desired state.
        init_plan, HostInit, Init, berth_plugin_init_step, call_plan,
        (facts: init_step::Facts, params: Vec<(String, String)>)
            -> Result<Vec<init_step::Action>, init_step::InitError>);
    typed_call!(
        /// What differs between the host and the step's desired state.
        init_drift, HostInit, Init, berth_plugin_init_step, call_drift,
        (facts: init_step::Facts, params: Vec<(String, String)>)
            -> Result<Vec<init_step::DriftItem>, init_step::InitError>);

    /// Calls `function` with arguments from a JSON object and returns the result as
    /// JSON. A WIT `result` comes back as `{"ok": …}` or `{"error": …}`.
    pub async fn invoke(
        &self,
        plugin: &Plugin,
        function: &str,
        input: Value,
    ) -> Result<Value, CallError> {
        let bad = |message: String| CallError::BadInput {
            plugin: plugin.name().to_string(),
            function: function.to_string(),
            message,
        };
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct RegionId {
            region: String,
            id: String,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Price {
            region: String,
            machine_type: String,
        }
        #[derive(Deserialize, Default)]
        #[serde(deny_unknown_fields, default)]
        struct List {
            region: Option<String>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct FactsParams {
            facts: init_step::Facts,
            #[serde(default)]
            params: Vec<(String, String)>,
        }
        fn parse<T: DeserializeOwned>(input: Value) -> Result<T, String> {
            serde_json::from_value(input).map_err(|e| e.to_string())
        }
        let input = if input.is_null() {
            Value::Object(Default::default())
        } else {
            input
        };
        match (plugin.kind(), function) {
            (_, "info") => json(self.info(plugin).await?),
            (Kind::CloudProvider, "describe") => json_result(self.describe(plugin).await?),
            (Kind::CloudProvider, "price") => {
                let a: Price = parse(input).map_err(bad)?;
                json_result(self.price(plugin, a.region, a.machine_type).await?)
            }
            (Kind::CloudProvider, "create") => {
                let spec = parse(input).map_err(bad)?;
                json_result(self.create_machine(plugin, spec).await?)
            }
            (Kind::CloudProvider, "get") => {
                let a: RegionId = parse(input).map_err(bad)?;
                json_result(self.get_machine(plugin, a.region, a.id).await?)
            }
            (Kind::CloudProvider, "list") => {
                let a: List = parse(input).map_err(bad)?;
                json_result(self.list_machines(plugin, a.region).await?)
            }
            (Kind::CloudProvider, "start" | "stop" | "delete") => {
                let a: RegionId = parse(input).map_err(bad)?;
                let result = match function {
                    "start" => self.start_machine(plugin, a.region, a.id).await?,
                    "stop" => self.stop_machine(plugin, a.region, a.id).await?,
                    _ => self.delete_machine(plugin, a.region, a.id).await?,
                };
                json_result(result)
            }
            (Kind::ReplicationStrategy, "plan") => {
                let request = parse(input).map_err(bad)?;
                json_result(self.plan_replication(plugin, request).await?)
            }
            (Kind::HostInit, "parameters") => json(self.init_parameters(plugin).await?),
            (Kind::HostInit, "plan") => {
                let a: FactsParams = parse(input).map_err(bad)?;
                json_result(self.init_plan(plugin, a.facts, a.params).await?)
            }
            (Kind::HostInit, "drift") => {
                let a: FactsParams = parse(input).map_err(bad)?;
                json_result(self.init_drift(plugin, a.facts, a.params).await?)
            }
            (kind, _) => Err(CallError::NoSuchFunction {
                plugin: plugin.name().to_string(),
                function: function.to_string(),
                kind,
            }),
        }
    }
}

/// The functions `invoke` knows for each kind.
pub fn functions(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::CloudProvider => &[
            "info", "describe", "price", "create", "get", "list", "start", "stop", "delete",
        ],
        Kind::ReplicationStrategy => &["info", "plan"],
        Kind::HostInit => &["info", "parameters", "plan", "drift"],
    }
}

fn expect_kind(plugin: &Plugin, kind: Kind, function: &str) -> Result<(), CallError> {
    if plugin.kind() == kind {
        Ok(())
    } else {
        Err(CallError::NoSuchFunction {
            plugin: plugin.name().to_string(),
            function: function.to_string(),
            kind: plugin.kind(),
        })
    }
}

fn json<T: serde::Serialize>(value: T) -> Result<Value, CallError> {
    Ok(serde_json::to_value(value).expect("plugin types serialize"))
}

fn json_result<T: serde::Serialize, E: serde::Serialize>(
    result: Result<T, E>,
) -> Result<Value, CallError> {
    Ok(match result {
        Ok(value) => serde_json::json!({ "ok": value }),
        Err(error) => serde_json::json!({ "error": error }),
    })
}
