//! Applying one action to a host over SSH — or, in check mode, saying what would change,
//! as a diff, touching nothing. Whether there is anything to do is judged from the facts
//! the action declared (`Action::facts_needed`), gathered fresh: an action that finds its
//! host already so reports `ok` and runs nothing.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::actions::{Action, PackageState, normalise_sysctl, sysctl_file, sysctl_line};
use super::facts::{Facts, FileFact, PackageManager};
use super::ssh::{Command, Connection, Output, SshError};

/// Apply, or only show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Apply,
    Check,
}

/// How an action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Already so; nothing ran.
    Ok,
    /// Changed (in check mode: would change).
    Changed,
    /// It could not be applied; the report says why.
    Failed,
    /// It cannot be applied where this host runs (a global kernel parameter inside a
    /// container, a service without a service manager); said, never passed over.
    CannotApplyHere,
}

/// What one action did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionReport {
    /// `file /etc/chrony/chrony.conf`…
    pub subject: String,
    pub outcome: Outcome,
    /// What changes (or would), as a unified diff or `- before` / `+ after` lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// Why, where a message helps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Of the command that failed or changed something, when one ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<u32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stdout: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stderr: String,
}

impl ActionReport {
    fn new(action: &Action, outcome: Outcome) -> ActionReport {
        ActionReport {
            subject: action.subject(),
            outcome,
            diff: None,
            message: None,
            exit_code: None,
            stdout: String::new(),
            stderr: String::new(),
        }
    }

    fn with_diff(mut self, diff: String) -> ActionReport {
        self.diff = Some(diff);
        self
    }

    fn with_message(mut self, message: impl Into<String>) -> ActionReport {
        self.message = Some(message.into());
        self
    }

    fn with_output(mut self, out: &Output) -> ActionReport {
        self.exit_code = out.exit_code;
        self.stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        self.stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if let Some(signal) = &out.signal {
            self.message = Some(format!("killed by signal {signal}"));
        }
        self
    }
}

/// The longest a file's old content is fetched for a diff.
const DIFF_LIMIT: usize = 256 * 1024;

/// Applies `action` to the host behind `connection` whose fresh facts are `facts`, or in
/// check mode reports what would change. Each command it runs may take `timeout` (a
/// command action's own limit wins for it).
pub async fn apply(
    connection: &Connection,
    facts: &Facts,
    action: &Action,
    mode: Mode,
    timeout: Duration,
) -> ActionReport {
    if let Err(why) = action.validate() {
        return ActionReport::new(action, Outcome::Failed).with_message(why);
    }
    let step = Step {
        connection,
        facts,
        action,
        mode,
        timeout,
    };
    let result = match action {
        Action::File {
            path,
            content,
            mode: m,
            owner,
            group,
        } => step.file(path, content, *m, owner, group).await,
        Action::Directory {
            path,
            mode: m,
            owner,
            group,
        } => step.directory(path, *m, owner, group).await,
        Action::Sysctl { key, value } => step.sysctl(key, value).await,
        Action::Service {
            name,
            enabled,
            running,
        } => Ok(step.service(name, *enabled, *running).await),
        Action::Package {
            name,
            version,
            state,
        } => step.package(name, version.as_deref(), *state).await,
        Action::Command { .. } => step.command().await,
    };
    result
        .unwrap_or_else(|e| ActionReport::new(action, Outcome::Failed).with_message(e.to_string()))
}

struct Step<'a> {
    connection: &'a Connection,
    facts: &'a Facts,
    action: &'a Action,
    mode: Mode,
    timeout: Duration,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `- owner:group mode` / `+ …` lines for metadata that differs.
fn metadata_diff(current: Option<&FileFact>, mode: u32, owner: &str, group: &str) -> String {
    let wanted = format!("{owner}:{group} {mode:04o}");
    match current {
        Some(c) if (c.mode, c.owner.as_str(), c.group.as_str()) != (mode, owner, group) => {
            format!("- {}:{} {:04o}\n+ {wanted}\n", c.owner, c.group, c.mode)
        }
        Some(_) => String::new(),
        None => format!("+ {wanted}\n"),
    }
}

impl Step<'_> {
    fn report(&self, outcome: Outcome) -> ActionReport {
        ActionReport::new(self.action, outcome)
    }

    /// What is at `path` now, if anything; why not, when it is not a `kind`.
    fn existing(
        &self,
        path: &str,
        kind: &str,
        is: fn(&FileFact) -> bool,
    ) -> Result<Option<FileFact>, String> {
        let current = self.facts.files.get(path).cloned().flatten();
        match &current {
            Some(c) if !is(c) => Err(format!("{path} is a {}, not a {kind}", c.kind)),
            _ => Ok(current),
        }
    }

    /// Runs `argv` (with `stdin`), within the step's time limit.
    async fn run(&self, argv: &[&str], stdin: Option<&[u8]>) -> Result<Output, SshError> {
        self.connection
            .run(&Command {
                argv: argv.iter().map(|s| s.to_string()).collect(),
                stdin: stdin.map(<[u8]>::to_vec),
                timeout: self.timeout,
                ..Command::default()
            })
            .await
    }

    /// The outcome of a command that changed something: changed, or failed with its
    /// output.
    fn changed_by(&self, out: &Output, diff: String) -> ActionReport {
        let outcome = if out.success() {
            Outcome::Changed
        } else {
            Outcome::Failed
        };
        let report = self.report(outcome).with_diff(diff);
        if out.success() {
            report
        } else {
            report.with_output(out)
        }
    }

    async fn file(
        &self,
        path: &str,
        content: &[u8],
        mode: u32,
        owner: &str,
        group: &str,
    ) -> Result<ActionReport, SshError> {
        let current = match self.existing(path, "file", FileFact::is_file) {
            Ok(current) => current,
            Err(why) => return Ok(self.report(Outcome::Failed).with_message(why)),
        };
        let wanted_hash = sha256_hex(content);
        let same_content = current
            .as_ref()
            .is_some_and(|c| c.sha256.as_deref() == Some(wanted_hash.as_str()));
        let mut diff = metadata_diff(current.as_ref(), mode, owner, group);
        if same_content && diff.is_empty() {
            return Ok(self.report(Outcome::Ok));
        }
        if !same_content {
            diff.push_str(&self.content_diff(path, current.as_ref(), content).await?);
        }
        if self.mode == Mode::Check {
            return Ok(self.report(Outcome::Changed).with_diff(diff));
        }
        let (mode_text, owners) = (format!("{mode:04o}"), format!("{owner}:{group}"));
        let out = if same_content {
            self.run(
                &[
                    "sh",
                    "-c",
                    "chown -- \"$2\" \"$1\" && chmod -- \"$3\" \"$1\"",
                    "sh",
                    path,
                    &owners,
                    &mode_text,
                ],
                None,
            )
            .await?
        } else {
            // Beside the file, then renamed over it: atomic for every reader; flushed
            // before the rename, so a crash leaves the old file or the new, never half.
            self.run(
                &[
                    "sh",
                    "-c",
                    "set -e\n\
                     t=$(mktemp \"$(dirname -- \"$1\")/.berth.XXXXXX\")\n\
                     trap 'rm -f \"$t\"' EXIT\n\
                     cat > \"$t\"\n\
                     chown -- \"$2\" \"$t\"\n\
                     chmod -- \"$3\" \"$t\"\n\
                     sync \"$t\" 2>/dev/null || sync\n\
                     mv -f -- \"$t\" \"$1\"\n\
                     trap - EXIT",
                    "sh",
                    path,
                    &owners,
                    &mode_text,
                ],
                Some(content),
            )
            .await?
        };
        Ok(self.changed_by(&out, diff))
    }

    /// A unified diff of a file's content now and as wanted, or a line saying that binary
    /// content differs.
    async fn content_diff(
        &self,
        path: &str,
        current: Option<&FileFact>,
        wanted: &[u8],
    ) -> Result<String, SshError> {
        let old = match current {
            None => Vec::new(),
            Some(_) => {
                let out = self
                    .run(&["head", "-c", &DIFF_LIMIT.to_string(), "--", path], None)
                    .await?;
                out.stdout
            }
        };
        let (Ok(old_text), Ok(new_text)) = (std::str::from_utf8(&old), std::str::from_utf8(wanted))
        else {
            return Ok(format!(
                "binary content differs: {} → {} bytes (sha256 {})\n",
                old.len(),
                wanted.len(),
                sha256_hex(wanted)
            ));
        };
        if wanted.len() > DIFF_LIMIT || old.len() >= DIFF_LIMIT {
            return Ok(format!(
                "content differs (too long to show): sha256 {} → {}\n",
                current.and_then(|c| c.sha256.clone()).unwrap_or_default(),
                sha256_hex(wanted)
            ));
        }
        let before = if current.is_some() {
            path.to_owned()
        } else {
            "/dev/null".to_owned()
        };
        Ok(similar::TextDiff::from_lines(old_text, new_text)
            .unified_diff()
            .header(&before, path)
            .to_string())
    }

    async fn directory(
        &self,
        path: &str,
        mode: u32,
        owner: &str,
        group: &str,
    ) -> Result<ActionReport, SshError> {
        let current = match self.existing(path, "directory", FileFact::is_dir) {
            Ok(current) => current,
            Err(why) => return Ok(self.report(Outcome::Failed).with_message(why)),
        };
        let diff = metadata_diff(current.as_ref(), mode, owner, group);
        if diff.is_empty() {
            return Ok(self.report(Outcome::Ok));
        }
        if self.mode == Mode::Check {
            return Ok(self.report(Outcome::Changed).with_diff(diff));
        }
        let out = self
            .run(
                &[
                    "sh",
                    "-c",
                    "mkdir -p -- \"$1\" && chown -- \"$2\" \"$1\" && chmod -- \"$3\" \"$1\"",
                    "sh",
                    path,
                    &format!("{owner}:{group}"),
                    &format!("{mode:04o}"),
                ],
                None,
            )
            .await?;
        Ok(self.changed_by(&out, diff))
    }

    async fn sysctl(&self, key: &str, value: &str) -> Result<ActionReport, SshError> {
        let Some(current) = self.facts.sysctl.get(key).cloned().flatten() else {
            return Ok(self
                .report(Outcome::Failed)
                .with_message(format!("the host has no kernel parameter {key}")));
        };
        let file = sysctl_file(key);
        let line = sysctl_line(key, &normalise_sysctl(value));
        let persisted = self
            .facts
            .files
            .get(&file)
            .cloned()
            .flatten()
            .is_some_and(|f| f.sha256.as_deref() == Some(sha256_hex(line.as_bytes()).as_str()));
        let live = normalise_sysctl(&current) == normalise_sysctl(value);
        if live && persisted {
            return Ok(self.report(Outcome::Ok));
        }
        let mut diff = String::new();
        if !live {
            diff.push_str(&format!(
                "- {key} = {}\n+ {key} = {}\n",
                normalise_sysctl(&current),
                normalise_sysctl(value)
            ));
        }
        if !persisted {
            diff.push_str(&format!("+ {file}: {line}"));
        }
        if self.mode == Mode::Check {
            return Ok(self.report(Outcome::Changed).with_diff(diff));
        }
        if !persisted {
            let written = self
                .run(
                    &[
                        "sh",
                        "-c",
                        "set -e\nmkdir -p /etc/sysctl.d\n\
                         t=$(mktemp /etc/sysctl.d/.berth.XXXXXX)\n\
                         cat > \"$t\"\nchmod 0644 \"$t\"\nmv -f -- \"$t\" \"$1\"",
                        "sh",
                        &file,
                    ],
                    Some(line.as_bytes()),
                )
                .await?;
            if !written.success() {
                return Ok(self.changed_by(&written, diff));
            }
        }
        if live {
            return Ok(self.report(Outcome::Changed).with_diff(diff));
        }
        let set = self
            .run(
                &[
                    "sysctl",
                    "-q",
                    "-w",
                    &format!("{key}={}", normalise_sysctl(value)),
                ],
                None,
            )
            .await?;
        if set.success() {
            return Ok(self.report(Outcome::Changed).with_diff(diff));
        }
        let stderr = String::from_utf8_lossy(&set.stderr).to_lowercase();
        if stderr.contains("permission denied") || stderr.contains("read-only") {
            // Global parameters are refused inside a namespace: persisted for when the
            // host boots as itself, and said.
            return Ok(self
                .report(Outcome::CannotApplyHere)
                .with_diff(diff)
                .with_message(format!(
                    "{key} cannot be set where this host runs (a container or namespace); persisted in {file}"
                ))
                .with_output(&set));
        }
        Ok(self
            .report(Outcome::Failed)
            .with_diff(diff)
            .with_output(&set))
    }

    async fn service(&self, name: &str, enabled: bool, running: bool) -> ActionReport {
        if !self.facts.systemd {
            return self.report(Outcome::CannotApplyHere).with_message(
                "cannot manage services here: the host has no service manager (systemd)",
            );
        }
        let (now_enabled, now_running) = self
            .facts
            .services
            .get(name)
            .map(|s| {
                (
                    matches!(s.enabled.as_str(), "enabled" | "static" | "alias"),
                    s.active == "active",
                )
            })
            .unwrap_or((false, false));
        if self
            .facts
            .services
            .get(name)
            .is_some_and(|s| s.enabled == "masked")
        {
            return self
                .report(Outcome::Failed)
                .with_message(format!("service {name} is masked"));
        }
        let mut diff = String::new();
        let word = |on: bool, yes: &str, no: &str| if on { yes.to_owned() } else { no.to_owned() };
        if now_enabled != enabled {
            diff.push_str(&format!(
                "- {}\n+ {}\n",
                word(now_enabled, "enabled", "disabled"),
                word(enabled, "enabled", "disabled")
            ));
        }
        if now_running != running {
            diff.push_str(&format!(
                "- {}\n+ {}\n",
                word(now_running, "running", "stopped"),
                word(running, "running", "stopped")
            ));
        }
        if diff.is_empty() {
            return self.report(Outcome::Ok);
        }
        if self.mode == Mode::Check {
            return self.report(Outcome::Changed).with_diff(diff);
        }
        let mut last = None;
        if now_enabled != enabled {
            let verb = if enabled { "enable" } else { "disable" };
            match self.run(&["systemctl", verb, "--", name], None).await {
                Ok(out) if out.success() => last = Some(out),
                Ok(out) => return self.changed_by(&out, diff),
                Err(e) => return self.report(Outcome::Failed).with_message(e.to_string()),
            }
        }
        if now_running != running {
            let verb = if running { "start" } else { "stop" };
            match self.run(&["systemctl", verb, "--", name], None).await {
                Ok(out) => last = Some(out),
                Err(e) => return self.report(Outcome::Failed).with_message(e.to_string()),
            }
        }
        match last {
            Some(out) => self.changed_by(&out, diff),
            None => self.report(Outcome::Changed).with_diff(diff),
        }
    }

    async fn package(
        &self,
        name: &str,
        version: Option<&str>,
        state: PackageState,
    ) -> Result<ActionReport, SshError> {
        let installed = self.facts.packages.get(name).cloned().flatten();
        let satisfied = match state {
            PackageState::Present => installed
                .as_deref()
                .is_some_and(|v| version.is_none_or(|wanted| wanted == v)),
            PackageState::Absent => installed.is_none(),
        };
        if satisfied {
            return Ok(self.report(Outcome::Ok));
        }
        let mut diff = String::new();
        if let Some(v) = &installed {
            diff.push_str(&format!("- {name} {v}\n"));
        }
        if state == PackageState::Present {
            diff.push_str(&format!("+ {name} {}\n", version.unwrap_or("(latest)")));
        }
        if self.mode == Mode::Check {
            return Ok(self.report(Outcome::Changed).with_diff(diff));
        }
        let Some(manager) = self.facts.package_manager else {
            return Ok(self.report(Outcome::Failed).with_message(format!(
                "no package manager berth knows on {} {}",
                self.facts.os_id, self.facts.os_version
            )));
        };
        let spec = match (manager, version) {
            (_, None) => name.to_owned(),
            (PackageManager::Dnf, Some(v)) => format!("{name}-{v}"),
            (_, Some(v)) => format!("{name}={v}"),
        };
        let argv: Vec<&str> = match (manager, state) {
            (PackageManager::Apt, PackageState::Present) => vec![
                "env",
                "DEBIAN_FRONTEND=noninteractive",
                "apt-get",
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                "-o",
                "Dpkg::Options::=--force-confdef",
                "-o",
                "Dpkg::Options::=--force-confold",
                "--",
                &spec,
            ],
            (PackageManager::Apt, PackageState::Absent) => vec![
                "env",
                "DEBIAN_FRONTEND=noninteractive",
                "apt-get",
                "remove",
                "-y",
                "-q",
                "--",
                name,
            ],
            (PackageManager::Dnf, PackageState::Present) => vec!["dnf", "install", "-y", &spec],
            (PackageManager::Dnf, PackageState::Absent) => vec!["dnf", "remove", "-y", name],
            (PackageManager::Zypper, PackageState::Present) => {
                vec!["zypper", "--non-interactive", "install", &spec]
            }
            (PackageManager::Zypper, PackageState::Absent) => {
                vec!["zypper", "--non-interactive", "remove", name]
            }
            (PackageManager::Apk, PackageState::Present) => vec!["apk", "add", &spec],
            (PackageManager::Apk, PackageState::Absent) => vec!["apk", "del", name],
        };
        let mut out = self.run(&argv, None).await?;
        // apt knows no package until its lists are read: read them once, and try again.
        let unknown = String::from_utf8_lossy(&out.stderr);
        if manager == PackageManager::Apt
            && !out.success()
            && (unknown.contains("Unable to locate package")
                || unknown.contains("has no installation candidate")
                || unknown.contains("Version '"))
        {
            let updated = self
                .run(
                    &[
                        "env",
                        "DEBIAN_FRONTEND=noninteractive",
                        "apt-get",
                        "update",
                        "-q",
                    ],
                    None,
                )
                .await?;
            if !updated.success() {
                return Ok(self.changed_by(&updated, diff));
            }
            out = self.run(&argv, None).await?;
        }
        Ok(self.changed_by(&out, diff))
    }

    async fn command(&self) -> Result<ActionReport, SshError> {
        let Action::Command {
            argv,
            env,
            user,
            timeout_secs,
            creates,
            unless,
            ok_codes,
        } = self.action
        else {
            unreachable!("a command step is a command");
        };
        if let Some(path) = creates
            && self.facts.files.get(path).is_some_and(Option::is_some)
        {
            return Ok(self
                .report(Outcome::Ok)
                .with_message(format!("skipped: {path} exists")));
        }
        if let Some(guard) = unless {
            // A guard only reads: it runs in check mode too.
            let out = self
                .run(&guard.iter().map(String::as_str).collect::<Vec<_>>(), None)
                .await?;
            if out.success() {
                return Ok(self
                    .report(Outcome::Ok)
                    .with_message(format!("skipped: `{}` exited 0", guard.join(" "))));
            }
        }
        let diff = format!("+ run {}\n", argv.join(" "));
        if self.mode == Mode::Check {
            return Ok(self.report(Outcome::Changed).with_diff(diff));
        }
        let mut words: Vec<String> = Vec::new();
        if let Some(user) = user {
            words.extend(["runuser".into(), "-u".into(), user.clone(), "--".into()]);
        }
        words.extend(argv.iter().cloned());
        let out = self
            .connection
            .run(&Command {
                argv: words,
                env: env.clone(),
                stdin: None,
                timeout: Duration::from_secs(u64::from(*timeout_secs)),
            })
            .await?;
        let ok_codes: &[u32] = if ok_codes.is_empty() { &[0] } else { ok_codes };
        let succeeded = out.exit_code.is_some_and(|c| ok_codes.contains(&c));
        let report = self
            .report(if succeeded {
                Outcome::Changed
            } else {
                Outcome::Failed
            })
            .with_diff(diff)
            .with_output(&out);
        Ok(report)
    }
}
