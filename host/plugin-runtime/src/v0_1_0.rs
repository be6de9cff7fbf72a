//! Host bindings for `berth:plugin@0.1.0`, generated from the frozen copy in
//! `wit/v0.1.0`. A later package version gets a sibling module; this one stays as it is so
//! plugins built for 0.1.0 keep loading.
//!
//! The shared interfaces (`types`, `host`) are generated once, with the cloud-provider
//! world, and the other worlds point at them, so the host implements `host` once.

/// The package version these bindings serve.
pub const VERSION: &str = "0.1.0";

/// The `cloud-provider` world, and with it every imported interface.
pub mod cloud_provider {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.1.0",
        world: "cloud-provider",
        imports: { default: async | trappable },
        exports: { default: async },
        additional_derives: [serde::Serialize, serde::Deserialize],
    });
}

/// The `replication-strategy` world.
pub mod replication_strategy {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.1.0",
        world: "replication-strategy",
        imports: { default: async | trappable },
        exports: { default: async },
        additional_derives: [serde::Serialize, serde::Deserialize],
        with: {
            "berth:plugin/types": super::cloud_provider::berth::plugin::types,
            "berth:plugin/host": super::cloud_provider::berth::plugin::host,
        },
    });
}

/// The `host-init` world.
pub mod host_init {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.1.0",
        world: "host-init",
        imports: { default: async | trappable },
        exports: { default: async },
        additional_derives: [serde::Serialize, serde::Deserialize],
        with: {
            "berth:plugin/types": super::cloud_provider::berth::plugin::types,
            "berth:plugin/host": super::cloud_provider::berth::plugin::host,
        },
    });
}

pub use cloud_provider::berth::plugin::{host, http, secrets, types};
pub use cloud_provider::exports::berth::plugin::provider;
pub use host_init::exports::berth::plugin::init_step;
pub use replication_strategy::exports::berth::plugin::strategy;
