//! The actions a host-init step's plan is made of, as the host applies them: a package, a
//! file, a directory, a kernel parameter, a service, a guarded command. Each says which
//! facts decide whether it has anything to do, so "already so" is judged on fresh facts
//! (`ok`), and only what differs is changed (`changed`) — or, in check mode, shown.

use serde::{Deserialize, Serialize};

use super::facts::{FactRequest, valid_name, valid_sysctl_key};

/// Whether a package should be there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PackageState {
    Present,
    Absent,
}

/// One action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Action {
    /// A package from the distribution's repositories, through the host's package
    /// manager (chosen from its OS facts).
    Package {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<String>,
        state: PackageState,
    },
    /// A whole file: its content, mode and ownership; written to a temporary file beside
    /// it and renamed over it, so no reader ever sees half of it.
    File {
        path: String,
        content: Vec<u8>,
        mode: u32,
        owner: String,
        group: String,
    },
    /// A directory (and its parents).
    Directory {
        path: String,
        mode: u32,
        owner: String,
        group: String,
    },
    /// A kernel parameter: set now, and persisted under `/etc/sysctl.d`.
    Sysctl { key: String, value: String },
    /// A service's boot-time and current state, through systemd.
    Service {
        name: String,
        enabled: bool,
        running: bool,
    },
    /// A command, run only when its guards say so.
    Command {
        argv: Vec<String>,
        #[serde(default)]
        env: Vec<(String, String)>,
        /// Run as this user instead of the connection's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
        /// Seconds it may take.
        timeout_secs: u32,
        /// Skipped when this path exists.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        creates: Option<String>,
        /// Skipped when this command exits 0.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unless: Option<Vec<String>>,
        /// Exit codes that count as success (default: 0).
        #[serde(default)]
        ok_codes: Vec<u32>,
    },
}

/// Where a kernel parameter berth sets is persisted.
pub fn sysctl_file(key: &str) -> String {
    format!("/etc/sysctl.d/90-berth-{key}.conf")
}

/// What a persisted kernel parameter's file holds.
pub fn sysctl_line(key: &str, value: &str) -> String {
    format!("{key} = {value}\n")
}

/// A kernel parameter's value as the kernel prints it: words apart by one space (the
/// kernel separates with tabs, a plan may write spaces).
pub fn normalise_sysctl(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Action {
    /// What it is about, for reports: `package chrony`, `file /etc/chrony/chrony.conf`.
    pub fn subject(&self) -> String {
        match self {
            Action::Package { name, .. } => format!("package {name}"),
            Action::File { path, .. } => format!("file {path}"),
            Action::Directory { path, .. } => format!("directory {path}"),
            Action::Sysctl { key, .. } => format!("sysctl {key}"),
            Action::Service { name, .. } => format!("service {name}"),
            Action::Command { argv, .. } => format!("command {}", argv.join(" ")),
        }
    }

    /// The facts that decide whether it has anything to do.
    pub fn facts_needed(&self) -> FactRequest {
        let mut request = FactRequest::default();
        match self {
            Action::Package { name, .. } => {
                request.packages.insert(name.clone());
            }
            Action::File { path, .. } | Action::Directory { path, .. } => {
                request.files.insert(path.clone());
            }
            Action::Sysctl { key, .. } => {
                request.sysctl.insert(key.clone());
                request.files.insert(sysctl_file(key));
            }
            Action::Service { name, .. } => {
                request.services.insert(name.clone());
            }
            Action::Command { creates, .. } => {
                if let Some(path) = creates {
                    request.files.insert(path.clone());
                }
            }
        }
        request
    }

    /// Refuses what cannot be applied safely: names that a tool would read as options,
    /// relative paths, modes beyond the permission bits, empty commands.
    pub fn validate(&self) -> Result<(), String> {
        let absolute = |path: &str| {
            if path.starts_with('/') && !path.split('/').any(|part| part == "..") {
                Ok(())
            } else {
                Err(format!("{path:?} is not an absolute path without `..`"))
            }
        };
        let account = |name: &str| {
            let ok = !name.is_empty()
                && !name.starts_with('-')
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if ok {
                Ok(())
            } else {
                Err(format!("{name:?} is not a user or group name"))
            }
        };
        let mode = |mode: u32| {
            if mode <= 0o7777 {
                Ok(())
            } else {
                Err(format!("mode {mode:o} is beyond the permission bits"))
            }
        };
        match self {
            Action::Package { name, version, .. } => {
                if !valid_name(name) {
                    return Err(format!("{name:?} is not a package name"));
                }
                if let Some(v) = version
                    && (v.is_empty()
                        || !v
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || ".:~+-_".contains(c)))
                {
                    return Err(format!("{v:?} is not a package version"));
                }
                Ok(())
            }
            Action::File {
                path,
                mode: m,
                owner,
                group,
                ..
            }
            | Action::Directory {
                path,
                mode: m,
                owner,
                group,
            } => {
                absolute(path)?;
                mode(*m)?;
                account(owner)?;
                account(group)
            }
            Action::Sysctl { key, value } => {
                if !valid_sysctl_key(key) {
                    return Err(format!("{key:?} is not a kernel parameter"));
                }
                if value.contains(['\n', '\0']) || value.trim().is_empty() {
                    return Err(format!("{value:?} is not a kernel parameter's value"));
                }
                Ok(())
            }
            Action::Service { name, .. } => {
                if valid_name(name) {
                    Ok(())
                } else {
                    Err(format!("{name:?} is not a service name"))
                }
            }
            Action::Command {
                argv,
                user,
                creates,
                unless,
                timeout_secs,
                ..
            } => {
                if argv.is_empty() || argv[0].is_empty() {
                    return Err("a command needs a program".into());
                }
                if unless.as_ref().is_some_and(|u| u.is_empty()) {
                    return Err("an `unless` guard needs a program".into());
                }
                if *timeout_secs == 0 {
                    return Err("a command needs a time limit".into());
                }
                if let Some(user) = user {
                    account(user)?;
                }
                if let Some(path) = creates {
                    absolute(path)?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, mode: u32, owner: &str) -> Action {
        Action::File {
            path: path.into(),
            content: b"x".to_vec(),
            mode,
            owner: owner.into(),
            group: "root".into(),
        }
    }

    #[test]
    fn what_a_tool_would_misread_is_refused() {
        assert!(file("/etc/x", 0o644, "root").validate().is_ok());
        for bad in [
            file("etc/x", 0o644, "root"),
            file("/etc/../root/.ssh/authorized_keys", 0o644, "root"),
            file("/etc/x", 0o100644, "root"),
            file("/etc/x", 0o644, "-r"),
            file("/etc/x", 0o644, "root:root"),
            Action::Package {
                name: "-oDpkg::Pre-Invoke=reboot".into(),
                version: None,
                state: PackageState::Present,
            },
            Action::Package {
                name: "chrony".into(),
                version: Some("1 2".into()),
                state: PackageState::Present,
            },
            Action::Sysctl {
                key: "net/../../x".into(),
                value: "1".into(),
            },
            Action::Sysctl {
                key: "net.core.somaxconn".into(),
                value: "1\nkernel.panic = 1".into(),
            },
            Action::Service {
                name: "ssh --now".into(),
                enabled: true,
                running: true,
            },
            Action::Command {
                argv: vec![],
                env: vec![],
                user: None,
                timeout_secs: 10,
                creates: None,
                unless: None,
                ok_codes: vec![],
            },
            Action::Command {
                argv: vec!["true".into()],
                env: vec![],
                user: None,
                timeout_secs: 0,
                creates: None,
                unless: None,
                ok_codes: vec![],
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_sysctl_needs_its_value_and_its_persisted_file() {
        let action = Action::Sysctl {
            key: "net.ipv4.ip_forward".into(),
            value: "1".into(),
        };
        let needed = action.facts_needed();
        assert!(needed.sysctl.contains("net.ipv4.ip_forward"));
        assert!(
            needed
                .files
                .contains("/etc/sysctl.d/90-berth-net.ipv4.ip_forward.conf")
        );
        assert_eq!(
            normalise_sysctl("4096\t87380  6291456"),
            "4096 87380 6291456"
        );
    }
}
