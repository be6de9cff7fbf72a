//! The `berth` command line: one module per subcommand.

pub mod admin;
pub mod client;
pub mod config_cmd;
pub mod cost;
pub mod fsck;
pub mod key;
pub mod login;
pub mod plugin;
pub mod replication;
pub mod scheduling;
pub mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, Overrides};

/// berth: a private OCI registry and container operations platform.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the registry server.
    Serve(serve::ServeArgs),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// Verify a data directory (blobs against digests, manifests' references, sessions).
    Fsck(fsck::FsckArgs),
    /// Keys that several nodes share (token signing, secrets).
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Check credentials against a server and remember them (mode 0600).
    Login(login::LoginArgs),
    /// Forget the stored credentials for a server.
    Logout {
        /// The server (default: the current one).
        server: Option<String>,
    },
    /// Users (system administrators).
    User {
        /// Server and output.
        #[command(flatten)]
        client: client::ClientArgs,
        /// What to do.
        #[command(subcommand)]
        command: admin::UserCommand,
    },
    /// Projects.
    Project {
        /// Server and output.
        #[command(flatten)]
        client: client::ClientArgs,
        /// What to do.
        #[command(subcommand)]
        command: admin::ProjectCommand,
    },
    /// Project members and their roles.
    Member {
        /// Server and output.
        #[command(flatten)]
        client: client::ClientArgs,
        /// What to do.
        #[command(subcommand)]
        command: admin::MemberCommand,
    },
    /// Robot accounts for CI.
    Robot {
        /// Server and output.
        #[command(flatten)]
        client: client::ClientArgs,
        /// What to do.
        #[command(subcommand)]
        command: admin::RobotCommand,
    },
    /// Repositories, tags and manifests.
    Repo {
        /// Server and output.
        #[command(flatten)]
        client: client::ClientArgs,
        /// What to do.
        #[command(subcommand)]
        command: admin::RepoCommand,
    },
    /// Plugins: load, inspect, grant, limit, call, push (system administrators).
    Plugin {
        /// Server and output.
        #[command(flatten)]
        client: client::ClientArgs,
        /// What to do.
        #[command(subcommand)]
        command: plugin::PluginCommand,
    },
    /// Replication: endpoints, policies, runs, jobs, status (system administrators).
    Replication {
        /// Server and output.
        #[command(flatten)]
        client: client::ClientArgs,
        /// What to do.
        #[command(subcommand)]
        command: replication::ReplicationCommand,
    },
    /// Clusters: where machines come from, who may use them (system administrators).
    Cluster {
        /// Server and output.
        #[command(flatten)]
        client: client::ClientArgs,
        /// What to do.
        #[command(subcommand)]
        command: scheduling::ClusterCommand,
    },
    /// A project's machines: create, list, online, offline, retire, history.
    Machine {
        /// Server and output.
        #[command(flatten)]
        client: client::ClientArgs,
        /// What to do.
        #[command(subcommand)]
        command: scheduling::MachineCommand,
    },
    /// What machines cost: reports, price sheets, accrual.
    Cost {
        /// Server and output.
        #[command(flatten)]
        client: client::ClientArgs,
        /// What to do.
        #[command(subcommand)]
        command: cost::CostCommand,
    },
    /// Projects' quotas of machines, vCPUs and memory.
    Quota {
        /// Server and output.
        #[command(flatten)]
        client: client::ClientArgs,
        /// What to do.
        #[command(subcommand)]
        command: scheduling::QuotaCommand,
    },
    /// The audit log (system administrators).
    Audit {
        /// Server and output.
        #[command(flatten)]
        client: client::ClientArgs,
        /// Only this actor.
        #[arg(long)]
        actor: Option<String>,
        /// Only this action (push, pull, delete, login, member.set, …).
        #[arg(long)]
        action: Option<String>,
        /// Only resources starting with this.
        #[arg(long)]
        resource: Option<String>,
        /// Most entries shown.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

/// Where configuration comes from; shared by every command that loads it.
#[derive(Debug, Args, Clone)]
pub struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long, env = "BERTH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on (server.listen), e.g. 127.0.0.1:5000 or 0.0.0.0:443.
    #[arg(long, env = "BERTH_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Data directory (storage.data_dir).
    #[arg(long, env = "BERTH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// PEM certificate chain; with --tls-key, serve HTTPS.
    #[arg(long, env = "BERTH_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "BERTH_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Log filter (log.level), e.g. info, debug, berth=trace.
    #[arg(long, env = "BERTH_LOG")]
    pub log_level: Option<String>,
}

impl ConfigArgs {
    /// The effective configuration.
    pub fn load(&self) -> anyhow::Result<Config> {
        let overrides = Overrides {
            listen: self.listen,
            data_dir: self.data_dir.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            log_level: self.log_level.clone(),
        };
        Config::load(self.config.as_deref(), &overrides)
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::run(&args),
        Command::Config(cmd) => config_cmd::run(cmd),
        Command::Fsck(args) => fsck::run(&args),
        Command::Key(command) => key::run(&command),
        Command::Login(args) => login::login(&args),
        Command::Logout { server } => login::logout(server.as_deref()),
        Command::User { client, command } => {
            admin::user(&client::Client::connect(&client)?, command)
        }
        Command::Project { client, command } => {
            admin::project(&client::Client::connect(&client)?, command)
        }
        Command::Member { client, command } => {
            admin::member(&client::Client::connect(&client)?, command)
        }
        Command::Robot { client, command } => {
            admin::robot(&client::Client::connect(&client)?, command)
        }
        Command::Repo { client, command } => {
            admin::repo(&client::Client::connect(&client)?, command)
        }
        Command::Cluster { client, command } => {
            scheduling::cluster(&client::Client::connect(&client)?, command)
        }
        Command::Machine { client, command } => {
            scheduling::machine(&client::Client::connect(&client)?, command)
        }
        Command::Cost { client, command } => {
            cost::cost(&client::Client::connect(&client)?, command)
        }
        Command::Quota { client, command } => {
            scheduling::quota(&client::Client::connect(&client)?, command)
        }
        // The function reference is built in: no server needed.
        Command::Plugin {
            command: plugin::PluginCommand::Functions { world },
            ..
        } => plugin::print_functions(world.as_deref()),
        Command::Plugin { client, command } => {
            plugin::run(&client::Client::connect(&client)?, command)
        }
        Command::Replication { client, command } => {
            replication::run(&client::Client::connect(&client)?, command)
        }
        Command::Audit {
            client,
            actor,
            action,
            resource,
            limit,
        } => admin::audit(
            &client::Client::connect(&client)?,
            actor,
            action,
            resource,
            limit,
        ),
    }
}
