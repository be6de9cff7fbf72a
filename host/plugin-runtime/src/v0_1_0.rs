//! Host bindings for `berth:plugin@0.1.0`, generated from the frozen copy in `wit/v0.1.0`.
//! It stays as it is so that plugins built for 0.1.0 keep loading; what changed since is
//! in `v0_2_0.rs` and `v0_3_0.rs`.

/// The package version these bindings serve.
pub const VERSION: &str = "0.1.0";

crate::bindings::package_bindings!("../../wit/v0.1.0");
