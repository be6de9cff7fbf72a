//! `berth plugin …`: load, inspect, configure, call and remove plugins on a server, and
//! publish a plugin to any OCI registry as a Wasm artifact (the CNCF layout: config
//! `application/vnd.wasm.config.v0+json`, one `application/wasm` layer).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::client::{Client, Output, segment};

/// The config media type of a Wasm OCI artifact.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The layer media type of a Wasm OCI artifact.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";

const COLUMNS: &[&str] = &[
    "name",
    "kind",
    "version",
    "world_version",
    "enabled",
    "state",
    "digest",
    "description",
];

/// `berth plugin` subcommands.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Load a plugin from a .wasm file or an OCI reference (registry/repo:tag or @digest).
    Load {
        /// A path to a component, or an OCI reference.
        source: String,
        /// Load in place of a plugin of the same name (its settings are kept). With
        /// `--replace=NAME` the component must call itself NAME, and describes itself
        /// under NAME's limits.
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "NAME")]
        replace: Option<String>,
        /// Pull over plain HTTP (a registry on localhost without TLS).
        #[arg(long)]
        insecure: bool,
        /// Limits for the plugin's first call (its `info`, which names it) and, for a new
        /// plugin, for every call after; a replaced plugin keeps its own unless given.
        #[command(flatten)]
        limits: LimitFlags,
    },
    /// List plugins.
    List,
    /// The berth:plugin versions and worlds this server loads plugins for.
    Worlds,
    /// Kind, world version, imports, exports, grants, limits and digest of one plugin.
    Inspect { name: String },
    /// Grant endpoints (https://host[:port]/path-prefix, *.domain wildcards) or secrets.
    Grant {
        name: String,
        #[arg(long = "endpoint")]
        endpoints: Vec<String>,
        #[arg(long = "secret")]
        secrets: Vec<String>,
    },
    /// Revoke endpoints or secrets.
    Revoke {
        name: String,
        #[arg(long = "endpoint")]
        endpoints: Vec<String>,
        #[arg(long = "secret")]
        secrets: Vec<String>,
    },
    /// Show or change the limits of one call.
    Limits {
        name: String,
        #[command(flatten)]
        limits: LimitFlags,
    },
    /// Set (KEY=VALUE) or remove (KEY=) configuration values.
    Config { name: String, values: Vec<String> },
    /// Enable a plugin.
    Enable { name: String },
    /// Disable a plugin: calls are refused until it is enabled again.
    Disable { name: String },
    /// Remove a loaded plugin (built-ins can only be disabled).
    Remove { name: String },
    /// Call one function with JSON arguments and print its result.
    Call {
        name: String,
        function: String,
        /// Arguments: a JSON object keyed by the WIT parameter names, or @FILE (see
        /// `berth plugin functions`).
        #[arg(long, default_value = "{}")]
        input: String,
    },
    /// Every function a plugin of a world exports, with its JSON input and output as
    /// `call` takes and prints them (generated from the WIT).
    Functions {
        /// cloud-provider, replication-strategy or host-init; every world when absent.
        world: Option<String>,
    },
    /// Publish a component to a registry as a Wasm OCI artifact.
    Push {
        file: PathBuf,
        /// registry/repository:tag
        reference: String,
        /// Push over plain HTTP.
        #[arg(long)]
        insecure: bool,
    },
    /// Store a secret a plugin can be granted (the value is read from standard input).
    SecretSet { secret: String },
    /// Delete a secret.
    SecretRemove { secret: String },
    /// List the stored secrets' names.
    Secrets,
}

/// The limits of one call, as flags (`berth plugin limits`, `berth plugin load`).
#[derive(Debug, Default, clap::Args)]
pub struct LimitFlags {
    /// Linear memory in bytes.
    #[arg(long)]
    memory: Option<u64>,
    /// Table elements.
    #[arg(long)]
    tables: Option<u64>,
    /// CPU as fuel (about one unit per WebAssembly instruction).
    #[arg(long)]
    fuel: Option<u64>,
    /// Wall time per call, in milliseconds.
    #[arg(long)]
    wall_time_ms: Option<u64>,
    /// Events one call may write to berth's log (the rest are dropped and counted).
    #[arg(long)]
    log_events: Option<u64>,
    /// Bytes one call may write to berth's log.
    #[arg(long)]
    log_bytes: Option<u64>,
}

impl LimitFlags {
    /// The limits given, by their API names.
    fn given(&self) -> Vec<(&'static str, u64)> {
        [
            ("memory_bytes", self.memory),
            ("table_elements", self.tables),
            ("fuel", self.fuel),
            ("wall_time_ms", self.wall_time_ms),
            ("log_events", self.log_events),
            ("log_bytes", self.log_bytes),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
        .collect()
    }
}

/// The columns of `berth plugin limits`.
const LIMIT_COLUMNS: &[&str] = &[
    "memory_bytes",
    "table_elements",
    "fuel",
    "wall_time_ms",
    "log_events",
    "log_bytes",
];

/// Runs `berth plugin …`.
pub fn run(c: &Client, cmd: PluginCommand) -> anyhow::Result<ExitCode> {
    let plugin_path = |name: &str| format!("/api/v1/plugins/{}", segment(name));
    match cmd {
        PluginCommand::Functions { world } => return print_functions(world.as_deref()),
        PluginCommand::List => c.print(&c.call(Method::GET, "/api/v1/plugins", None)?, COLUMNS),
        PluginCommand::Worlds => {
            let v = c.call(Method::GET, "/api/v1/plugin-worlds", None)?;
            if c.output == Output::Json {
                c.print(&v, &[]);
            } else {
                let package = v["package"].as_str().unwrap_or_default();
                for version in v["versions"].as_array().into_iter().flatten() {
                    println!("{package}@{}", version.as_str().unwrap_or_default());
                }
                c.print(&v["worlds"], &["name", "imports", "functions"]);
            }
        }
        PluginCommand::Inspect { name } => {
            let v = c.call(Method::GET, &plugin_path(&name), None)?;
            print_detail(c, &v);
        }
        PluginCommand::Load {
            source,
            replace,
            insecure,
            limits,
        } => {
            let path = PathBuf::from(&source);
            let (bytes, query) = if path.exists() {
                let bytes = std::fs::read(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let filename = path
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (bytes, format!("filename={}", segment(&filename)))
            } else if looks_like_reference(&source) {
                let (bytes, pinned) = pull(c, &source, insecure)?;
                eprintln!("pulled {pinned}");
                (bytes, format!("reference={}", segment(&pinned)))
            } else {
                bail!("{source} is neither a file nor an OCI reference (registry/repository:tag)");
            };
            let mut path = format!("/api/v1/plugins?{query}");
            if let Some(replace) = &replace {
                path.push_str(&format!("&replace={}", segment(replace)));
            }
            for (name, value) in limits.given() {
                path.push_str(&format!("&{name}={value}"));
            }
            let v = c.call_bytes(Method::POST, &path, bytes, "application/wasm")?;
            c.print(&v, COLUMNS);
        }
        PluginCommand::Grant {
            name,
            endpoints,
            secrets,
        }
        | PluginCommand::Revoke {
            name,
            endpoints,
            secrets,
        } if endpoints.is_empty() && secrets.is_empty() => {
            bail!("name at least one --endpoint or --secret for {name}")
        }
        PluginCommand::Grant {
            name,
            endpoints,
            secrets,
        } => change_grants(c, &plugin_path(&name), "grant", endpoints, secrets)?,
        PluginCommand::Revoke {
            name,
            endpoints,
            secrets,
        } => change_grants(c, &plugin_path(&name), "revoke", endpoints, secrets)?,
        PluginCommand::Limits { name, limits } => {
            let given = limits.given();
            let v = if given.is_empty() {
                c.call(Method::GET, &plugin_path(&name), None)?
            } else {
                let changes: serde_json::Map<String, Value> = given
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), json!(v)))
                    .collect();
                c.call(
                    Method::PATCH,
                    &plugin_path(&name),
                    Some(json!({ "limits": changes })),
                )?
            };
            if c.output == Output::Json {
                c.print(&v["limits"], &[]);
            } else {
                c.print(&v["limits"], LIMIT_COLUMNS);
            }
        }
        PluginCommand::Config { name, values } => {
            let mut config = serde_json::Map::new();
            for item in &values {
                let (key, value) = item
                    .split_once('=')
                    .with_context(|| format!("{item:?}: expected KEY=VALUE (or KEY= to remove)"))?;
                config.insert(
                    key.to_string(),
                    if value.is_empty() {
                        Value::Null
                    } else {
                        json!(value)
                    },
                );
            }
            let v = if config.is_empty() {
                c.call(Method::GET, &plugin_path(&name), None)?
            } else {
                c.call(
                    Method::PATCH,
                    &plugin_path(&name),
                    Some(json!({"config": config})),
                )?
            };
            if c.output == Output::Json {
                c.print(&v["config"], &[]);
            } else {
                for (key, value) in v["config"].as_object().into_iter().flatten() {
                    println!("{key}={}", value.as_str().unwrap_or_default());
                }
            }
        }
        PluginCommand::Enable { name } => c.print(
            &c.call(
                Method::PATCH,
                &plugin_path(&name),
                Some(json!({"enabled": true})),
            )?,
            COLUMNS,
        ),
        PluginCommand::Disable { name } => c.print(
            &c.call(
                Method::PATCH,
                &plugin_path(&name),
                Some(json!({"enabled": false})),
            )?,
            COLUMNS,
        ),
        PluginCommand::Remove { name } => {
            c.call(Method::DELETE, &plugin_path(&name), None)?;
            eprintln!("removed {name}");
        }
        PluginCommand::Call {
            name,
            function,
            input,
        } => {
            let text = match input.strip_prefix('@') {
                Some(file) => {
                    std::fs::read_to_string(file).with_context(|| format!("cannot read {file}"))?
                }
                None => input,
            };
            let input: Value = serde_json::from_str(&text).context("--input is not JSON")?;
            let v = c.call(
                Method::POST,
                &format!("{}/invoke", plugin_path(&name)),
                Some(json!({"function": function, "input": input})),
            )?;
            println!(
                "{}",
                serde_json::to_string_pretty(&v["output"]).expect("serializes")
            );
        }
        PluginCommand::Push {
            file,
            reference,
            insecure,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let pinned = push(c, &bytes, &reference, insecure)?;
            println!("{pinned}");
        }
        PluginCommand::SecretSet { secret } => {
            let value = super::client::read_stdin_secret()
                .context("the secret's value is read from standard input")?;
            c.call(
                Method::PUT,
                &format!("/api/v1/plugin-secrets/{}", segment(&secret)),
                Some(json!({"value": value})),
            )?;
            eprintln!("stored secret {secret}");
        }
        PluginCommand::SecretRemove { secret } => {
            c.call(
                Method::DELETE,
                &format!("/api/v1/plugin-secrets/{}", segment(&secret)),
                None,
            )?;
            eprintln!("removed secret {secret}");
        }
        PluginCommand::Secrets => {
            let v = c.call(Method::GET, "/api/v1/plugin-secrets", None)?;
            if c.output == Output::Json {
                c.print(&v, &[]);
            } else {
                for name in v.as_array().into_iter().flatten() {
                    println!("{}", name.as_str().unwrap_or_default());
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `grant` or `revoke` endpoints and secrets, then shows the plugin.
fn change_grants(
    c: &Client,
    path: &str,
    change: &str,
    endpoints: Vec<String>,
    secrets: Vec<String>,
) -> anyhow::Result<()> {
    let v = c.call(
        Method::PATCH,
        path,
        Some(json!({ change: {"endpoints": endpoints, "secrets": secrets} })),
    )?;
    print_detail(c, &v);
    Ok(())
}

fn print_detail(c: &Client, v: &Value) {
    if c.output == Output::Json {
        c.print(v, &[]);
        return;
    }
    let field = |k: &str| match &v[k] {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    for key in [
        "name",
        "kind",
        "world_version",
        "version",
        "description",
        "digest",
        "enabled",
        "state",
        "error",
        "loaded_by",
    ] {
        println!("{key:14} {}", field(key));
    }
    println!("{:14} {}", "source", v["source"]);
    println!("{:14} {}", "limits", v["limits"]);
    println!("{:14} {}", "grants", v["grants"]);
    println!("{:14} {}", "config", v["config"]);
    println!("{:14} {}", "calls", describe_calls(v));
    for key in ["functions", "imports", "exports"] {
        let items: Vec<String> = v[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| i.as_str().unwrap_or_default().to_string())
            .collect();
        println!(
            "{key:14} {}",
            if items.is_empty() {
                "-".into()
            } else {
                items.join("\n               ")
            }
        );
    }
}

/// "3 running; 120 completed, 2 failed; mean 31 µs in the sandbox, 74 µs in all".
fn describe_calls(v: &Value) -> String {
    let calls = &v["calls"];
    let count = |k: &str| calls[k].as_u64().unwrap_or(0);
    let mut text = format!(
        "{} running; {} completed, {} failed",
        v["calls_in_flight"].as_u64().unwrap_or(0),
        count("completed"),
        count("failed")
    );
    if let (Some(sandbox), Some(total)) = (
        calls["mean_sandbox_us"].as_f64(),
        calls["mean_total_us"].as_f64(),
    ) {
        text.push_str(&format!(
            "; mean {sandbox:.0} µs in the sandbox, {total:.0} µs in all"
        ));
    }
    let dropped = count("log_events_dropped");
    if dropped > 0 {
        text.push_str(&format!(
            "; {dropped} log events ({} bytes) dropped over the log budget",
            count("log_bytes_dropped")
        ));
    }
    text
}

/// `berth plugin functions [WORLD]`.
pub fn print_functions(world: Option<&str>) -> anyhow::Result<ExitCode> {
    print!("{}", functions_reference(world)?);
    Ok(ExitCode::SUCCESS)
}

/// The generated function reference, whole or for one world (with the types it uses).
fn functions_reference(world: Option<&str>) -> anyhow::Result<String> {
    let text = berth_plugin_runtime::FUNCTIONS_REFERENCE;
    let Some(world) = world else {
        return Ok(text.to_string());
    };
    if berth_plugin_runtime::Kind::from_world(world).is_none() {
        bail!(
            "no world {world:?}: the worlds are cloud-provider, replication-strategy and host-init"
        );
    }
    let heading = format!("### world `{world}`");
    let mut out = String::new();
    let mut keep = true;
    for line in text.lines() {
        if line.starts_with("### ") {
            keep = line == heading || line == "### types";
        } else if line.starts_with("## ") {
            keep = true;
        }
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

fn looks_like_reference(s: &str) -> bool {
    s.parse::<oci_client::Reference>().is_ok() && s.contains('/')
}

/// The oci-client, its auth for `reference`'s registry, and the parsed reference. The
/// berth server's own login is used when the registry is that server.
fn oci(
    c: &Client,
    reference: &str,
    insecure: bool,
) -> anyhow::Result<(
    oci_client::Client,
    oci_client::secrets::RegistryAuth,
    oci_client::Reference,
)> {
    let reference: oci_client::Reference = reference
        .parse()
        .with_context(|| format!("{reference} is not an OCI reference"))?;
    let server = c.base();
    let server_host = server
        .split_once("://")
        .map(|(_, h)| h)
        .unwrap_or(server)
        .trim_end_matches('/');
    let own = reference.registry() == server_host;
    let plain_http = insecure || (own && server.starts_with("http://"));
    let protocol = if plain_http {
        oci_client::client::ClientProtocol::HttpsExcept(vec![reference.registry().to_string()])
    } else {
        oci_client::client::ClientProtocol::Https
    };
    let auth = if own {
        let (username, password) = c.credentials();
        oci_client::secrets::RegistryAuth::Basic(username.to_string(), password.to_string())
    } else {
        match (
            std::env::var("BERTH_REGISTRY_USERNAME"),
            std::env::var("BERTH_REGISTRY_PASSWORD"),
        ) {
            (Ok(u), Ok(p)) => oci_client::secrets::RegistryAuth::Basic(u, p),
            _ => oci_client::secrets::RegistryAuth::Anonymous,
        }
    };
    let client = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol,
        ..Default::default()
    });
    Ok((client, auth, reference))
}

/// Pulls a Wasm artifact; returns the component and the reference pinned by digest.
fn pull(c: &Client, reference: &str, insecure: bool) -> anyhow::Result<(Vec<u8>, String)> {
    let (client, auth, reference) = oci(c, reference, insecure)?;
    c.block_on(async {
        let image = client
            .pull(&reference, &auth, vec![WASM_LAYER_MEDIA_TYPE])
            .await
            .with_context(|| format!("cannot pull {reference} (is it a Wasm artifact with an application/wasm layer?)"))?;
        let manifest = image.manifest.context("the registry sent no manifest")?;
        if manifest.config.media_type != WASM_CONFIG_MEDIA_TYPE {
            bail!("{reference} is not a Wasm artifact: its config is {}, not {WASM_CONFIG_MEDIA_TYPE}", manifest.config.media_type);
        }
        let [layer] = image.layers.as_slice() else {
            bail!("{reference} has {} layers; a Wasm artifact has exactly one", image.layers.len());
        };
        let expected = &manifest.layers[0].digest;
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&layer.data)));
        if *expected != actual {
            bail!("the layer of {reference} does not match its digest: expected {expected}, got {actual}");
        }
        let digest = image.digest.context("the registry sent no manifest digest")?;
        if let Some(pinned) = reference.digest()
            && pinned != digest
        {
            bail!("{reference} resolved to manifest {digest}, not the digest it names");
        }
        let pinned = format!("{}/{}@{digest}", reference.registry(), reference.repository());
        Ok((layer.data.to_vec(), pinned))
    })
}

/// Pushes a component as a Wasm artifact; returns the reference pinned by digest.
fn push(c: &Client, bytes: &[u8], reference: &str, insecure: bool) -> anyhow::Result<String> {
    if !bytes.starts_with(b"\0asm") {
        bail!("the file is not WebAssembly");
    }
    let (client, auth, reference) = oci(c, reference, insecure)?;
    let layer_digest = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
    let created = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let config = serde_json::to_vec(&json!({
        "created": created,
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [layer_digest],
    }))?;
    c.block_on(async {
        let layer = oci_client::client::ImageLayer::new(
            bytes.to_vec(),
            WASM_LAYER_MEDIA_TYPE.to_string(),
            None,
        );
        let config =
            oci_client::client::Config::new(config, WASM_CONFIG_MEDIA_TYPE.to_string(), None);
        client
            .push(&reference, &[layer], config, &auth, None)
            .await
            .with_context(|| format!("cannot push to {reference}"))?;
        let (_, digest) = client
            .pull_manifest_raw(
                &reference,
                &auth,
                &[oci_client::manifest::OCI_IMAGE_MEDIA_TYPE],
            )
            .await
            .with_context(|| format!("pushed, but cannot read back the manifest of {reference}"))?;
        Ok(format!(
            "{}/{}@{digest}",
            reference.registry(),
            reference.repository()
        ))
    })
}
