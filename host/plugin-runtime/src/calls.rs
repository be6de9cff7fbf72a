//! Typed calls of what berth itself calls (`info`, a strategy's `plan`), whatever package
//! version the plugin was built for, and `invoke`, which calls any exported function with
//! JSON in and out in the WIT's terms (for `berth plugin call` and the admin API).

use serde_json::Value;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Type, Val};

use crate::error::CallError;
use crate::plugin::{Plugin, WorldPre};
use crate::runtime::Runtime;
use crate::world::Kind;
use crate::{latest, v0_1_0, v0_2_0};

impl Runtime {
    /// The plugin's name, version and description, asked afresh.
    pub async fn info(&self, plugin: &Plugin) -> Result<latest::types::PluginInfo, CallError> {
        self.call_raw(plugin, "info", false, |pre, store| {
            Box::pin(pre.info(store))
        })
        .await
    }

    /// A replication plan, in the newest package version's terms whatever version the
    /// plugin was built for. The outer error is the call's; the inner one is the plugin's
    /// answer that it cannot plan this request.
    pub async fn plan_replication(
        &self,
        plugin: &Plugin,
        request: latest::strategy::PlanRequest,
    ) -> Result<Result<latest::strategy::ReplicationPlan, latest::strategy::PlanError>, CallError>
    {
        expect_kind(plugin, Kind::ReplicationStrategy, "plan")?;
        self.call_raw(plugin, "plan", false, move |pre, store| {
            Box::pin(async move {
                match pre {
                    WorldPre::Strategy030(pre) => {
                        let world = pre.instantiate_async(&mut *store).await?;
                        world
                            .berth_plugin_strategy()
                            .call_plan(&mut *store, &request)
                            .await
                    }
                    // The strategy interface did not change since 0.1.0: the same records
                    // under another version's types.
                    WorldPre::Strategy020(pre) => {
                        let request: v0_2_0::strategy::PlanRequest = across_versions(&request)?;
                        let world = pre.instantiate_async(&mut *store).await?;
                        let plan = world
                            .berth_plugin_strategy()
                            .call_plan(&mut *store, &request)
                            .await?;
                        Ok(match plan {
                            Ok(plan) => Ok(across_versions(&plan)?),
                            Err(error) => Err(across_versions(&error)?),
                        })
                    }
                    WorldPre::Strategy010(pre) => {
                        let request: v0_1_0::strategy::PlanRequest = across_versions(&request)?;
                        let world = pre.instantiate_async(&mut *store).await?;
                        let plan = world
                            .berth_plugin_strategy()
                            .call_plan(&mut *store, &request)
                            .await?;
                        Ok(match plan {
                            Ok(plan) => Ok(across_versions(&plan)?),
                            Err(error) => Err(across_versions(&error)?),
                        })
                    }
                    _ => unreachable!("the kind was checked"),
                }
            })
        })
        .await
    }

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
        if !functions(kind, &plugin.inspection().world_version).contains(&function) {
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
            .call_raw(plugin, function, false, move |pre, store| {
                Box::pin(async move {
                    let instance = pre.instance_pre().instantiate_async(&mut *store).await?;
                    let func = instance
                        .get_func(&mut *store, index)
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

/// The functions `invoke` knows for each kind, in package `version`.
pub fn functions(kind: Kind, version: &str) -> &'static [&'static str] {
    match kind {
        // `get-many` is new in 0.3.0.
        Kind::CloudProvider
            if version == crate::v0_1_0::VERSION || version == crate::v0_2_0::VERSION =>
        {
            &[
                "info", "describe", "price", "create", "get", "list", "start", "stop", "delete",
            ]
        }
        Kind::CloudProvider => &[
            "info", "describe", "price", "create", "get", "get-many", "list", "start", "stop",
            "delete",
        ],
        Kind::ReplicationStrategy => &["info", "plan"],
        Kind::HostInit => &["info", "parameters", "plan", "drift"],
    }
}

/// A value of one package version's bindings as the same record of another's: both derive
/// serde from the same WIT shapes.
pub(crate) fn across_versions<A: serde::Serialize, B: serde::de::DeserializeOwned>(
    value: &A,
) -> wasmtime::Result<B> {
    Ok(serde_json::from_value(serde_json::to_value(value)?)?)
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
