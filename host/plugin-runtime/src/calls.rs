//! One typed method per exported function of every world, and `invoke`, which calls any
//! of them with JSON in and out in the WIT's terms (for `berth plugin call` and the admin
//! API).

use serde_json::Value;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Type, Val};

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

    /// Calls `function` with arguments from a JSON object keyed by the WIT parameter
    /// names, and returns its result as JSON, all in the WIT's own terms (see
    /// [`crate::json`]): `{"region": "r1", "machine-type": "m5.large"}` in, a WIT `result`
    /// out as `{"ok": …}` or `{"error": {"not-found": "…"}}`.
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
        let kind = plugin.kind();
        if !functions(kind).contains(&function) {
            return Err(CallError::NoSuchFunction {
                plugin: plugin.name().to_string(),
                function: function.to_string(),
                kind,
            });
        }
        let interface = format!(
            "{}/{}@{}",
            crate::world::PACKAGE,
            if function == "info" {
                "meta"
            } else {
                kind.main_export()
            },
            plugin.inspection().world_version
        );
        let component = plugin.inner.pre.instance_pre().component();
        let missing = || {
            bad(format!(
                "the component does not export {interface}#{function}"
            ))
        };
        let (_, iface) = component
            .get_export(None, interface.as_str())
            .ok_or_else(missing)?;
        let (item, index) = component
            .get_export(Some(&iface), function)
            .ok_or_else(missing)?;
        let ComponentItem::ComponentFunc(ty) = item else {
            return Err(missing());
        };
        let input = match input {
            Value::Null => Value::Object(Default::default()),
            Value::Object(object) => Value::Object(object),
            other => {
                return Err(bad(format!(
                    "the input must be an object of the function's parameters, not {other}"
                )));
            }
        };
        let names: Vec<&str> = ty.params().map(|(name, _)| name).collect();
        if let Some(unknown) = input
            .as_object()
            .expect("an object")
            .keys()
            .find(|k| !names.contains(&k.as_str()))
        {
            return Err(bad(format!(
                "{function} has no parameter {unknown:?}; its parameters are {}",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )));
        }
        let mut params = Vec::with_capacity(names.len());
        for (name, param) in ty.params() {
            let value = match (input.get(name), &param) {
                (None, Type::Option(_)) => Value::Null,
                (None, _) => return Err(bad(format!("the parameter {name} is missing"))),
                (Some(v), _) => v.clone(),
            };
            params.push(crate::json::to_val(&value, &param, name).map_err(bad)?);
        }
        let results = ty.results().len();
        let outputs = self
            .call_raw(plugin, function, move |pre, store| {
                Box::pin(async move {
                    let instance = pre.instance_pre().instantiate_async(&mut *store).await?;
                    let func = instance
                        .get_func(&mut *store, &index)
                        .ok_or_else(|| wasmtime::Error::msg("the exported function vanished"))?;
                    let mut outputs = vec![Val::Bool(false); results];
                    func.call_async(&mut *store, &params, &mut outputs).await?;
                    Ok(outputs)
                })
            })
            .await?;
        Ok(match outputs.as_slice() {
            [] => Value::Null,
            [one] => crate::json::from_val(one),
            many => Value::Array(many.iter().map(crate::json::from_val).collect()),
        })
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
