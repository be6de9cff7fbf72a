//! Host bindings for `berth:plugin@0.2.0`, generated from the frozen copy in `wit/v0.2.0`.
//! New since 0.1.0: `provider-error` has a `not-granted` case, so a provider tells an
//! administrator's missing grant apart from credentials the cloud refused.

/// The package version these bindings serve.
pub const VERSION: &str = "0.2.0";

crate::bindings::package_bindings!("../../wit/v0.2.0");
