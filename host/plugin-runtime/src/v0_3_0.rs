//! Host bindings for `berth:plugin@0.3.0`, generated from the frozen copy in `wit/v0.3.0`.
//! New since 0.2.0: the provider interface names its cluster in every call, pages and
//! filters listings, and reports errors as a record whose kind says whether to retry
//! (see `wit/v0.3.0/provider.wit`). Plugins see the host through [`crate::provider`]'s
//! domain types, never these.

/// The package version these bindings serve.
pub const VERSION: &str = "0.3.0";

crate::bindings::package_bindings!("../../wit/v0.3.0");
