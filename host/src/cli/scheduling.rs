//! `berth cluster …`, `berth machine …` and `berth quota …`: resource scheduling over the
//! admin API.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::client::{Client, segment};

/// `berth cluster …`
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// List clusters.
    List,
    /// Add a cluster.
    Add {
        /// Its name.
        name: String,
        /// `static-pool`, or a loaded cloud-provider plugin.
        #[arg(long)]
        provider: String,
        /// A region it may place machines in (repeatable).
        #[arg(long = "region")]
        regions: Vec<String>,
        /// The provider's API endpoint.
        #[arg(long)]
        endpoint: Option<String>,
        /// The provider's settings, a JSON object.
        #[arg(long)]
        settings: Option<String>,
        /// A JSON file holding the credentials (sealed on the server, never shown again);
        /// `-` reads standard input.
        #[arg(long)]
        credentials_file: Option<PathBuf>,
        /// A label, KEY=VALUE (repeatable).
        #[arg(long = "label")]
        labels: Vec<String>,
        /// A project allowed to use it (repeatable).
        #[arg(long = "project")]
        projects: Vec<String>,
        /// How its machines are probed: `ssh` (port 22), `ssh:PORT`, `http:PORT[/PATH]`
        /// (any 2xx is healthy), or `none` where berth has no route to them.
        #[arg(long)]
        probe: Option<String>,
        /// Add it disabled.
        #[arg(long)]
        disabled: bool,
    },
    /// Show a cluster.
    Show {
        /// Its name.
        name: String,
    },
    /// Change a cluster.
    Update {
        /// Its name.
        name: String,
        /// Take new machines.
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Take no new machines (its machines stay).
        #[arg(long)]
        disable: bool,
        /// New settings, a JSON object.
        #[arg(long)]
        settings: Option<String>,
        /// New credentials from a JSON file (`-`: standard input).
        #[arg(long)]
        credentials_file: Option<PathBuf>,
        /// A new probe: `ssh`, `ssh:PORT`, `http:PORT[/PATH]` or `none`.
        #[arg(long)]
        probe: Option<String>,
    },
    /// Remove a cluster whose machines are all retired.
    Remove {
        /// Its name.
        name: String,
    },
    /// Let a project use a cluster.
    Grant {
        /// The cluster.
        name: String,
        /// The project.
        project: String,
    },
    /// Stop a project from placing new machines on a cluster.
    Revoke {
        /// The cluster.
        name: String,
        /// The project.
        project: String,
    },
    /// A physical pool's hosts; with --file, add or update them first.
    Hosts {
        /// The pool.
        name: String,
        /// A JSON file: an array of hosts (name, address, ssh_port, cpus, memory_mib,
        /// disks_gib, labels, rack, zone).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Reconciles a provider cluster now: retires machines its provider no longer has,
    /// fails creates nothing finishes, counts orphans; prints what it found.
    Reconcile {
        /// The cluster.
        name: String,
    },
    /// A provider cluster's orphans: machines tagged for it that berth keeps no record
    /// of; adopt one into a project, or delete it at the provider.
    Orphans {
        /// The cluster.
        name: String,
        /// Adopt this provider id (with --project).
        #[arg(long, requires = "project", conflicts_with = "delete")]
        adopt: Option<String>,
        /// The project an adopted machine goes to.
        #[arg(long)]
        project: Option<String>,
        /// Delete this provider id at the provider.
        #[arg(long)]
        delete: Option<String>,
    },
}

/// `berth machine …`
#[derive(Debug, Subcommand)]
pub enum MachineCommand {
    /// Create a machine; answers at once (see `show` for its state).
    ///
    /// With one `--cluster` and no `--count` or `--dry-run`, one machine there. Otherwise
    /// placement picks where (`--cluster` repeatable as a constraint): free pool hosts
    /// first, then the cheapest machine type that fits, then dearer ones; `--spread`
    /// deals machines over zones or clusters; `--dry-run` prints the plan and creates
    /// nothing.
    Create {
        /// The project that will own it.
        #[arg(long)]
        project: String,
        /// The cluster (repeatable with placement).
        #[arg(long = "cluster")]
        clusters: Vec<String>,
        /// How many machines (placement).
        #[arg(long)]
        count: Option<u32>,
        /// Print where they would go, at what price, and create nothing.
        #[arg(long)]
        dry_run: bool,
        /// Only in this region (repeatable; placement).
        #[arg(long = "region")]
        regions: Vec<String>,
        /// Only in this zone (repeatable; placement).
        #[arg(long = "zone")]
        zones: Vec<String>,
        /// At most this price per hour and machine, in USD (`0.05`; placement).
        #[arg(long)]
        max_price: Option<String>,
        /// Deal machines over `zones` or `clusters` (placement).
        #[arg(long)]
        spread: Option<String>,
        /// vCPUs, at least (on a provider's cluster, the machine type's).
        #[arg(long, default_value_t = 0)]
        cpus: u32,
        /// Memory in MiB, at least (on a provider's cluster, the machine type's).
        #[arg(long, default_value_t = 0)]
        memory_mib: u64,
        /// The provider's machine type (`t3.micro`).
        #[arg(long, alias = "type")]
        machine_type: Option<String>,
        /// The image.
        #[arg(long)]
        image: Option<String>,
        /// A label, KEY=VALUE (repeatable).
        #[arg(long = "label")]
        labels: Vec<String>,
        /// An idempotency token: the same token again is the same machine.
        #[arg(long)]
        client_token: Option<String>,
    },
    /// Register a pool host that already runs as a machine of a project.
    Register {
        /// The project that owns it.
        #[arg(long)]
        project: String,
        /// Its pool.
        #[arg(long)]
        cluster: String,
        /// The host's name in the pool.
        #[arg(long)]
        host: String,
        /// An idempotency token.
        #[arg(long)]
        client_token: Option<String>,
    },
    /// List a project's machines (all of them, for system administrators).
    List {
        /// The project.
        #[arg(long)]
        project: Option<String>,
        /// Only in this cluster.
        #[arg(long)]
        cluster: Option<String>,
        /// Only in this state.
        #[arg(long)]
        state: Option<String>,
    },
    /// Show a machine.
    Show {
        /// Its id.
        id: String,
    },
    /// Put a machine back online.
    Online {
        /// Its id.
        id: String,
    },
    /// Take a machine offline: it drains first, unless --force.
    Offline {
        /// Its id.
        id: String,
        /// At once, without draining.
        #[arg(long)]
        force: bool,
        /// Why, for its history.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Stop a machine (switched off at its provider or BMC; a stopped cloud machine
    /// costs its disk price only).
    Stop {
        /// Its id.
        id: String,
        /// Why, for its history.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Start a stopped machine; it comes online once it answers.
    Start {
        /// Its id.
        id: String,
    },
    /// Retire a machine.
    Retire {
        /// Its id.
        id: String,
    },
    /// A machine's history: every move, who, why, when.
    History {
        /// Its id.
        id: String,
    },
}

/// `berth quota …`
#[derive(Debug, Subcommand)]
pub enum QuotaCommand {
    /// Set a project's quota; a limit left out is none.
    Set {
        /// The project.
        project: String,
        /// Machines.
        #[arg(long)]
        machines: Option<u32>,
        /// vCPUs.
        #[arg(long)]
        cpus: Option<u32>,
        /// Memory, MiB.
        #[arg(long)]
        memory_mib: Option<u64>,
    },
    /// A project's quota and usage.
    Show {
        /// The project.
        project: String,
    },
}

const CLUSTER_COLUMNS: &[&str] = &[
    "name",
    "provider",
    "enabled",
    "projects",
    "regions",
    "has_credentials",
];
const HOST_COLUMNS: &[&str] = &[
    "name",
    "address",
    "ssh_port",
    "cpus",
    "memory_mib",
    "machine",
    "needs_init",
];
const PLACEMENT_COLUMNS: &[&str] = &[
    "cluster",
    "region",
    "zone",
    "machine_type",
    "host",
    "micros_per_hour",
    "currency",
];

/// A decimal amount as millionths (`0.0104` is 10 400).
fn micros(text: &str) -> Option<u64> {
    let (whole, fraction) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
    if fraction.len() > 6 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let fraction: u64 = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<6}").parse().ok()?
    };
    whole
        .parse::<u64>()
        .ok()?
        .checked_mul(1_000_000)?
        .checked_add(fraction)
}

const RECONCILE_COLUMNS: &[&str] = &[
    "cluster", "listed", "records", "retired", "stopped", "started", "failed", "orphans",
];

const ORPHAN_COLUMNS: &[&str] = &[
    "provider_id",
    "region",
    "state",
    "machine_type",
    "machine_id",
    "project",
];

const MACHINE_COLUMNS: &[&str] = &[
    "id",
    "project",
    "cluster",
    "state",
    "provider_id",
    "addresses",
    "reason",
];
const HISTORY_COLUMNS: &[&str] = &["seq", "from", "to", "actor", "reason", "at"];

fn json_object(what: &str, text: &str) -> anyhow::Result<Value> {
    let value: Value = serde_json::from_str(text).with_context(|| format!("{what} is not JSON"))?;
    anyhow::ensure!(value.is_object(), "{what} must be a JSON object");
    Ok(value)
}

fn read_json(path: &PathBuf) -> anyhow::Result<Value> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

fn labels(pairs: &[String]) -> anyhow::Result<Map<String, Value>> {
    pairs
        .iter()
        .map(|p| {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--label {p:?}: expected KEY=VALUE"))?;
            Ok((k.to_owned(), json!(v)))
        })
        .collect()
}

/// A cluster's probe from `ssh`, `ssh:PORT`, `http:PORT[/PATH]` or `none`.
fn probe(text: &str) -> anyhow::Result<Value> {
    if let Some(rest) = text.strip_prefix("http:") {
        let (port, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let port: u16 = port
            .parse()
            .with_context(|| format!("--probe {text}: {port:?} is not a port"))?;
        return Ok(json!({"kind": "http", "port": port, "path": path}));
    }
    match text.split_once(':') {
        None if text == "none" => Ok(json!({"kind": "none"})),
        None if text == "ssh" => Ok(json!({"kind": "ssh", "port": 22})),
        Some(("ssh", port)) => {
            let port: u16 = port
                .parse()
                .with_context(|| format!("--probe {text}: {port:?} is not a port"))?;
            Ok(json!({"kind": "ssh", "port": port}))
        }
        _ => anyhow::bail!("--probe {text}: use ssh, ssh:PORT, http:PORT[/PATH] or none"),
    }
}

/// Runs `berth cluster …`.
pub fn cluster(c: &Client, command: ClusterCommand) -> anyhow::Result<ExitCode> {
    let path = |name: &str| format!("/api/v1/clusters/{}", segment(name));
    match command {
        ClusterCommand::List => c.print(
            &c.call(Method::GET, "/api/v1/clusters", None)?,
            CLUSTER_COLUMNS,
        ),
        ClusterCommand::Add {
            name,
            provider,
            regions,
            endpoint,
            settings,
            credentials_file,
            labels: pairs,
            projects,
            probe: probe_text,
            disabled,
        } => {
            let mut body = json!({"name": name, "provider": provider, "regions": regions,
                "endpoint": endpoint, "labels": labels(&pairs)?, "projects": projects,
                "enabled": !disabled});
            if let Some(text) = probe_text {
                body["probe"] = probe(&text)?;
            }
            if let Some(settings) = settings {
                body["settings"] = json_object("--settings", &settings)?;
            }
            if let Some(file) = credentials_file {
                body["credentials"] = read_json(&file)?;
            }
            c.print(
                &c.call(Method::POST, "/api/v1/clusters", Some(body))?,
                CLUSTER_COLUMNS,
            );
        }
        ClusterCommand::Show { name } => {
            c.print(&c.call(Method::GET, &path(&name), None)?, CLUSTER_COLUMNS)
        }
        ClusterCommand::Update {
            name,
            enable,
            disable,
            settings,
            credentials_file,
            probe: probe_text,
        } => {
            let mut body = Map::new();
            if let Some(text) = probe_text {
                body.insert("probe".into(), probe(&text)?);
            }
            if enable || disable {
                body.insert("enabled".into(), json!(enable));
            }
            if let Some(settings) = settings {
                body.insert("settings".into(), json_object("--settings", &settings)?);
            }
            if let Some(file) = credentials_file {
                body.insert("credentials".into(), read_json(&file)?);
            }
            c.print(
                &c.call(Method::PATCH, &path(&name), Some(Value::Object(body)))?,
                CLUSTER_COLUMNS,
            );
        }
        ClusterCommand::Remove { name } => {
            c.call(Method::DELETE, &path(&name), None)?;
        }
        ClusterCommand::Grant { name, project } => c.print(
            &c.call(
                Method::PUT,
                &format!("{}/projects/{}", path(&name), segment(&project)),
                None,
            )?,
            CLUSTER_COLUMNS,
        ),
        ClusterCommand::Revoke { name, project } => c.print(
            &c.call(
                Method::DELETE,
                &format!("{}/projects/{}", path(&name), segment(&project)),
                None,
            )?,
            CLUSTER_COLUMNS,
        ),
        ClusterCommand::Hosts { name, file } => {
            let hosts = match file {
                Some(file) => c.call(
                    Method::POST,
                    &format!("{}/hosts", path(&name)),
                    Some(read_json(&file)?),
                )?,
                None => c.call(Method::GET, &format!("{}/hosts", path(&name)), None)?,
            };
            c.print(&hosts, HOST_COLUMNS);
        }
        ClusterCommand::Reconcile { name } => {
            let report = c.call(Method::POST, &format!("{}/reconcile", path(&name)), None)?;
            c.print(&report, RECONCILE_COLUMNS);
        }
        ClusterCommand::Orphans {
            name,
            adopt,
            project,
            delete,
        } => {
            let orphans = format!("{}/orphans", path(&name));
            if let Some(id) = adopt {
                let body = json!({"project": project});
                let at = format!("{orphans}/{}/adopt", segment(&id));
                c.print(&c.call(Method::POST, &at, Some(body))?, MACHINE_COLUMNS);
            } else if let Some(id) = delete {
                let at = format!("{orphans}/{}/delete", segment(&id));
                c.call(Method::POST, &at, None)?;
            } else {
                c.print(&c.call(Method::GET, &orphans, None)?, ORPHAN_COLUMNS);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `berth machine …`.
pub fn machine(c: &Client, command: MachineCommand) -> anyhow::Result<ExitCode> {
    let path = |id: &str, action: &str| {
        let base = format!("/api/v1/machines/{}", segment(id));
        if action.is_empty() {
            base
        } else {
            format!("{base}/{action}")
        }
    };
    match command {
        MachineCommand::Create {
            project,
            clusters,
            count,
            dry_run,
            regions,
            zones,
            max_price,
            spread,
            cpus,
            memory_mib,
            machine_type,
            image,
            labels: pairs,
            client_token,
        } => {
            if count.is_some() || dry_run || clusters.len() != 1 {
                let max = max_price
                    .map(|p| micros(&p).with_context(|| format!("--max-price {p}: not a decimal")))
                    .transpose()?;
                let body = json!({"project": project, "count": count.unwrap_or(1),
                    "machine_type": machine_type, "cpus": cpus, "memory_mib": memory_mib,
                    "image": image, "labels": labels(&pairs)?, "client_token": client_token,
                    "constraints": {"clusters": clusters, "regions": regions, "zones": zones,
                        "max_micros_per_hour": max, "spread": spread.unwrap_or_else(|| "none".into())}});
                let path = if dry_run {
                    "/api/v1/machines/plan"
                } else {
                    "/api/v1/machines/place"
                };
                let answer = c.call(Method::POST, path, Some(body))?;
                if dry_run {
                    c.print(&answer["placements"], PLACEMENT_COLUMNS);
                } else {
                    c.print(&answer["machines"], MACHINE_COLUMNS);
                }
                return Ok(ExitCode::SUCCESS);
            }
            let cluster = &clusters[0];
            let mut spec = json!({"cpus": cpus, "memory_mib": memory_mib});
            if let Some(t) = machine_type {
                spec["machine_type"] = json!(t);
            }
            if let Some(i) = image {
                spec["image"] = json!(i);
            }
            let body = json!({"project": project, "cluster": cluster, "spec": spec,
                "labels": labels(&pairs)?, "client_token": client_token});
            c.print(
                &c.call(Method::POST, "/api/v1/machines", Some(body))?,
                MACHINE_COLUMNS,
            );
        }
        MachineCommand::Register {
            project,
            cluster,
            host,
            client_token,
        } => {
            let body = json!({"project": project, "cluster": cluster, "host": host,
                "client_token": client_token});
            c.print(
                &c.call(Method::POST, "/api/v1/machines/register", Some(body))?,
                MACHINE_COLUMNS,
            );
        }
        MachineCommand::List {
            project,
            cluster,
            state,
        } => {
            let query: Vec<String> = [("project", project), ("cluster", cluster), ("state", state)]
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| format!("{k}={}", segment(&v))))
                .collect();
            let url = if query.is_empty() {
                "/api/v1/machines".to_owned()
            } else {
                format!("/api/v1/machines?{}", query.join("&"))
            };
            c.print(&c.call(Method::GET, &url, None)?, MACHINE_COLUMNS);
        }
        MachineCommand::Show { id } => {
            c.print(&c.call(Method::GET, &path(&id, ""), None)?, MACHINE_COLUMNS)
        }
        MachineCommand::Online { id } => c.print(
            &c.call(Method::POST, &path(&id, "online"), None)?,
            MACHINE_COLUMNS,
        ),
        MachineCommand::Offline { id, force, reason } => c.print(
            &c.call(
                Method::POST,
                &path(&id, "offline"),
                Some(json!({"force": force, "reason": reason})),
            )?,
            MACHINE_COLUMNS,
        ),
        MachineCommand::Stop { id, reason } => c.print(
            &c.call(
                Method::POST,
                &path(&id, "stop"),
                Some(json!({"reason": reason})),
            )?,
            MACHINE_COLUMNS,
        ),
        MachineCommand::Start { id } => c.print(
            &c.call(Method::POST, &path(&id, "start"), None)?,
            MACHINE_COLUMNS,
        ),
        MachineCommand::Retire { id } => c.print(
            &c.call(Method::POST, &path(&id, "retire"), None)?,
            MACHINE_COLUMNS,
        ),
        MachineCommand::History { id } => c.print(
            &c.call(Method::GET, &path(&id, "history"), None)?,
            HISTORY_COLUMNS,
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `berth quota …`.
pub fn quota(c: &Client, command: QuotaCommand) -> anyhow::Result<ExitCode> {
    let columns = &["project", "quota", "usage"];
    match command {
        QuotaCommand::Set {
            project,
            machines,
            cpus,
            memory_mib,
        } => {
            let mut body = Map::new();
            for (k, v) in [
                ("machines", machines.map(u64::from)),
                ("cpus", cpus.map(u64::from)),
                ("memory_mib", memory_mib),
            ] {
                if let Some(v) = v {
                    body.insert(k.into(), json!(v));
                }
            }
            c.print(
                &c.call(
                    Method::PUT,
                    &format!("/api/v1/projects/{}/quota", segment(&project)),
                    Some(Value::Object(body)),
                )?,
                columns,
            );
        }
        QuotaCommand::Show { project } => c.print(
            &c.call(
                Method::GET,
                &format!("/api/v1/projects/{}/quota", segment(&project)),
                None,
            )?,
            columns,
        ),
    }
    Ok(ExitCode::SUCCESS)
}
