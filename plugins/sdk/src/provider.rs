//! The `cloud-provider` world.

pub use crate::bindings::exports::berth::plugin::provider::{
    Address, AddressKind, Description, HourlyPrice, Image, Machine, MachineSpec, MachineState,
    MachineType, ProviderError, Region, Throttled, Zone,
};

use crate::http::{HttpError, ResponseError};
use crate::secrets::SecretError;

/// Implement this, and [`crate::Plugin`], then `export_provider!(YourType)`. Every call is
/// stateless: keep state in the provider's own API (tags, client tokens).
pub trait Provider: crate::Plugin {
    fn describe() -> Result<Description, ProviderError>;
    fn price(region: String, machine_type: String) -> Result<HourlyPrice, ProviderError>;
    /// Must be idempotent by `spec.client_token`.
    fn create(spec: MachineSpec) -> Result<Machine, ProviderError>;
    fn get(region: String, id: String) -> Result<Machine, ProviderError>;
    fn list(region: Option<String>) -> Result<Vec<Machine>, ProviderError>;
    fn start(region: String, id: String) -> Result<(), ProviderError>;
    fn stop(region: String, id: String) -> Result<(), ProviderError>;
    fn delete(region: String, id: String) -> Result<(), ProviderError>;
}

/// So `?` works on HTTP calls inside provider functions. An endpoint the admin did not
/// grant is `not-granted` — a missing grant, which `auth` (credentials the cloud refused)
/// must not be mistaken for; the rest are the provider's own failures.
impl From<HttpError> for ProviderError {
    fn from(e: HttpError) -> Self {
        let message = crate::http::describe(&e);
        match e {
            HttpError::NotGranted(_) => ProviderError::NotGranted(message),
            HttpError::InvalidRequest(_) => ProviderError::Invalid(message),
            _ => ProviderError::Other(message),
        }
    }
}

/// A secret not granted is a missing grant (`not-granted`); one granted without a value
/// leaves the provider without credentials (`auth`).
impl From<SecretError> for ProviderError {
    fn from(e: SecretError) -> Self {
        let message = crate::secrets::describe(&e);
        match e {
            SecretError::NotGranted(_) => ProviderError::NotGranted(message),
            SecretError::NotSet(_) => ProviderError::Auth(message),
        }
    }
}

impl From<ResponseError> for ProviderError {
    fn from(e: ResponseError) -> Self {
        match &e {
            ResponseError::Status {
                status: 401 | 403, ..
            } => ProviderError::Auth(e.to_string()),
            ResponseError::Status { status: 404, .. } => ProviderError::NotFound(e.to_string()),
            ResponseError::Status { status: 429, .. } => ProviderError::Throttled(Throttled {
                message: e.to_string(),
                retry_after_ms: None,
            }),
            ResponseError::Status {
                status: 400 | 422, ..
            } => ProviderError::Invalid(e.to_string()),
            _ => ProviderError::Other(e.to_string()),
        }
    }
}

/// Exports a type implementing [`crate::Plugin`] and [`Provider`] as the component's
/// `cloud-provider` world.
#[macro_export]
macro_rules! export_provider {
    ($ty:ident) => {
        const _: () = {
            use $crate::provider as __p;
            impl $crate::bindings::exports::berth::plugin::meta::Guest for $ty {
                fn info() -> $crate::PluginInfo {
                    <$ty as $crate::Plugin>::info()
                }
            }
            impl $crate::bindings::exports::berth::plugin::provider::Guest for $ty {
                fn describe() -> ::core::result::Result<__p::Description, __p::ProviderError> {
                    <$ty as __p::Provider>::describe()
                }
                fn price(
                    region: ::std::string::String,
                    machine_type: ::std::string::String,
                ) -> ::core::result::Result<__p::HourlyPrice, __p::ProviderError> {
                    <$ty as __p::Provider>::price(region, machine_type)
                }
                fn create(
                    spec: __p::MachineSpec,
                ) -> ::core::result::Result<__p::Machine, __p::ProviderError> {
                    <$ty as __p::Provider>::create(spec)
                }
                fn get(
                    region: ::std::string::String,
                    id: ::std::string::String,
                ) -> ::core::result::Result<__p::Machine, __p::ProviderError> {
                    <$ty as __p::Provider>::get(region, id)
                }
                fn list(
                    region: ::core::option::Option<::std::string::String>,
                ) -> ::core::result::Result<::std::vec::Vec<__p::Machine>, __p::ProviderError>
                {
                    <$ty as __p::Provider>::list(region)
                }
                fn start(
                    region: ::std::string::String,
                    id: ::std::string::String,
                ) -> ::core::result::Result<(), __p::ProviderError> {
                    <$ty as __p::Provider>::start(region, id)
                }
                fn stop(
                    region: ::std::string::String,
                    id: ::std::string::String,
                ) -> ::core::result::Result<(), __p::ProviderError> {
                    <$ty as __p::Provider>::stop(region, id)
                }
                fn delete(
                    region: ::std::string::String,
                    id: ::std::string::String,
                ) -> ::core::result::Result<(), __p::ProviderError> {
                    <$ty as __p::Provider>::delete(region, id)
                }
            }
    $crate::bindings::__export_world!($ty with_types_in $crate::bindings);
        };
    };
}
