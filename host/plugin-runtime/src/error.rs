//! The errors a load or a call reports. Each names the plugin and, for a limit, the limit
//! and how to raise it: the admin reading it should know what to do next.

use crate::world::Kind;

/// How a component is named while its `info` call, which names it, runs at load time.
pub(crate) const LOADING: &str = "(loading ";

/// The command that raises a limit, given as its flags (`--fuel N`): `berth plugin
/// limits NAME …` for a loaded plugin; for a component still being loaded, which has no
/// name yet, loading it again with the flag.
pub(crate) fn raise(plugin: &str, flags: &str) -> String {
    if plugin.starts_with(LOADING) {
        format!("load it again with a higher limit: `berth plugin load <file> {flags}`")
    } else {
        format!("raise it with `berth plugin limits {plugin} {flags}`")
    }
}

/// Why a component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a WebAssembly file: {0}")]
    NotWasm(String),
    #[error(
        "this is a core WebAssembly module, not a component: build the plugin for the \
         wasm32-wasip2 target (cargo build --target wasm32-wasip2)"
    )]
    CoreModule,
    #[error("not a valid WebAssembly component (truncated or corrupt?): {0}")]
    Invalid(String),
    #[error(
        "not a berth plugin: it exports none of the berth:plugin worlds' interfaces \
         (its exports: {})", if exports.is_empty() { "none".to_string() } else { exports.join(", ") }
    )]
    NotAPlugin { exports: Vec<String> },
    #[error(
        "the plugin is built for berth:plugin@{found} ({kind}); this host serves \
         berth:plugin@{}: rebuild it against a supported version of berth-plugin-sdk",
        supported.join(", @")
    )]
    UnsupportedVersion {
        kind: Kind,
        found: String,
        supported: Vec<String>,
    },
    #[error(
        "the plugin imports {import}, which the {kind} world does not allow; \
         a {kind} plugin may import only its world's interfaces"
    )]
    ImportNotAllowed { import: String, kind: Kind },
    #[error("the plugin could not be instantiated: {0}")]
    Link(String),
    #[error("the plugin failed while describing itself: {0}")]
    Info(#[source] CallError),
    #[error("the plugin describes itself wrongly: {0}")]
    BadInfo(String),
}

/// Why one call of a plugin failed. The host and every other plugin carry on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error(
        "plugin {plugin} used up its CPU limit ({fuel} units of fuel) in {function}; \
         if the work is legitimate, {}",
        raise(plugin, "--fuel N")
    )]
    Cpu {
        plugin: String,
        function: String,
        fuel: u64,
    },
    #[error(
        "plugin {plugin} tried to grow its memory past its {limit_bytes}-byte limit in \
         {function}; {}",
        raise(plugin, "--memory BYTES")
    )]
    Memory {
        plugin: String,
        function: String,
        limit_bytes: u64,
    },
    #[error(
        "plugin {plugin} tried to grow its tables past {limit} elements in {function}; {}",
        raise(plugin, "--tables N")
    )]
    Table {
        plugin: String,
        function: String,
        limit: u64,
    },
    #[error(
        "plugin {plugin} did not finish {function} within its wall-time limit of {limit_ms} ms; \
         {}",
        raise(plugin, "--wall-time-ms N")
    )]
    WallTime {
        plugin: String,
        function: String,
        limit_ms: u64,
    },
    #[error("plugin {plugin} overflowed its stack in {function} (runaway recursion?)")]
    StackOverflow { plugin: String, function: String },
    #[error("plugin {plugin} panicked in {function}: {message}")]
    Panic {
        plugin: String,
        function: String,
        message: String,
    },
    #[error("plugin {plugin} trapped in {function}: {message}")]
    Trap {
        plugin: String,
        function: String,
        message: String,
    },
    #[error("plugin {plugin} exited with status {status} in {function}")]
    Exit {
        plugin: String,
        function: String,
        status: i32,
    },
    #[error("plugin {plugin} has no function {function} (it is a {kind} plugin)")]
    NoSuchFunction {
        plugin: String,
        function: String,
        kind: Kind,
    },
    #[error("bad input for {function} of plugin {plugin}: {message}")]
    BadInput {
        plugin: String,
        function: String,
        message: String,
    },
    #[error("the plugin runtime failed calling {function} of plugin {plugin}: {message}")]
    Host {
        plugin: String,
        function: String,
        message: String,
    },
}
