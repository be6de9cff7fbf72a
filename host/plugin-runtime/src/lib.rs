//! berth's plugin runtime: loads WebAssembly components built for the `berth:plugin`
//! worlds, checks what they import, and runs each call in a fresh sandbox under the
//! plugin's limits and grants.
//!
//! The embedding host (the `berth` crate) stores plugins and their settings; this crate
//! knows nothing of storage or HTTP routes. Its surface is [`Runtime`]: compile and
//! inspect a component, load it as a [`Plugin`], and call it through the typed methods
//! of `calls.rs` or [`Runtime::invoke`] with JSON.

mod bindings;
mod cache;
pub mod calls;
mod error;
pub mod grants;
mod imports;
mod inspect;
pub mod json;
pub mod limits;
pub mod log;
mod plugin;
pub mod provider;
#[cfg(test)]
mod reference;
mod runtime;
mod state;
mod ticker;
pub mod v0_1_0;
pub mod v0_2_0;
pub mod v0_3_0;
pub mod world;

pub use error::{CallError, LoadError};
pub use grants::{Endpoint, Grants};
pub use imports::{HTTP_REQUEST_LIMIT, HTTP_RESPONSE_LIMIT};
pub use inspect::Inspection;
pub use limits::Limits;
pub use plugin::{CallStats, Plugin};
pub use runtime::{Compiled, Runtime, RuntimeOptions};
pub use state::{CallScope, NoSecrets, SecretSource, Settings};
pub use world::{Kind, SUPPORTED_VERSIONS};

/// Every function plugins export, with its JSON input and output, generated from the WIT
/// (`wit/FUNCTIONS.md`; a test keeps it current).
pub const FUNCTIONS_REFERENCE: &str = include_str!("../../../wit/FUNCTIONS.md");

/// The newest package version's types: what the rest of berth programs against.
pub use v0_3_0 as latest;

/// Checks what a plugin said about itself: the name is how admins address it.
pub(crate) fn validate_info(info: &latest::types::PluginInfo) -> Result<(), String> {
    let name_ok = !info.name.is_empty()
        && info.name.len() <= 64
        && info.name.split(['.', '_', '-']).all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    if !name_ok {
        return Err(format!(
            "name {:?} is not lowercase letters and digits separated by '.', '_' or '-' (at most 64)",
            info.name
        ));
    }
    if info.version.is_empty() || info.version.len() > 64 {
        return Err("version must be 1 to 64 characters".to_string());
    }
    if info.description.len() > 1024 {
        return Err("description must be at most 1024 bytes".to_string());
    }
    if info
        .version
        .chars()
        .chain(info.description.chars())
        .any(log::is_unprintable)
    {
        return Err("version and description must be one line of printable text".to_string());
    }
    Ok(())
}
