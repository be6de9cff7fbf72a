//! Reads a compiled component's imports and exports, tells its kind and package version
//! from them, and refuses any import its world does not allow.

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::LoadError;
use crate::world::{InterfaceName, Kind, PACKAGE, SUPPORTED_VERSIONS};

/// WASI interfaces a `wasm32-wasip2` guest imports through the Rust standard library even
/// when it uses none of them. They are linked to an empty sandbox (no files, environment,
/// or sockets; clocks read zero). Sockets and HTTP are deliberately absent.
const WASI_ALLOWED: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
];

/// What a component is, as far as the host can tell without running it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Inspection {
    pub kind: Kind,
    /// The `berth:plugin` package version it was built for.
    pub world_version: String,
    /// Every import, fully qualified (`berth:plugin/host@0.1.0`, `wasi:io/streams@0.2.6`).
    pub imports: Vec<String>,
    /// Every export, fully qualified.
    pub exports: Vec<String>,
}

/// Tells what `component` is and checks it may be loaded.
pub fn inspect(engine: &Engine, component: &Component) -> Result<Inspection, LoadError> {
    let ty = component.component_type();
    let imports: Vec<String> = ty
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let exports: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();

    let mut found: Vec<(Kind, String)> = Vec::new();
    for export in &exports {
        let Some(name) = InterfaceName::parse(export) else {
            continue;
        };
        if name.package != PACKAGE {
            continue;
        }
        if let Some(kind) = Kind::ALL
            .into_iter()
            .find(|k| k.main_export() == name.interface)
        {
            found.push((kind, name.version.unwrap_or("").to_string()));
        }
    }
    let (kind, world_version) = match found.as_slice() {
        [] => {
            return Err(LoadError::NotAPlugin {
                exports: exports.clone(),
            });
        }
        [one] => one.clone(),
        _ => {
            return Err(LoadError::Invalid(format!(
                "it exports the interfaces of several worlds ({}); a plugin is built for one",
                found
                    .iter()
                    .map(|(k, _)| k.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
    if !SUPPORTED_VERSIONS.contains(&world_version.as_str()) {
        return Err(LoadError::UnsupportedVersion {
            kind,
            found: world_version,
            supported: SUPPORTED_VERSIONS.iter().map(|v| v.to_string()).collect(),
        });
    }
    if !exports
        .iter()
        .any(|e| *e == format!("{PACKAGE}/meta@{world_version}"))
    {
        return Err(LoadError::Invalid(format!(
            "it does not export {PACKAGE}/meta@{world_version}"
        )));
    }

    for import in &imports {
        let allowed = match InterfaceName::parse(import) {
            Some(name) if name.package == PACKAGE => {
                name.version == Some(world_version.as_str())
                    && kind.allowed_imports().contains(&name.interface)
            }
            Some(name) if name.package.starts_with("wasi:") => {
                WASI_ALLOWED.contains(&format!("{}/{}", name.package, name.interface).as_str())
            }
            _ => false,
        };
        if !allowed {
            return Err(LoadError::ImportNotAllowed {
                import: import.clone(),
                kind,
            });
        }
    }
    Ok(Inspection {
        kind,
        world_version,
        imports,
        exports,
    })
}
