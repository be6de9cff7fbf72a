//! Secrets an admin granted to this plugin (`berth plugin grant NAME --secret KEY`).

pub use crate::bindings::berth::plugin::secrets::SecretError;

/// The value of the secret `name`; `not-granted` when this plugin holds no grant for it.
pub fn get(name: &str) -> Result<String, SecretError> {
    crate::bindings::berth::plugin::secrets::get(name)
}

/// A sentence for a [`SecretError`], for logs and provider errors.
pub fn describe(error: &SecretError) -> String {
    match error {
        SecretError::NotGranted(name) => format!("secret {name} is not granted to this plugin"),
        SecretError::NotSet(name) => format!("secret {name} is granted but has no value"),
    }
}
