//! `berth replication …`: endpoints, policies, runs, jobs and status, over the admin API.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::client::{Client, Output, read_stdin_secret, segment};

/// `berth replication …`
#[derive(Debug, Subcommand)]
pub enum ReplicationCommand {
    /// Registries to replicate with.
    #[command(subcommand)]
    Endpoint(EndpointCommand),
    /// What to replicate, where, when and how.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Queue a full run of a policy.
    Run {
        /// The policy.
        policy: String,
        /// Wait for the job to end; exit 1 unless it succeeded.
        #[arg(long)]
        wait: bool,
    },
    /// List jobs, newest first.
    Jobs {
        /// Only this policy's.
        #[arg(long)]
        policy: Option<String>,
        /// Only jobs in this status (pending, running, succeeded, failed, cancelled).
        #[arg(long)]
        status: Option<String>,
        /// Most jobs shown.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One job: show, retry, cancel.
    #[command(subcommand)]
    Job(JobCommand),
    /// Per policy: unfinished jobs and what is not yet delivered.
    Status,
}

/// `berth replication endpoint …`
#[derive(Debug, Subcommand)]
pub enum EndpointCommand {
    /// List endpoints.
    List,
    /// Create an endpoint.
    Create {
        /// Name.
        name: String,
        /// `http(s)://host[:port]`.
        #[arg(long)]
        url: String,
        /// berth, distribution or oci.
        #[arg(long, default_value = "oci")]
        kind: String,
        #[command(flatten)]
        settings: EndpointSettings,
    },
    /// Show an endpoint.
    Show {
        /// Name.
        name: String,
    },
    /// Change an endpoint.
    Update {
        /// Name.
        name: String,
        /// `http(s)://host[:port]`.
        #[arg(long)]
        url: Option<String>,
        /// berth, distribution or oci.
        #[arg(long)]
        kind: Option<String>,
        #[command(flatten)]
        settings: EndpointSettings,
    },
    /// Delete an endpoint no policy uses.
    Delete {
        /// Name.
        name: String,
    },
    /// Check that it answers as a registry and accepts the credentials.
    Check {
        /// Name.
        name: String,
    },
}

/// Endpoint settings shared by create and update.
#[derive(Debug, Args)]
pub struct EndpointSettings {
    /// The account berth logs in as there.
    #[arg(long)]
    username: Option<String>,
    /// Read its password (or robot secret) from standard input.
    #[arg(long)]
    password_stdin: bool,
    /// Accept any TLS certificate (prefer --ca-cert).
    #[arg(long)]
    insecure: bool,
    /// A PEM CA certificate to trust for this endpoint.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// Free text.
    #[arg(long)]
    description: Option<String>,
}

/// `berth replication policy …`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// List policies.
    List,
    /// Create a policy.
    Create {
        /// Name.
        name: String,
        #[command(flatten)]
        settings: PolicySettings,
    },
    /// Show a policy.
    Show {
        /// Name.
        name: String,
    },
    /// Change a policy (only the options given).
    Update {
        /// Name.
        name: String,
        #[command(flatten)]
        settings: PolicySettings,
    },
    /// Let a policy run on its triggers again.
    Enable {
        /// Name.
        name: String,
    },
    /// Stop a policy from running on any trigger.
    Disable {
        /// Name.
        name: String,
    },
    /// Delete a policy, cancelling its unfinished jobs.
    Delete {
        /// Name.
        name: String,
    },
}

/// Policy settings shared by create and update.
#[derive(Debug, Args)]
pub struct PolicySettings {
    /// An endpoint: where to send (push), or the one source (pull). Repeatable.
    #[arg(long = "endpoint")]
    endpoints: Vec<String>,
    /// Fetch from the endpoint instead of sending to it.
    #[arg(long)]
    pull: bool,
    /// Project glob.
    #[arg(long)]
    project: Option<String>,
    /// Repository glob (`team/**`).
    #[arg(long)]
    repository: Option<String>,
    /// Tag glob (`v[0-9]*`).
    #[arg(long)]
    tag: Option<String>,
    /// Replace the project on the destination.
    #[arg(long)]
    namespace: Option<String>,
    /// Cron schedule, UTC (`0 */15 * * * *` or `*/15 * * * *`).
    #[arg(long)]
    schedule: Option<String>,
    /// Run on every push and tag move (push policies).
    #[arg(long)]
    on_change: bool,
    /// Carry tag and manifest deletions.
    #[arg(long)]
    replicate_deletions: bool,
    /// Leave destination tags that point elsewhere alone.
    #[arg(long)]
    no_override: bool,
    /// Transfers of one job at once.
    #[arg(long)]
    concurrency: Option<u32>,
    /// Cap on the bandwidth of one job, megabits per second.
    #[arg(long)]
    bandwidth_mbps: Option<u32>,
    /// Keep users, projects, members, robots and replication settings converged with the
    /// endpoints (a dual-primary pair).
    #[arg(long)]
    metadata: bool,
    /// Acknowledge pushes only once the destinations have them (sync delivery).
    #[arg(long, conflicts_with = "async_delivery")]
    sync: bool,
    /// Acknowledge pushes at once and replicate after (the default).
    #[arg(long = "async")]
    async_delivery: bool,
    /// Sync: seconds a destination may be unreachable before pushes stop waiting.
    #[arg(long)]
    degrade_after_secs: Option<u64>,
    /// The strategy plugin (default star).
    #[arg(long)]
    strategy: Option<String>,
    /// The topology, from a JSON or TOML file.
    #[arg(long)]
    topology: Option<PathBuf>,
    /// Free text.
    #[arg(long)]
    description: Option<String>,
    /// Create it disabled.
    #[arg(long)]
    disabled: bool,
}

/// `berth replication job …`
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// A job with its tasks.
    Show {
        /// Job id.
        id: u64,
    },
    /// Queue a new job that runs again what a failed or cancelled job did not complete.
    Retry {
        /// Job id.
        id: u64,
    },
    /// Cancel a job.
    Cancel {
        /// Job id.
        id: u64,
    },
}

const ENDPOINT_COLUMNS: &[&str] = &[
    "name",
    "kind",
    "url",
    "username",
    "has_password",
    "insecure",
];
const POLICY_COLUMNS: &[&str] = &[
    "name",
    "enabled",
    "mode",
    "endpoints",
    "strategy",
    "delivery",
    "schedule",
    "on_change",
    "replicate_deletions",
];
const JOB_COLUMNS: &[&str] = &[
    "id", "policy", "status", "trigger", "tasks", "progress", "error",
];

/// Runs `berth replication …`.
pub fn run(c: &Client, cmd: ReplicationCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ReplicationCommand::Endpoint(cmd) => endpoint(c, cmd),
        ReplicationCommand::Policy(cmd) => policy(c, cmd),
        ReplicationCommand::Run { policy, wait } => {
            let job = c.call(
                Method::POST,
                &format!("/api/v1/replication/policies/{}/run", segment(&policy)),
                None,
            )?;
            if !wait {
                print_jobs(c, &job);
                return Ok(ExitCode::SUCCESS);
            }
            let id = job["id"]
                .as_u64()
                .context("the server answered without a job id")?;
            let done = wait_for(c, id)?;
            print_jobs(c, &done);
            Ok(if done["status"] == "succeeded" {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        ReplicationCommand::Jobs {
            policy,
            status,
            limit,
        } => {
            let mut query = vec![format!("limit={limit}")];
            if let Some(p) = policy {
                query.push(format!("policy={}", segment(&p)));
            }
            if let Some(s) = status {
                query.push(format!("status={}", segment(&s)));
            }
            let jobs = c.call(
                Method::GET,
                &format!("/api/v1/replication/jobs?{}", query.join("&")),
                None,
            )?;
            print_jobs(c, &jobs);
            Ok(ExitCode::SUCCESS)
        }
        ReplicationCommand::Job(JobCommand::Show { id }) => {
            let job = c.call(Method::GET, &format!("/api/v1/replication/jobs/{id}"), None)?;
            if c.output == Output::Json {
                c.print(&job, &[]);
            } else {
                print_jobs(c, &job);
                println!();
                let tasks: Vec<Value> = job["task_list"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|t| {
                        let mut t = t.clone();
                        t["what"] = Value::String(describe_op(&t["op"]));
                        t["outcome"] = t["error"].clone();
                        if t["outcome"].is_null() {
                            t["outcome"] = t["note"].clone();
                        }
                        t
                    })
                    .collect();
                c.print(
                    &Value::Array(tasks),
                    &[
                        "index", "wave", "source", "target", "what", "status", "attempts",
                        "progress", "outcome",
                    ],
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ReplicationCommand::Job(JobCommand::Retry { id }) => job_action(c, id, "retry"),
        ReplicationCommand::Job(JobCommand::Cancel { id }) => job_action(c, id, "cancel"),
        ReplicationCommand::Status => {
            let status = c.call(Method::GET, "/api/v1/replication/status", None)?;
            if c.output == Output::Json {
                c.print(&status, &[]);
            } else {
                println!(
                    "instance {}; {} unread changes; {} jobs running",
                    status["instance"].as_str().unwrap_or_default(),
                    status["unread_changes"],
                    status["running_jobs"]
                );
                c.print(
                    &status["policies"],
                    &[
                        "policy",
                        "enabled",
                        "unfinished_jobs",
                        "pending_tasks",
                        "pending_changes",
                        "last_job",
                        "last_status",
                    ],
                );
                for policy in status["policies"].as_array().into_iter().flatten() {
                    for d in policy["degraded"].as_array().into_iter().flatten() {
                        eprintln!(
                            "warning: sync policy {} is DEGRADED: pushes are acknowledged without {}, whose changes wait in the jobs: {}",
                            policy["policy"].as_str().unwrap_or_default(),
                            d["endpoint"].as_str().unwrap_or_default(),
                            d["error"].as_str().unwrap_or_default()
                        );
                    }
                }
                for warning in status["warnings"].as_array().into_iter().flatten() {
                    eprintln!("warning: {}", warning.as_str().unwrap_or_default());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `POST /jobs/{id}/{action}`, printing the job it answers with.
fn job_action(c: &Client, id: u64, action: &str) -> anyhow::Result<ExitCode> {
    let job = c.call(
        Method::POST,
        &format!("/api/v1/replication/jobs/{id}/{action}"),
        None,
    )?;
    print_jobs(c, &job);
    Ok(ExitCode::SUCCESS)
}

/// Polls a job until it ends.
fn wait_for(c: &Client, id: u64) -> anyhow::Result<Value> {
    loop {
        let job = c.call(Method::GET, &format!("/api/v1/replication/jobs/{id}"), None)?;
        if matches!(
            job["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            return Ok(job);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn print_jobs(c: &Client, value: &Value) {
    if c.output == Output::Json {
        c.print(value, JOB_COLUMNS);
        return;
    }
    let summarise = |job: &Value| {
        let mut job = job.clone();
        let t = &job["tasks"];
        job["tasks"] = Value::String(format!(
            "{}/{} done, {} failed",
            t["succeeded"], t["total"], t["failed"]
        ));
        let p = &job["progress"];
        job["progress"] = Value::String(format!(
            "{} bytes; blobs {} sent, {} skipped",
            p["bytes"], p["blobs_copied"], p["blobs_skipped"]
        ));
        job["trigger"] = job["trigger"]["type"].clone();
        job
    };
    let rows = match value {
        Value::Array(items) => Value::Array(items.iter().map(summarise).collect()),
        one => summarise(one),
    };
    c.print(&rows, JOB_COLUMNS);
}

fn describe_op(op: &Value) -> String {
    match op["type"].as_str() {
        Some("copy") => format!(
            "copy {}:{} → {}",
            op["repository"].as_str().unwrap_or_default(),
            op["reference"].as_str().unwrap_or_default(),
            op["destination"].as_str().unwrap_or_default()
        ),
        Some("delete-tag") => format!(
            "delete {}:{}",
            op["destination"].as_str().unwrap_or_default(),
            op["tag"].as_str().unwrap_or_default()
        ),
        Some("delete-manifest") => format!(
            "delete {}@{}",
            op["destination"].as_str().unwrap_or_default(),
            op["digest"].as_str().unwrap_or_default()
        ),
        _ => op.to_string(),
    }
}

fn endpoint(c: &Client, cmd: EndpointCommand) -> anyhow::Result<ExitCode> {
    let path = |name: &str| format!("/api/v1/replication/endpoints/{}", segment(name));
    match cmd {
        EndpointCommand::List => c.print(
            &c.call(Method::GET, "/api/v1/replication/endpoints", None)?,
            ENDPOINT_COLUMNS,
        ),
        EndpointCommand::Create {
            name,
            url,
            kind,
            settings,
        } => {
            let mut body = endpoint_body(&settings)?;
            body.insert("name".into(), json!(name));
            body.insert("url".into(), json!(url));
            body.insert("kind".into(), json!(kind));
            let v = c.call(
                Method::POST,
                "/api/v1/replication/endpoints",
                Some(Value::Object(body)),
            )?;
            c.print(&v, ENDPOINT_COLUMNS);
        }
        EndpointCommand::Show { name } => {
            c.print(&c.call(Method::GET, &path(&name), None)?, ENDPOINT_COLUMNS)
        }
        EndpointCommand::Update {
            name,
            url,
            kind,
            settings,
        } => {
            let mut body = endpoint_body(&settings)?;
            if !settings.insecure {
                body.remove("insecure");
            }
            if let Some(url) = url {
                body.insert("url".into(), json!(url));
            }
            if let Some(kind) = kind {
                body.insert("kind".into(), json!(kind));
            }
            let v = c.call(Method::PATCH, &path(&name), Some(Value::Object(body)))?;
            c.print(&v, ENDPOINT_COLUMNS);
        }
        EndpointCommand::Delete { name } => {
            c.call(Method::DELETE, &path(&name), None)?;
        }
        EndpointCommand::Check { name } => {
            let v = c.call(Method::POST, &format!("{}/check", path(&name)), None)?;
            c.print(&v, &["name", "healthy", "latency_ms", "error"]);
            if v["healthy"] != true {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn endpoint_body(s: &EndpointSettings) -> anyhow::Result<Map<String, Value>> {
    let mut body = Map::new();
    if let Some(u) = &s.username {
        body.insert("username".into(), json!(u));
    }
    if s.password_stdin {
        body.insert("password".into(), json!(read_stdin_secret()?));
    }
    body.insert("insecure".into(), json!(s.insecure));
    if let Some(path) = &s.ca_cert {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        body.insert("ca_cert".into(), json!(pem));
    }
    if let Some(d) = &s.description {
        body.insert("description".into(), json!(d));
    }
    Ok(body)
}

fn policy(c: &Client, cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    let path = |name: &str| format!("/api/v1/replication/policies/{}", segment(name));
    match cmd {
        PolicyCommand::List => c.print(
            &c.call(Method::GET, "/api/v1/replication/policies", None)?,
            POLICY_COLUMNS,
        ),
        PolicyCommand::Create { name, settings } => {
            let mut body = policy_body(&settings, true)?;
            body.insert("name".into(), json!(name));
            let v = c.call(
                Method::POST,
                "/api/v1/replication/policies",
                Some(Value::Object(body)),
            )?;
            c.print(&v, POLICY_COLUMNS);
        }
        PolicyCommand::Show { name } => {
            c.print(&c.call(Method::GET, &path(&name), None)?, POLICY_COLUMNS)
        }
        PolicyCommand::Update { name, settings } => {
            let body = policy_body(&settings, false)?;
            let v = c.call(Method::PATCH, &path(&name), Some(Value::Object(body)))?;
            c.print(&v, POLICY_COLUMNS);
        }
        PolicyCommand::Enable { name } => {
            let v = c.call(Method::PATCH, &path(&name), Some(json!({"enabled": true})))?;
            c.print(&v, POLICY_COLUMNS);
        }
        PolicyCommand::Disable { name } => {
            let v = c.call(Method::PATCH, &path(&name), Some(json!({"enabled": false})))?;
            c.print(&v, POLICY_COLUMNS);
        }
        PolicyCommand::Delete { name } => {
            c.call(Method::DELETE, &path(&name), None)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The JSON of the options given; `creating` also sends the switches' defaults.
fn policy_body(s: &PolicySettings, creating: bool) -> anyhow::Result<Map<String, Value>> {
    let mut body = Map::new();
    if !s.endpoints.is_empty() || creating {
        body.insert("endpoints".into(), json!(s.endpoints));
    }
    if s.pull {
        body.insert("mode".into(), json!("pull"));
    }
    if s.project.is_some() || s.repository.is_some() || s.tag.is_some() {
        body.insert(
            "filters".into(),
            json!({"project": s.project, "repository": s.repository, "tag": s.tag}),
        );
    }
    let switches = [
        (s.on_change, "on_change", json!(true)),
        (s.replicate_deletions, "replicate_deletions", json!(true)),
        (s.no_override, "override_existing", json!(false)),
        (s.metadata, "metadata", json!(true)),
        (s.sync, "delivery", json!("sync")),
        (s.async_delivery, "delivery", json!("async")),
        (s.disabled, "enabled", json!(false)),
    ];
    for (given, key, value) in switches {
        if given {
            body.insert(key.into(), value);
        }
    }
    let options = [
        (
            "destination_namespace",
            s.namespace.as_ref().map(|v| json!(v)),
        ),
        ("schedule", s.schedule.as_ref().map(|v| json!(v))),
        ("concurrency", s.concurrency.map(|v| json!(v))),
        ("bandwidth_limit_mbps", s.bandwidth_mbps.map(|v| json!(v))),
        ("degrade_after_secs", s.degrade_after_secs.map(|v| json!(v))),
        ("strategy", s.strategy.as_ref().map(|v| json!(v))),
        ("description", s.description.as_ref().map(|v| json!(v))),
    ];
    for (key, value) in options {
        if let Some(value) = value {
            body.insert(key.into(), value);
        }
    }
    if let Some(path) = &s.topology {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let topology: Value = if path.extension().is_some_and(|e| e == "toml") {
            toml::from_str(&text).with_context(|| format!("{} is not TOML", path.display()))?
        } else {
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", path.display()))?
        };
        body.insert("topology".into(), topology);
    }
    Ok(body)
}
