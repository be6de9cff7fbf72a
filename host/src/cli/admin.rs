//! `berth user|project|member|robot|repo|audit …`: the admin API from the command line.

use std::process::ExitCode;

use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

use super::client::{Client, read_stdin_secret, segment};

/// `berth user …`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// List users.
    List,
    /// Create a user; without --password-stdin a password is generated and printed once.
    Create {
        /// Login name.
        username: String,
        /// Make a system administrator.
        #[arg(long)]
        admin: bool,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete a user.
    Delete {
        /// Login name.
        username: String,
    },
    /// Change a password (your own needs the old one on the first line of stdin, the new on the second).
    Passwd {
        /// Login name.
        username: String,
    },
    /// Disable a user (their logins and tokens stop working).
    Disable {
        /// Login name.
        username: String,
    },
    /// Enable a user.
    Enable {
        /// Login name.
        username: String,
    },
}

/// `berth project …`
#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// List the projects you can see.
    List,
    /// Create a project.
    Create {
        /// Name.
        name: String,
        /// Anyone may pull.
        #[arg(long)]
        public: bool,
    },
    /// Show a project.
    Show {
        /// Name.
        name: String,
    },
    /// Make a project public or private.
    SetPublic {
        /// Name.
        name: String,
        /// true or false.
        public: bool,
    },
    /// Delete a project (refused while it holds repositories, unless --force).
    Delete {
        /// Name.
        name: String,
        /// Delete its repositories too.
        #[arg(long)]
        force: bool,
    },
}

/// `berth member …`
#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// List a project's members.
    List {
        /// Project.
        project: String,
    },
    /// Give a user a role (admin, developer, guest) in a project.
    Add {
        /// Project.
        project: String,
        /// User.
        username: String,
        /// admin, developer or guest.
        role: String,
    },
    /// Remove a user from a project.
    Remove {
        /// Project.
        project: String,
        /// User.
        username: String,
    },
}

/// `berth robot …`
#[derive(Debug, Subcommand)]
pub enum RobotCommand {
    /// List robot accounts you manage.
    List,
    /// Create a robot account; its secret is printed once.
    Create {
        /// Short name (the account is robot$<name>).
        name: String,
        /// PROJECT=ACTIONS, e.g. team=pull,push (repeatable).
        #[arg(long = "permission", required = true)]
        permissions: Vec<String>,
        /// Days until it expires.
        #[arg(long)]
        expires_in_days: Option<u64>,
        /// What it is for.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Revoke a robot account for good.
    Delete {
        /// robot$<name>.
        name: String,
    },
    /// Disable (revoke) a robot account, reversibly.
    Disable {
        /// robot$<name>.
        name: String,
    },
    /// Enable a disabled robot account.
    Enable {
        /// robot$<name>.
        name: String,
    },
}

/// `berth repo …`
#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// List a project's repositories.
    List {
        /// Project.
        project: String,
    },
    /// List a repository's tags with their digests.
    Tags {
        /// Repository, e.g. team/app.
        repository: String,
    },
    /// Delete a tag.
    DeleteTag {
        /// Repository.
        repository: String,
        /// Tag.
        tag: String,
    },
    /// Delete a manifest and the tags pointing at it.
    DeleteManifest {
        /// Repository.
        repository: String,
        /// sha256:…
        digest: String,
    },
}

/// Runs `berth user …`.
pub fn user(c: &Client, cmd: UserCommand) -> anyhow::Result<ExitCode> {
    const COLUMNS: &[&str] = &["username", "admin", "disabled"];
    match cmd {
        UserCommand::List => c.print(
            &c.call(Method::GET, "/api/v1/users?page_size=500", None)?,
            COLUMNS,
        ),
        UserCommand::Create {
            username,
            admin,
            password_stdin,
        } => {
            let (password, generated) = if password_stdin {
                (read_stdin_secret()?, false)
            } else {
                (crate::auth::passwords::random_secret(), true)
            };
            let v = c.call(
                Method::POST,
                "/api/v1/users",
                Some(json!({"username": username, "password": password, "admin": admin})),
            )?;
            c.print(&v, COLUMNS);
            if generated {
                eprintln!("password for {username}: {password} (shown only this once)");
            }
        }
        UserCommand::Delete { username } => {
            c.call(
                Method::DELETE,
                &format!("/api/v1/users/{}", segment(&username)),
                None,
            )?;
            eprintln!("deleted user {username}");
        }
        UserCommand::Passwd { username } => {
            let first = read_stdin_secret()?;
            let body = match read_stdin_secret() {
                Ok(new) => json!({"old_password": first, "new_password": new}),
                Err(_) => json!({"new_password": first}),
            };
            c.call(
                Method::PUT,
                &format!("/api/v1/users/{}/password", segment(&username)),
                Some(body),
            )?;
            eprintln!("changed the password of {username}");
        }
        UserCommand::Disable { username } => c.print(
            &c.call(
                Method::PATCH,
                &format!("/api/v1/users/{}", segment(&username)),
                Some(json!({"disabled": true})),
            )?,
            COLUMNS,
        ),
        UserCommand::Enable { username } => c.print(
            &c.call(
                Method::PATCH,
                &format!("/api/v1/users/{}", segment(&username)),
                Some(json!({"disabled": false})),
            )?,
            COLUMNS,
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `berth project …`.
pub fn project(c: &Client, cmd: ProjectCommand) -> anyhow::Result<ExitCode> {
    const COLUMNS: &[&str] = &["name", "public", "repositories", "created_by"];
    match cmd {
        ProjectCommand::List => c.print(
            &c.call(Method::GET, "/api/v1/projects?page_size=500", None)?,
            COLUMNS,
        ),
        ProjectCommand::Create { name, public } => c.print(
            &c.call(
                Method::POST,
                "/api/v1/projects",
                Some(json!({"name": name, "public": public})),
            )?,
            COLUMNS,
        ),
        ProjectCommand::Show { name } => c.print(
            &c.call(
                Method::GET,
                &format!("/api/v1/projects/{}", segment(&name)),
                None,
            )?,
            COLUMNS,
        ),
        ProjectCommand::SetPublic { name, public } => c.print(
            &c.call(
                Method::PATCH,
                &format!("/api/v1/projects/{}", segment(&name)),
                Some(json!({"public": public})),
            )?,
            COLUMNS,
        ),
        ProjectCommand::Delete { name, force } => {
            c.call(
                Method::DELETE,
                &format!("/api/v1/projects/{}?force={force}", segment(&name)),
                None,
            )?;
            eprintln!("deleted project {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `berth member …`.
pub fn member(c: &Client, cmd: MemberCommand) -> anyhow::Result<ExitCode> {
    const COLUMNS: &[&str] = &["username", "role"];
    match cmd {
        MemberCommand::List { project } => c.print(
            &c.call(
                Method::GET,
                &format!("/api/v1/projects/{}/members", segment(&project)),
                None,
            )?,
            COLUMNS,
        ),
        MemberCommand::Add {
            project,
            username,
            role,
        } => c.print(
            &c.call(
                Method::PUT,
                &format!(
                    "/api/v1/projects/{}/members/{}",
                    segment(&project),
                    segment(&username)
                ),
                Some(json!({"role": role})),
            )?,
            COLUMNS,
        ),
        MemberCommand::Remove { project, username } => {
            c.call(
                Method::DELETE,
                &format!(
                    "/api/v1/projects/{}/members/{}",
                    segment(&project),
                    segment(&username)
                ),
                None,
            )?;
            eprintln!("removed {username} from {project}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `berth robot …`.
pub fn robot(c: &Client, cmd: RobotCommand) -> anyhow::Result<ExitCode> {
    const COLUMNS: &[&str] = &[
        "name",
        "permissions",
        "expires_at",
        "disabled",
        "description",
    ];
    match cmd {
        RobotCommand::List => c.print(&c.call(Method::GET, "/api/v1/robots", None)?, COLUMNS),
        RobotCommand::Create {
            name,
            permissions,
            expires_in_days,
            description,
        } => {
            let mut grants = Vec::new();
            for p in &permissions {
                let (project, actions) = p.split_once('=').ok_or_else(|| {
                    anyhow::anyhow!(
                        "--permission {p:?}: expected PROJECT=ACTIONS, e.g. team=pull,push"
                    )
                })?;
                grants.push(
                    json!({"project": project, "actions": actions.split(',').collect::<Vec<_>>()}),
                );
            }
            let v = c.call(
                Method::POST,
                "/api/v1/robots",
                Some(json!({"name": name, "permissions": grants, "expires_in_days": expires_in_days, "description": description})),
            )?;
            c.print(&v, COLUMNS);
            if c.output == super::client::Output::Table {
                eprintln!(
                    "secret for {}: {} (shown only this once)",
                    v["name"].as_str().unwrap_or_default(),
                    v["secret"].as_str().unwrap_or_default()
                );
            }
        }
        RobotCommand::Delete { name } => {
            c.call(
                Method::DELETE,
                &format!("/api/v1/robots/{}", segment(&name)),
                None,
            )?;
            eprintln!("deleted {name}");
        }
        RobotCommand::Disable { name } => c.print(
            &c.call(
                Method::PATCH,
                &format!("/api/v1/robots/{}", segment(&name)),
                Some(json!({"disabled": true})),
            )?,
            COLUMNS,
        ),
        RobotCommand::Enable { name } => c.print(
            &c.call(
                Method::PATCH,
                &format!("/api/v1/robots/{}", segment(&name)),
                Some(json!({"disabled": false})),
            )?,
            COLUMNS,
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `berth repo …`.
pub fn repo(c: &Client, cmd: RepoCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RepoCommand::List { project } => c.print(
            &c.call(
                Method::GET,
                &format!("/api/v1/projects/{}/repositories", segment(&project)),
                None,
            )?,
            &["name", "tags", "manifests"],
        ),
        RepoCommand::Tags { repository } => c.print(
            &c.call(
                Method::GET,
                &format!("/api/v1/repositories/{}/tags", segment(&repository)),
                None,
            )?,
            &["name", "digest"],
        ),
        RepoCommand::DeleteTag { repository, tag } => {
            c.call(
                Method::DELETE,
                &format!(
                    "/api/v1/repositories/{}/tags/{}",
                    segment(&repository),
                    segment(&tag)
                ),
                None,
            )?;
            eprintln!("deleted {repository}:{tag}");
        }
        RepoCommand::DeleteManifest { repository, digest } => {
            c.call(
                Method::DELETE,
                &format!(
                    "/api/v1/repositories/{}/manifests/{}",
                    segment(&repository),
                    segment(&digest)
                ),
                None,
            )?;
            eprintln!("deleted {repository}@{digest}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `berth audit`.
pub fn audit(
    c: &Client,
    actor: Option<String>,
    action: Option<String>,
    resource: Option<String>,
    limit: usize,
) -> anyhow::Result<ExitCode> {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("limit", &limit.to_string());
    for (k, v) in [("actor", actor), ("action", action), ("resource", resource)] {
        if let Some(v) = v {
            query.append_pair(k, &v);
        }
    }
    let mut v = c.call(
        Method::GET,
        &format!("/api/v1/audit?{}", query.finish()),
        None,
    )?;
    if let Some(entries) = v.as_array_mut() {
        for e in entries.iter_mut() {
            if let Some(at) = e["at"].as_u64() {
                let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at);
                e["time"] = json!(humantime::format_rfc3339_seconds(t).to_string());
            }
        }
    }
    c.print(
        &v,
        &[
            "time", "actor", "source", "action", "resource", "tag", "digest", "outcome",
        ],
    );
    Ok(ExitCode::SUCCESS)
}
