//! Host bindings for one `berth:plugin` package version, generated from its frozen copy
//! under `wit/`: one module per world, with the shared interfaces (`types`, `host`,
//! `http`, `secrets`) generated once, with the cloud-provider world, and the other worlds
//! pointing at them, so the host implements each import once per version.

/// Expands to the modules of one package version (see `v0_1_0.rs`, `v0_2_0.rs`, `v0_3_0.rs`).
macro_rules! package_bindings {
    ($path:tt) => {
        /// The `cloud-provider` world, and with it every imported interface.
        pub mod cloud_provider {
            wasmtime::component::bindgen!({
                path: $path,
                world: "cloud-provider",
                imports: { default: async | trappable },
                exports: { default: async },
                additional_derives: [serde::Serialize, serde::Deserialize],
            });
        }

        /// The `replication-strategy` world.
        pub mod replication_strategy {
            wasmtime::component::bindgen!({
                path: $path,
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
                path: $path,
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
    };
}

pub(crate) use package_bindings;
