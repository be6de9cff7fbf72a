//! # berth-plugin-sdk
//!
//! Write berth plugins in Rust. A plugin is a WebAssembly component built for one world
//! of the `berth:plugin` WIT package; pick the world with one cargo feature:
//!
//! | feature | world | implement | export with |
//! |---|---|---|---|
//! | `cloud-provider` | creates, lists and retires machines | [`Plugin`] + `provider::Provider` | `export_provider!` |
//! | `replication-strategy` | plans who sends what to whom | [`Plugin`] + `strategy::Strategy` | `export_strategy!` |
//! | `host-init` | turns host facts into actions | [`Plugin`] + `init::InitStep` | `export_init_step!` |
//!
//! Every plugin can log, read the time and read its own configuration through [`host`];
//! cloud providers can also make HTTP requests (only to endpoints an admin granted them)
//! through `http` and read granted secrets through `secrets`. A plugin has nothing else:
//! no files, no environment, no sockets, and WASI's own clocks read zero.
//!
//! ## A complete replication strategy
//!
//! ```ignore
//! use berth_plugin_sdk::strategy::{ReplicationPlan, PlanError, PlanRequest, Strategy, Transfer, Wave};
//! use berth_plugin_sdk::{Plugin, PluginInfo, export_strategy};
//!
//! struct Direct;
//!
//! impl Plugin for Direct {
//!     fn info() -> PluginInfo {
//!         PluginInfo { name: "direct".into(), version: "0.1.0".into(), description: "every target from the first holder".into() }
//!     }
//! }
//!
//! impl Strategy for Direct {
//!     fn plan(request: PlanRequest) -> Result<ReplicationPlan, PlanError> {
//!         let mut transfers = Vec::new();
//!         for placement in &request.present {
//!             let Some(source) = placement.instances.first() else { continue };
//!             for target in &request.targets {
//!                 if !placement.instances.contains(target) {
//!                     transfers.push(Transfer { source: source.clone(), target: target.clone(), artifact: placement.artifact.clone() });
//!                 }
//!             }
//!         }
//!         Ok(ReplicationPlan { waves: vec![Wave { transfers }], limits: vec![] })
//!     }
//! }
//!
//! export_strategy!(Direct);
//! ```
//!
//! ## A complete host-init step
//!
//! ```ignore
//! use berth_plugin_sdk::init::{Action, DriftItem, Facts, InitError, InitStep, Parameter, ParameterKind, Params, ServiceAction};
//! use berth_plugin_sdk::{Plugin, PluginInfo, export_init_step};
//!
//! struct Chrony;
//!
//! impl Plugin for Chrony {
//!     fn info() -> PluginInfo {
//!         PluginInfo { name: "chrony".into(), version: "0.1.0".into(), description: "time sync".into() }
//!     }
//! }
//!
//! impl InitStep for Chrony {
//!     fn parameters() -> Vec<Parameter> {
//!         vec![Parameter { name: "enabled".into(), description: "run chronyd".into(), kind: ParameterKind::Boolean, required: false, default: Some("true".into()) }]
//!     }
//!     fn plan(facts: Facts, params: Params) -> Result<Vec<Action>, InitError> {
//!         let running = facts.services.iter().any(|s| s.name == "chrony" && s.enabled && s.active);
//!         let wanted = params.bool("enabled", true)?;
//!         Ok(if running == wanted { vec![] } else {
//!             vec![Action::Service(ServiceAction { name: "chrony".into(), enabled: wanted, running: wanted })]
//!         })
//!     }
//!     fn drift(facts: Facts, params: Params) -> Result<Vec<DriftItem>, InitError> {
//!         Ok(Self::plan(facts, params)?.into_iter().map(|_| DriftItem {
//!             subject: "service chrony".into(), expected: "running".into(), actual: "not running".into(),
//!         }).collect())
//!     }
//! }
//!
//! export_init_step!(Chrony);
//! ```
//!
//! `plugins/sysctl` is a first-party step built this way.
//!
//! ## A complete cloud provider
//!
//! A provider reaches its cloud only through [`http`](crate) — the cluster's endpoint during
//! calls about that cluster, and endpoints the admin granted — and reads the cluster's
//! credentials through `ClusterContext::credential`; `?` turns HTTP, secret and status
//! failures into a `ProviderError` whose `kind` tells the host whether to retry:
//!
//! ```ignore
//! use berth_plugin_sdk::http::Request;
//! use berth_plugin_sdk::provider::*;
//! use berth_plugin_sdk::{Plugin, PluginInfo, export_provider};
//!
//! struct Pool;
//!
//! impl Plugin for Pool {
//!     fn info() -> PluginInfo {
//!         PluginInfo { name: "pool".into(), version: "0.1.0".into(), description: "a machine pool API".into() }
//!     }
//! }
//!
//! impl Provider for Pool {
//!     fn list(cluster: ClusterContext, request: ListRequest) -> Result<MachinePage, ProviderError> {
//!         // The cluster's endpoint and credentials arrive with each call, for that call.
//!         let base = cluster.endpoint.clone().ok_or_else(|| ProviderError::invalid("the cluster has no endpoint"))?;
//!         let mut http = Request::get(format!("{base}/machines")).bearer(&cluster.credential("token")?);
//!         if let Some(page) = &request.page_token {
//!             http = http.query(&[("after", page)]);
//!         }
//!         let reply: MyPage = http.send()?.error_for_status()?.json()?;
//!         Ok(MachinePage { machines: reply.machines.into_iter().map(Machine::from).collect(), next_page_token: reply.next })
//!     }
//!     // describe, price, create (idempotent by spec.client_token), get, start, stop, delete …
//! }
//!
//! export_provider!(Pool);
//! ```
//!
//! `plugins/testing/inventory` is a complete provider of this shape, exercised end to end
//! by the host's tests.
//!
//! ## One world per build
//!
//! The world is a cargo feature, and cargo unifies a dependency's features across
//! everything one invocation builds: plugins of two worlds in one workspace cannot be
//! built by one `cargo build --workspace` (the SDK stops it with an explanation). Build
//! each with `-p <plugin>`, as berth's own build script does for its built-ins, or keep
//! plugins of different worlds in separate workspaces. Plugins of the same world share
//! one build freely.
//!
//! Build with `cargo build --release --target wasm32-wasip2` and the release profile of
//! `examples/plugin-walkthrough/Cargo.toml` (size-optimised, LTO, stripped, panic=abort),
//! then `berth plugin load target/wasm32-wasip2/release/<name>.wasm`.

#[cfg(any(
    all(feature = "cloud-provider", feature = "replication-strategy"),
    all(feature = "cloud-provider", feature = "host-init"),
    all(feature = "replication-strategy", feature = "host-init"),
))]
compile_error!(
    "berth-plugin-sdk is built with more than one world feature. A plugin picks exactly one \
     (cloud-provider, replication-strategy or host-init); if yours does, cargo unified the \
     features of plugins of different worlds built in one invocation (a workspace build). \
     Build each plugin on its own: `cargo build --release --target wasm32-wasip2 -p <plugin>` \
     (or keep plugins of different worlds in separate workspaces)."
);

#[cfg(not(any(
    feature = "cloud-provider",
    feature = "replication-strategy",
    feature = "host-init"
)))]
compile_error!(
    "enable one world feature: berth-plugin-sdk = { ..., features = [\"replication-strategy\"] } \
     (or cloud-provider, host-init)"
);

// The generated code and the export macros name the SDK by its crate name.
extern crate self as berth_plugin_sdk;

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

/// Generated bindings for the chosen world. Use the re-exports instead; these are public
/// because the export macros expand in the plugin's crate.
#[doc(hidden)]
pub mod bindings {
    #[cfg(feature = "cloud-provider")]
    wit_bindgen::generate!({
        path: "../../wit/v0.3.0",
        world: "cloud-provider",
        pub_export_macro: true,
        export_macro_name: "__export_world",
        default_bindings_module: "berth_plugin_sdk::bindings",
        runtime_path: "berth_plugin_sdk::__wit_bindgen::rt",
        generate_all,
    });
    #[cfg(feature = "replication-strategy")]
    wit_bindgen::generate!({
        path: "../../wit/v0.3.0",
        world: "replication-strategy",
        pub_export_macro: true,
        export_macro_name: "__export_world",
        default_bindings_module: "berth_plugin_sdk::bindings",
        runtime_path: "berth_plugin_sdk::__wit_bindgen::rt",
        generate_all,
    });
    #[cfg(feature = "host-init")]
    wit_bindgen::generate!({
        path: "../../wit/v0.3.0",
        world: "host-init",
        pub_export_macro: true,
        export_macro_name: "__export_world",
        default_bindings_module: "berth_plugin_sdk::bindings",
        runtime_path: "berth_plugin_sdk::__wit_bindgen::rt",
        generate_all,
    });
}

pub use bindings::berth::plugin::types::{Datetime, LogLevel, PluginInfo};

/// What every plugin says about itself. `name` is how admins address the plugin:
/// lowercase letters and digits, separated by `.`, `_` or `-`.
pub trait Plugin {
    fn info() -> PluginInfo;
}

pub mod host;
pub mod time;

#[cfg(feature = "cloud-provider")]
pub mod http;
#[cfg(feature = "cloud-provider")]
pub mod provider;
#[cfg(feature = "cloud-provider")]
pub mod secrets;

#[cfg(feature = "replication-strategy")]
pub mod strategy;

#[cfg(feature = "host-init")]
pub mod init;
