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
//! Build with `cargo build --release --target wasm32-wasip2` and the release profile of
//! `examples/plugin-walkthrough/Cargo.toml` (size-optimised, LTO, stripped, panic=abort),
//! then `berth plugin load target/wasm32-wasip2/release/<name>.wasm`.

#[cfg(any(
    all(feature = "cloud-provider", feature = "replication-strategy"),
    all(feature = "cloud-provider", feature = "host-init"),
    all(feature = "replication-strategy", feature = "host-init"),
))]
compile_error!(
    "enable exactly one of the features cloud-provider, replication-strategy, host-init"
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
        path: "../../wit/v0.1.0",
        world: "cloud-provider",
        pub_export_macro: true,
        export_macro_name: "__export_world",
        default_bindings_module: "berth_plugin_sdk::bindings",
        runtime_path: "berth_plugin_sdk::__wit_bindgen::rt",
        generate_all,
    });
    #[cfg(feature = "replication-strategy")]
    wit_bindgen::generate!({
        path: "../../wit/v0.1.0",
        world: "replication-strategy",
        pub_export_macro: true,
        export_macro_name: "__export_world",
        default_bindings_module: "berth_plugin_sdk::bindings",
        runtime_path: "berth_plugin_sdk::__wit_bindgen::rt",
        generate_all,
    });
    #[cfg(feature = "host-init")]
    wit_bindgen::generate!({
        path: "../../wit/v0.1.0",
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
