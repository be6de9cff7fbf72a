//! SSH to managed hosts: one authenticated connection per host with its host key pinned
//! (a SHA-256 fingerprint learned from the provider, or trusted explicitly on first
//! contact), and commands run over it with their exit code, stdout and stderr kept apart,
//! each under its own time limit. Built on `russh`; nothing here knows about machines.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect};

/// A client's private key (ed25519, ECDSA or RSA).
pub use russh::keys::PrivateKey as ClientKey;

/// The most of a command's stdout, and of its stderr, that is kept; the rest is counted.
pub const OUTPUT_LIMIT: usize = 1 << 20;

/// How a host's key is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Only the key with this fingerprint (`SHA256:<base64>`, as `ssh-keygen -l` prints it).
    Pinned(String),
    /// Whatever key the host offers, this once: an administrator's explicit "trust on
    /// first contact". The connection reports the fingerprint, to be pinned from then on.
    FirstContact,
}

/// Why a connection or a command failed.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// Nothing answered at the address, or the connection was refused or reset.
    #[error("cannot reach {address}: {message}")]
    Unreachable { address: String, message: String },
    /// The host did not finish the handshake, or a command did not end, in time.
    #[error("{what} took longer than {limit:?}")]
    Timeout { what: String, limit: Duration },
    /// The host offered another key than the one pinned: refused, as it may not be the
    /// host berth set up.
    #[error(
        "the host key of {address} is {offered}, not the pinned {pinned}: refused (if the host was reinstalled, trust its new key explicitly)"
    )]
    HostKeyMismatch {
        address: String,
        pinned: String,
        offered: String,
    },
    /// The host refused the key for the user.
    #[error("{address} refused the key for user {user}")]
    AuthRejected { address: String, user: String },
    /// The client key is not an OpenSSH private key berth can use (or is encrypted).
    #[error("the SSH key cannot be read: {0}")]
    BadKey(String),
    /// A command's argv cannot be given to a shell (empty, or a NUL byte).
    #[error("cannot run {0}")]
    BadCommand(String),
    /// Anything else the SSH layer reported.
    #[error("ssh to {address}: {message}")]
    Protocol { address: String, message: String },
}

/// Where to connect, and as whom.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port`.
    pub address: String,
    /// The remote user (root, or one with passwordless sudo).
    pub user: String,
}

/// One command.
#[derive(Debug, Clone, Default)]
pub struct Command {
    /// The program and its arguments, quoted for the remote shell here.
    pub argv: Vec<String>,
    /// Variables set for it alone (through `env`, as sshd passes no others).
    pub env: Vec<(String, String)>,
    /// Fed to its stdin, then end of file.
    pub stdin: Option<Vec<u8>>,
    /// The longest it may run.
    pub timeout: Duration,
}

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Its exit code, when it exited.
    pub exit_code: Option<u32>,
    /// The signal that killed it, when one did.
    pub signal: Option<String>,
    /// Its stdout, up to [`OUTPUT_LIMIT`].
    pub stdout: Vec<u8>,
    /// Its stderr, up to [`OUTPUT_LIMIT`].
    pub stderr: Vec<u8>,
    /// Bytes of output beyond the limit, dropped.
    pub dropped: u64,
}

impl Output {
    /// Whether it exited with code 0.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }
}

/// An authenticated connection to one host.
pub struct Connection {
    handle: Handle<Verifier>,
    address: String,
    host_key: String,
}

/// Checks the host's key against the trust, and remembers what it offered.
struct Verifier {
    trust: Trust,
    offered: Arc<Mutex<Option<String>>>,
}

impl client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        // A host certificate is judged by the key it certifies, as a pin names a key.
        let fingerprint = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                key.fingerprint(HashAlg::Sha256).to_string()
            }
            PublicKeyOrCertificate::Certificate(cert) => {
                russh::keys::PublicKey::from(cert.public_key().clone())
                    .fingerprint(HashAlg::Sha256)
                    .to_string()
            }
        };
        let accepted = match &self.trust {
            Trust::FirstContact => true,
            Trust::Pinned(pinned) => pinned == &fingerprint,
        };
        *self.offered.lock().expect("offered lock") = Some(fingerprint);
        Ok(accepted)
    }
}

/// A private key from its OpenSSH text (`-----BEGIN OPENSSH PRIVATE KEY-----`, or PEM),
/// unencrypted: berth keeps it sealed instead.
pub fn client_key(text: &str) -> Result<ClientKey, SshError> {
    // The parser's message never quotes the key.
    russh::keys::decode_secret_key(text, None).map_err(|e| SshError::BadKey(e.to_string()))
}

/// Connects to `target` as its user with `key`, trusting the host's key as `trust` says,
/// within `timeout` for the connection, the handshake and the login together.
pub async fn connect(
    target: &Target,
    key: &PrivateKey,
    trust: Trust,
    timeout: Duration,
) -> Result<Connection, SshError> {
    let address = target.address.clone();
    let offered = Arc::new(Mutex::new(None));
    let verifier = Verifier {
        trust: trust.clone(),
        offered: offered.clone(),
    };
    let config = Arc::new(client::Config {
        // A host that stops answering mid-session is given up rather than waited on.
        inactivity_timeout: Some(Duration::from_secs(300)),
        keepalive_interval: Some(Duration::from_secs(15)),
        keepalive_max: 4,
        nodelay: true,
        ..client::Config::default()
    });
    let login = async {
        let socket = tokio::net::TcpStream::connect(&address)
            .await
            .map_err(|e| SshError::Unreachable {
                address: address.clone(),
                message: e.to_string(),
            })?;
        let _ = socket.set_nodelay(true);
        let mut handle = client::connect_stream(config, socket, verifier)
            .await
            .map_err(|e| {
                let seen = offered.lock().expect("offered lock").clone();
                match (&trust, seen) {
                    (Trust::Pinned(pinned), Some(offered)) if &offered != pinned => {
                        SshError::HostKeyMismatch {
                            address: address.clone(),
                            pinned: pinned.clone(),
                            offered,
                        }
                    }
                    _ => protocol(&address, e),
                }
            })?;
        let hash = handle
            .best_supported_rsa_hash()
            .await
            .map_err(|e| protocol(&address, e))?
            .flatten();
        let auth = handle
            .authenticate_publickey(
                target.user.clone(),
                PrivateKeyWithHashAlg::new(Arc::new(key.clone()), hash),
            )
            .await
            .map_err(|e| protocol(&address, e))?;
        if !auth.success() {
            return Err(SshError::AuthRejected {
                address: address.clone(),
                user: target.user.clone(),
            });
        }
        Ok(handle)
    };
    let handle = tokio::time::timeout(timeout, login)
        .await
        .map_err(|_| SshError::Timeout {
            what: format!("connecting to {address}"),
            limit: timeout,
        })??;
    let host_key = offered
        .lock()
        .expect("offered lock")
        .clone()
        .unwrap_or_default();
    Ok(Connection {
        handle,
        address,
        host_key,
    })
}

fn protocol(address: &str, e: russh::Error) -> SshError {
    // The host hanging up mid-handshake is a host not there, as far as a caller can act.
    if let russh::Error::IO(io) = &e
        && matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::ConnectionRefused
                | std::io::ErrorKind::UnexpectedEof
        )
    {
        return SshError::Unreachable {
            address: address.to_owned(),
            message: e.to_string(),
        };
    }
    SshError::Protocol {
        address: address.to_owned(),
        message: e.to_string(),
    }
}

impl Connection {
    /// The host key's fingerprint (`SHA256:<base64>`): what to pin after a first contact.
    pub fn host_key(&self) -> &str {
        &self.host_key
    }

    /// Runs `command` and collects what it did. A command that outlives its timeout has
    /// its channel closed (sshd then hangs up on it) and is reported as a timeout.
    pub async fn run(&self, command: &Command) -> Result<Output, SshError> {
        let line = command_line(command)?;
        let run = async {
            let mut channel = self
                .handle
                .channel_open_session()
                .await
                .map_err(|e| protocol(&self.address, e))?;
            channel
                .exec(true, line.as_bytes())
                .await
                .map_err(|e| protocol(&self.address, e))?;
            if let Some(stdin) = &command.stdin {
                channel
                    .data(&stdin[..])
                    .await
                    .map_err(|e| protocol(&self.address, e))?;
            }
            channel
                .eof()
                .await
                .map_err(|e| protocol(&self.address, e))?;
            let mut out = Output {
                exit_code: None,
                signal: None,
                stdout: Vec::new(),
                stderr: Vec::new(),
                dropped: 0,
            };
            while let Some(message) = channel.wait().await {
                match message {
                    ChannelMsg::Data { data } => keep(&mut out.stdout, &data, &mut out.dropped),
                    ChannelMsg::ExtendedData { data, ext: 1 } => {
                        keep(&mut out.stderr, &data, &mut out.dropped)
                    }
                    ChannelMsg::ExitStatus { exit_status } => out.exit_code = Some(exit_status),
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        out.signal = Some(format!("{signal_name:?}"))
                    }
                    _ => {}
                }
            }
            Ok(out)
        };
        tokio::time::timeout(command.timeout, run)
            .await
            .map_err(|_| SshError::Timeout {
                what: format!("`{line}` on {}", self.address),
                limit: command.timeout,
            })?
    }

    /// Says goodbye to the host.
    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
    }
}

/// Appends `data` to `buffer` up to [`OUTPUT_LIMIT`], counting what is dropped.
fn keep(buffer: &mut Vec<u8>, data: &[u8], dropped: &mut u64) {
    let room = OUTPUT_LIMIT.saturating_sub(buffer.len());
    let taken = room.min(data.len());
    buffer.extend_from_slice(&data[..taken]);
    *dropped += (data.len() - taken) as u64;
}

/// The line the remote shell runs for `command`: every word quoted, so that nothing in an
/// argument (spaces, quotes, `$(…)`, `;`, newlines) is read by the shell as anything but
/// itself; variables through `env`.
pub fn command_line(command: &Command) -> Result<String, SshError> {
    let Some(program) = command.argv.first() else {
        return Err(SshError::BadCommand("an empty command".into()));
    };
    let mut words: Vec<String> = Vec::new();
    if !command.env.is_empty() {
        words.push("env".into());
        for (name, value) in &command.env {
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(SshError::BadCommand(format!(
                    "an environment variable named {name:?}"
                )));
            }
            words.push(format!("{name}={value}"));
        }
        // `env` would take a program named `a=b` for one more variable.
        if program.contains('=') {
            return Err(SshError::BadCommand(format!(
                "a program named {program:?} with environment variables"
            )));
        }
    }
    words.extend(command.argv.iter().cloned());
    shlex::try_join(words.iter().map(String::as_str))
        .map_err(|e| SshError::BadCommand(format!("{:?}: {e}", command.argv.join(" "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Command {
        Command {
            argv: words.iter().map(|w| w.to_string()).collect(),
            timeout: Duration::from_secs(1),
            ..Command::default()
        }
    }

    /// What a POSIX shell makes of `line`, as words: `sh` prints each word on its own
    /// line (NUL-separated, so newlines in a word survive).
    fn words_after_sh(line: &str) -> Vec<String> {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s\\0' {line}"))
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout)
            .unwrap()
            .split_terminator('\0')
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn every_word_reaches_the_program_as_itself() {
        let hostile = [
            "plain",
            "two words",
            "it's",
            "\"quoted\"",
            "$(touch /tmp/berth-pwned)",
            "`id`",
            "a;b&&c||d|e",
            "line\nbreak",
            "tab\there",
            "back\\slash",
            "*",
            "~root",
            "{a,b}",
            "#comment",
            "-n",
            "",
            "ünïcödé",
        ];
        let line = command_line(&argv(&hostile)).unwrap();
        assert_eq!(words_after_sh(&line), hostile);
    }

    #[test]
    fn variables_go_through_env_and_bad_names_are_refused() {
        let mut command = argv(&["printenv", "GREETING"]);
        command.env = vec![("GREETING".into(), "hello; rm -rf /".into())];
        let line = command_line(&command).unwrap();
        assert_eq!(
            words_after_sh(&line),
            ["env", "GREETING=hello; rm -rf /", "printenv", "GREETING"]
        );
        for name in ["", "1X", "A-B", "A=B", "A B"] {
            command.env = vec![(name.into(), "v".into())];
            assert!(
                matches!(command_line(&command), Err(SshError::BadCommand(_))),
                "{name:?}"
            );
        }
        let mut sneaky = argv(&["X=1", "sh"]);
        sneaky.env = vec![("A".into(), "b".into())];
        assert!(command_line(&sneaky).is_err());
        assert!(command_line(&argv(&[])).is_err());
        assert!(command_line(&argv(&["a\0b"])).is_err());
    }

    #[test]
    fn output_past_the_limit_is_counted_not_kept() {
        let (mut buffer, mut dropped) = (Vec::new(), 0);
        keep(&mut buffer, &vec![1; OUTPUT_LIMIT - 10], &mut dropped);
        keep(&mut buffer, &[2; 25], &mut dropped);
        keep(&mut buffer, &[3; 5], &mut dropped);
        assert_eq!(buffer.len(), OUTPUT_LIMIT);
        assert_eq!(dropped, 20);
        assert_eq!(&buffer[OUTPUT_LIMIT - 10..], &[2; 10]);
    }
}
