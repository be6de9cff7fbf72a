//! Facts about a host, gathered over SSH in one round trip: its OS, architecture, kernel,
//! cgroup version, service manager and package manager, and the packages, kernel
//! parameters, services and files that the steps asked about — never more. A step plans
//! from facts alone, so what it may know is what it declared.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::ssh::{Command, Connection, SshError};

/// What to gather beyond the host's identity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactRequest {
    pub packages: BTreeSet<String>,
    /// Kernel parameters, as `sysctl` names them (`net.ipv4.ip_forward`).
    pub sysctl: BTreeSet<String>,
    pub services: BTreeSet<String>,
    /// Absolute paths.
    pub files: BTreeSet<String>,
}

impl FactRequest {
    /// Everything both ask for.
    pub fn merge(&mut self, other: &FactRequest) {
        self.packages.extend(other.packages.iter().cloned());
        self.sysctl.extend(other.sysctl.iter().cloned());
        self.services.extend(other.services.iter().cloned());
        self.files.extend(other.files.iter().cloned());
    }
}

/// Which package manager installs packages on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PackageManager {
    Apt,
    Dnf,
    Zypper,
    Apk,
}

/// A file, directory or other thing at a path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFact {
    /// `regular file`, `directory`, `symbolic link`… as `stat` names it.
    pub kind: String,
    /// Permission bits (`0o644`).
    pub mode: u32,
    pub owner: String,
    pub group: String,
    /// Hex sha256 of a regular file's content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl FileFact {
    /// Whether it is a regular file.
    pub fn is_file(&self) -> bool {
        self.kind.starts_with("regular")
    }

    /// Whether it is a directory.
    pub fn is_dir(&self) -> bool {
        self.kind == "directory"
    }
}

/// A service as its service manager sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceFact {
    /// `systemctl is-enabled`: `enabled`, `disabled`, `masked`, `not-found`…
    pub enabled: String,
    /// `systemctl is-active`: `active`, `inactive`, `failed`…
    pub active: String,
}

/// What berth knows of a host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    pub hostname: String,
    /// `ID` of os-release (`debian`, `ubuntu`, `rhel`, `alpine`…).
    pub os_id: String,
    /// `VERSION_ID`.
    pub os_version: String,
    /// `ID_LIKE`, split.
    pub os_like: Vec<String>,
    /// `uname -m`.
    pub arch: String,
    /// `uname -r`.
    pub kernel: String,
    /// 1 or 2; none when `/sys/fs/cgroup` is neither.
    pub cgroup_version: Option<u8>,
    /// Whether systemd manages services (`/run/systemd/system` exists).
    pub systemd: bool,
    /// The package manager for the OS, where it has one berth knows.
    pub package_manager: Option<PackageManager>,
    /// Installed version of each package asked about; none when not installed.
    pub packages: BTreeMap<String, Option<String>>,
    /// Each kernel parameter's current value; none when the host has no such key.
    pub sysctl: BTreeMap<String, Option<String>>,
    /// Each service asked about (empty without systemd).
    pub services: BTreeMap<String, ServiceFact>,
    /// Each path asked about; none when nothing is there.
    pub files: BTreeMap<String, Option<FileFact>>,
}

/// Why facts could not be gathered.
#[derive(Debug, thiserror::Error)]
pub enum FactError {
    #[error(transparent)]
    Ssh(#[from] SshError),
    /// A name that cannot be asked about safely.
    #[error("cannot gather facts about {0}")]
    Invalid(String),
    /// The host's answer was not what the script prints.
    #[error("the host's facts cannot be read: {0}")]
    Unreadable(String),
}

/// Whether `key` is a kernel parameter name (`net.ipv4.conf.all.forwarding`).
pub fn valid_sysctl_key(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with('.')
        && !key.ends_with('.')
        && !key.contains("..")
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Whether `name` is a package or service name the host's tools take as a name, never as
/// an option or a pattern.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | '@' | ':'))
}

/// The shell script that prints the facts `request` asks for, one record a line, fields
/// apart by tabs; what a host controls (values, paths) is base64, so no tab or newline in
/// it can forge a record.
pub fn script(request: &FactRequest) -> Result<String, FactError> {
    let quote = |s: &str| {
        shlex::try_quote(s)
            .map(|q| q.into_owned())
            .map_err(|_| FactError::Invalid(format!("{s:?}")))
    };
    let mut out = String::from(
        "b64() { base64 | tr -d '\\n'; }\n\
         if [ -r /etc/os-release ]; then . /etc/os-release; fi\n\
         printf 'os\\t%s\\t%s\\t%s\\n' \"$(printf %s \"$ID\" | b64)\" \"$(printf %s \"$VERSION_ID\" | b64)\" \"$(printf %s \"$ID_LIKE\" | b64)\"\n\
         printf 'arch\\t%s\\n' \"$(uname -m | b64)\"\n\
         printf 'kernel\\t%s\\n' \"$(uname -r | b64)\"\n\
         printf 'hostname\\t%s\\n' \"$(cat /proc/sys/kernel/hostname | b64)\"\n\
         printf 'cgroup\\t%s\\n' \"$(stat -fc %T /sys/fs/cgroup 2>/dev/null | b64)\"\n\
         if [ -d /run/systemd/system ]; then echo 'systemd\tyes'; else echo 'systemd\tno'; fi\n\
         for b in apt-get dnf zypper apk; do command -v $b >/dev/null 2>&1 && printf 'tool\\t%s\\n' $b; done\n\
         pkgver() {\n\
           if command -v dpkg-query >/dev/null 2>&1; then\n\
             s=$(dpkg-query -W -f='${db:Status-Status} ${Version}' \"$1\" 2>/dev/null) || return 0\n\
             case $s in installed\\ *) printf %s \"${s#installed }\";; esac\n\
           elif command -v rpm >/dev/null 2>&1; then\n\
             rpm -q --qf '%{VERSION}-%{RELEASE}' \"$1\" 2>/dev/null || true\n\
           elif command -v apk >/dev/null 2>&1; then\n\
             apk info -e \"$1\" >/dev/null 2>&1 && apk info -v \"$1\" 2>/dev/null | head -n 1 | sed \"s/^$1-//\"\n\
           fi\n\
         }\n",
    );
    for name in &request.packages {
        if !valid_name(name) {
            return Err(FactError::Invalid(format!("package {name:?}")));
        }
        let q = quote(name)?;
        out.push_str(&format!(
            "v=$(pkgver {q}); if [ -n \"$v\" ]; then printf 'pkg\\t%s\\t%s\\n' {q} \"$(printf %s \"$v\" | b64)\"; else printf 'pkg\\t%s\\t-\\n' {q}; fi\n"
        ));
    }
    for key in &request.sysctl {
        if !valid_sysctl_key(key) {
            return Err(FactError::Invalid(format!("kernel parameter {key:?}")));
        }
        let path = quote(&format!("/proc/sys/{}", key.replace('.', "/")))?;
        let q = quote(key)?;
        out.push_str(&format!(
            "if [ -f {path} ] && v=$(cat {path} 2>/dev/null); then printf 'sysctl\\t%s\\t%s\\n' {q} \"$(printf %s \"$v\" | b64)\"; else printf 'sysctl\\t%s\\t-\\n' {q}; fi\n"
        ));
    }
    for name in &request.services {
        if !valid_name(name) {
            return Err(FactError::Invalid(format!("service {name:?}")));
        }
        let q = quote(name)?;
        out.push_str(&format!(
            "if [ -d /run/systemd/system ]; then printf 'svc\\t%s\\t%s\\t%s\\n' {q} \"$(systemctl is-enabled {q} 2>/dev/null || true)\" \"$(systemctl is-active {q} 2>/dev/null || true)\"; fi\n"
        ));
    }
    for path in &request.files {
        if !path.starts_with('/') {
            return Err(FactError::Invalid(format!("path {path:?} (not absolute)")));
        }
        let q = quote(path)?;
        out.push_str(&format!(
            "p=$(printf %s {q} | b64)\n\
             if [ -e {q} ] || [ -L {q} ]; then\n\
               h=-; if [ -f {q} ] && [ ! -L {q} ]; then h=$(sha256sum < {q} | cut -d' ' -f1); fi\n\
               printf 'file\\t%s\\t%s\\t%s\\t%s\\t%s\\t%s\\n' \"$p\" \"$(stat -c %F {q} | b64)\" \"$(stat -c %a {q})\" \"$(stat -c %U {q} | b64)\" \"$(stat -c %G {q} | b64)\" \"$h\"\n\
             else printf 'file\\t%s\\t-\\n' \"$p\"; fi\n"
        ));
    }
    out.push_str("echo end\n");
    Ok(out)
}

fn decode(field: &str) -> Result<String, FactError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(field)
        .map_err(|e| FactError::Unreadable(format!("{field:?}: {e}")))?;
    String::from_utf8(bytes).map_err(|e| FactError::Unreadable(e.to_string()))
}

/// Reads what [`script`] printed.
pub fn parse(output: &str) -> Result<Facts, FactError> {
    let mut facts = Facts::default();
    let mut tools: Vec<&str> = Vec::new();
    let mut ended = false;
    for line in output.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        let bad = || FactError::Unreadable(format!("line {line:?}"));
        match fields.as_slice() {
            ["os", id, version, like] => {
                facts.os_id = decode(id)?;
                facts.os_version = decode(version)?;
                facts.os_like = decode(like)?
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect();
            }
            ["arch", v] => facts.arch = decode(v)?.trim().to_owned(),
            ["kernel", v] => facts.kernel = decode(v)?.trim().to_owned(),
            ["hostname", v] => facts.hostname = decode(v)?.trim().to_owned(),
            ["cgroup", v] => {
                facts.cgroup_version = match decode(v)?.trim() {
                    "cgroup2fs" => Some(2),
                    "tmpfs" => Some(1),
                    _ => None,
                }
            }
            ["systemd", v] => facts.systemd = *v == "yes",
            ["tool", v] => tools.push(v),
            ["pkg", name, "-"] => {
                facts.packages.insert(name.to_string(), None);
            }
            ["pkg", name, version] => {
                facts
                    .packages
                    .insert(name.to_string(), Some(decode(version)?));
            }
            ["sysctl", key, "-"] => {
                facts.sysctl.insert(key.to_string(), None);
            }
            ["sysctl", key, value] => {
                facts
                    .sysctl
                    .insert(key.to_string(), Some(decode(value)?.trim_end().to_owned()));
            }
            ["svc", name, enabled, active] => {
                facts.services.insert(
                    name.to_string(),
                    ServiceFact {
                        enabled: if enabled.is_empty() {
                            "not-found".into()
                        } else {
                            enabled.to_string()
                        },
                        active: active.to_string(),
                    },
                );
            }
            ["file", path, "-"] => {
                facts.files.insert(decode(path)?, None);
            }
            ["file", path, kind, mode, owner, group, hash] => {
                let mode = u32::from_str_radix(mode, 8).map_err(|_| bad())?;
                facts.files.insert(
                    decode(path)?,
                    Some(FileFact {
                        kind: decode(kind)?.trim().to_owned(),
                        mode,
                        owner: decode(owner)?.trim().to_owned(),
                        group: decode(group)?.trim().to_owned(),
                        sha256: (*hash != "-").then(|| hash.to_string()),
                    }),
                );
            }
            ["end"] => ended = true,
            _ => return Err(bad()),
        }
    }
    if !ended {
        return Err(FactError::Unreadable("the script did not finish".into()));
    }
    facts.package_manager = package_manager(&facts, &tools);
    Ok(facts)
}

/// The package manager for the host's OS family, if its tool is there.
fn package_manager(facts: &Facts, tools: &[&str]) -> Option<PackageManager> {
    let family: Vec<&str> = std::iter::once(facts.os_id.as_str())
        .chain(facts.os_like.iter().map(String::as_str))
        .collect();
    let is = |names: &[&str]| family.iter().any(|f| names.contains(f));
    let has = |tool: &str| tools.contains(&tool);
    if is(&["debian", "ubuntu"]) && has("apt-get") {
        Some(PackageManager::Apt)
    } else if is(&["rhel", "fedora", "centos", "rocky", "almalinux"]) && has("dnf") {
        Some(PackageManager::Dnf)
    } else if is(&["suse", "opensuse", "sles", "opensuse-leap"]) && has("zypper") {
        Some(PackageManager::Zypper)
    } else if is(&["alpine"]) && has("apk") {
        Some(PackageManager::Apk)
    } else {
        None
    }
}

/// Gathers the facts `request` asks for over `connection`, within `timeout`.
pub async fn gather(
    connection: &Connection,
    request: &FactRequest,
    timeout: Duration,
) -> Result<Facts, FactError> {
    let script = script(request)?;
    let out = connection
        .run(&Command {
            argv: vec!["sh".into(), "-s".into()],
            stdin: Some(script.into_bytes()),
            timeout,
            ..Command::default()
        })
        .await?;
    if !out.success() {
        return Err(FactError::Unreadable(format!(
            "the fact script exited {:?}: {}",
            out.exit_code,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    parse(&String::from_utf8_lossy(&out.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    /// The script run by this machine's own shell over files it makes: what a host
    /// controls (a path with a tab and a newline, a value with tabs) comes back intact
    /// and cannot forge a record.
    #[test]
    fn the_script_reads_what_a_shell_finds_and_hostile_names_stay_data() {
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join("tab\there\nnewline\tfile\tx");
        std::fs::write(&odd, b"content\n").unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"").unwrap();
        let request = FactRequest {
            packages: BTreeSet::from(["no-such-package-berth".to_string()]),
            sysctl: BTreeSet::from(["net.ipv4.tcp_rmem".to_string(), "no.such.key".to_string()]),
            services: BTreeSet::new(),
            files: BTreeSet::from([
                odd.to_string_lossy().into_owned(),
                plain.to_string_lossy().into_owned(),
                dir.path().to_string_lossy().into_owned(),
                "/nonexistent/berth".to_string(),
            ]),
        };
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script(&request).unwrap())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let facts = parse(&String::from_utf8_lossy(&out.stdout)).unwrap();
        assert!(!facts.arch.is_empty() && !facts.kernel.is_empty());
        assert_eq!(facts.packages["no-such-package-berth"], None);
        let rmem = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_rmem").unwrap();
        assert_eq!(
            facts.sysctl["net.ipv4.tcp_rmem"].as_deref(),
            Some(rmem.trim_end())
        );
        assert!(rmem.contains('\t'));
        assert_eq!(facts.sysctl["no.such.key"], None);
        let file = facts.files[&odd.to_string_lossy().into_owned()]
            .clone()
            .unwrap();
        assert!(file.is_file());
        assert_eq!(
            file.sha256.as_deref(),
            Some("434728a410a78f56fc1b5899c3593436e61ab0c731e9072d95e96db290205e53")
        );
        assert_eq!((file.mode, file.owner.as_str()), (0o644, "root"));
        assert!(
            facts.files[&dir.path().to_string_lossy().into_owned()]
                .as_ref()
                .unwrap()
                .is_dir()
        );
        assert_eq!(facts.files["/nonexistent/berth"], None);
        assert_eq!(facts.files.len(), 4);
    }

    #[test]
    fn names_that_would_be_options_or_code_are_refused() {
        for (request, what) in [
            (
                FactRequest {
                    packages: BTreeSet::from(["--force-yes".to_string()]),
                    ..FactRequest::default()
                },
                "package",
            ),
            (
                FactRequest {
                    services: BTreeSet::from(["ssh; reboot".to_string()]),
                    ..FactRequest::default()
                },
                "service",
            ),
            (
                FactRequest {
                    sysctl: BTreeSet::from(["../../etc/shadow".to_string()]),
                    ..FactRequest::default()
                },
                "kernel parameter",
            ),
            (
                FactRequest {
                    files: BTreeSet::from(["relative/path".to_string()]),
                    ..FactRequest::default()
                },
                "path",
            ),
        ] {
            let refused = script(&request).unwrap_err().to_string();
            assert!(refused.contains(what), "{refused}");
        }
    }

    #[test]
    fn the_package_manager_follows_the_os_family_and_its_tool() {
        let facts = |id: &str, like: &str| Facts {
            os_id: id.into(),
            os_like: like.split_whitespace().map(str::to_owned).collect(),
            ..Facts::default()
        };
        assert_eq!(
            package_manager(&facts("ubuntu", "debian"), &["apt-get"]),
            Some(PackageManager::Apt)
        );
        assert_eq!(
            package_manager(&facts("rocky", "rhel centos fedora"), &["dnf"]),
            Some(PackageManager::Dnf)
        );
        assert_eq!(
            package_manager(&facts("opensuse-leap", "suse opensuse"), &["zypper"]),
            Some(PackageManager::Zypper)
        );
        assert_eq!(
            package_manager(&facts("alpine", ""), &["apk"]),
            Some(PackageManager::Apk)
        );
        // The family without its tool, or a tool on an unknown family: none, not a guess.
        assert_eq!(package_manager(&facts("debian", ""), &[]), None);
        assert_eq!(package_manager(&facts("gentoo", ""), &["apt-get"]), None);
    }

    #[test]
    fn a_truncated_or_forged_answer_is_refused() {
        let good = format!(
            "os\t{}\t{}\t\narch\t{}\nend\n",
            b64("debian"),
            b64("12"),
            b64("x86_64")
        );
        assert_eq!(parse(&good).unwrap().os_id, "debian");
        assert!(parse("os\tZGViaWFu\tMTI=\t\n").is_err(), "no end");
        assert!(parse(&format!("{good}pkg\tx\n")).is_err());
        assert!(parse("file\t!!!\t-\nend\n").is_err());
    }
}
