//! The domain types of provider calls: what the scheduler sends and receives, whatever
//! package version a plugin was built for, and the classification of failures.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::CallError;

/// A point in wall-clock time: seconds and nanoseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Datetime {
    pub seconds: u64,
    pub nanoseconds: u32,
}

/// Which cluster a call is about (see `cluster-context` in the WIT).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterContext {
    pub name: String,
    pub endpoint: Option<String>,
    pub regions: Vec<String>,
    /// Settings, a string value as it is and any other as JSON text.
    pub settings: Vec<(String, String)>,
    /// The names of the credential values the call may read.
    pub credentials: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Zone {
    pub id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Region {
    pub id: String,
    pub name: String,
    pub zones: Vec<Zone>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineType {
    pub id: String,
    pub cpus: u32,
    pub memory_mib: u64,
    pub gpus: u32,
    /// Regions that offer it; empty means every region.
    pub regions: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    pub id: String,
    pub name: String,
    pub os: String,
    pub arch: String,
    pub region: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Description {
    pub regions: Vec<Region>,
    pub machine_types: Vec<MachineType>,
    pub images: Vec<Image>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PurchaseOption {
    OnDemand,
    Spot,
    Prepaid,
}

/// An hourly price as an exact decimal (`micros_per_hour` millionths of `currency`), and
/// how the provider bills it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    pub currency: String,
    pub micros_per_hour: u64,
    pub purchase_option: PurchaseOption,
    pub granularity_secs: u32,
    pub minimum_secs: u32,
    pub effective_from: Option<Datetime>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    pub size_gib: u32,
    pub kind: Option<String>,
    pub device: Option<String>,
}

/// What to create (see `machine-spec` in the WIT).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineSpec {
    pub client_token: String,
    pub name: String,
    pub region: String,
    pub zone: Option<String>,
    pub machine_type: String,
    pub image: String,
    pub network: Option<String>,
    pub subnet: Option<String>,
    pub security_groups: Vec<String>,
    pub disks: Vec<Disk>,
    pub key_pair: Option<String>,
    pub ssh_public_key: Option<String>,
    pub tags: Vec<(String, String)>,
    /// Raw bytes; the plugin encodes them as its API wants.
    pub user_data: Option<Vec<u8>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MachineState {
    Pending,
    Running,
    Stopping,
    Stopped,
    Terminating,
    Terminated,
    Error,
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AddressKind {
    Private,
    Public,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub kind: AddressKind,
    pub ip: String,
}

/// A machine as its provider reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    pub id: String,
    pub name: String,
    pub region: String,
    pub zone: Option<String>,
    pub machine_type: String,
    pub image: String,
    pub state: MachineState,
    #[serde(default)]
    pub state_reason: Option<String>,
    pub addresses: Vec<Address>,
    pub created_at: Option<Datetime>,
    pub tags: Vec<(String, String)>,
    #[serde(default)]
    pub host_key_fingerprints: Vec<String>,
    #[serde(default)]
    pub billing_started_at: Option<Datetime>,
}

impl Machine {
    /// The value of tag `key`, if it carries one.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRequest {
    pub region: Option<String>,
    /// Only machines with every one of these tags; an empty value matches any value.
    pub tags: Vec<(String, String)>,
    pub page_token: Option<String>,
    pub page_size: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachinePage {
    pub machines: Vec<Machine>,
    pub next_page_token: Option<String>,
}

/// What went wrong at the provider, as the host must treat it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorKind {
    NotFound,
    Capacity,
    Quota,
    Conflict,
    AlreadyExists,
    Throttled,
    Transient,
    Auth,
    NotGranted,
    Invalid,
    Unsupported,
    Other,
}

impl ErrorKind {
    /// The WIT's name of the kind (`not-found`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not-found",
            ErrorKind::Capacity => "capacity",
            ErrorKind::Quota => "quota",
            ErrorKind::Conflict => "conflict",
            ErrorKind::AlreadyExists => "already-exists",
            ErrorKind::Throttled => "throttled",
            ErrorKind::Transient => "transient",
            ErrorKind::Auth => "auth",
            ErrorKind::NotGranted => "not-granted",
            ErrorKind::Invalid => "invalid",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Other => "other",
        }
    }
}

/// A provider's answer that it could not do what was asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderError {
    pub kind: ErrorKind,
    pub message: String,
    pub code: Option<String>,
    pub request_id: Option<String>,
    pub retry_after_ms: Option<u32>,
}

impl ProviderError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ProviderError {
            kind,
            message: message.into(),
            code: None,
            request_id: None,
            retry_after_ms: None,
        }
    }
}

impl std::fmt::Display for ProviderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The message is the plugin's text: escaped, so it cannot forge lines.
        write!(
            f,
            "{}: {}",
            self.kind.as_str(),
            crate::log::escape(&self.message)
        )?;
        if let Some(code) = &self.code {
            write!(f, " (code {})", crate::log::escape(code))?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " (request {})", crate::log::escape(id))?;
        }
        Ok(())
    }
}

/// Why a provider call did not give its answer: the provider said no, or the call itself
/// failed (a limit, a trap). [`ProviderFailure::retryable`] is the one place that decides
/// whether trying again can help, so the scheduler never guesses.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ProviderFailure {
    #[error("{0}")]
    Provider(ProviderError),
    #[error(transparent)]
    Call(#[from] CallError),
}

impl ProviderFailure {
    /// Whether the same call may succeed later: throttling and transient failures at the
    /// provider, and a call that ran out of wall time (a slow cloud) or failed in the
    /// host. A trap, a CPU or memory limit, or any other answer of the provider would
    /// fail the same way again.
    pub fn retryable(&self) -> bool {
        match self {
            ProviderFailure::Provider(e) => {
                matches!(e.kind, ErrorKind::Throttled | ErrorKind::Transient)
            }
            ProviderFailure::Call(e) => {
                matches!(e, CallError::WallTime { .. } | CallError::Host { .. })
            }
        }
    }

    /// How long the provider asked to wait before the next try, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderFailure::Provider(e) => e
                .retry_after_ms
                .map(|ms| Duration::from_millis(u64::from(ms))),
            ProviderFailure::Call(_) => None,
        }
    }

    /// The provider's error kind; none when the call itself failed.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            ProviderFailure::Provider(e) => Some(e.kind),
            ProviderFailure::Call(_) => None,
        }
    }
}

/// Whether `machine` carries every tag of `wanted` (an empty value matches any).
pub fn has_tags(machine: &Machine, wanted: &[(String, String)]) -> bool {
    wanted.iter().all(|(key, value)| {
        machine
            .tag(key)
            .is_some_and(|v| value.is_empty() || v == value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_throttling_transient_failures_and_slow_calls_are_retried() {
        for kind in [ErrorKind::Throttled, ErrorKind::Transient] {
            assert!(ProviderFailure::Provider(ProviderError::new(kind, "x")).retryable());
        }
        for kind in [
            ErrorKind::NotFound,
            ErrorKind::Capacity,
            ErrorKind::Quota,
            ErrorKind::Conflict,
            ErrorKind::AlreadyExists,
            ErrorKind::Auth,
            ErrorKind::NotGranted,
            ErrorKind::Invalid,
            ErrorKind::Unsupported,
            ErrorKind::Other,
        ] {
            assert!(!ProviderFailure::Provider(ProviderError::new(kind, "x")).retryable());
        }
        let slow = CallError::WallTime {
            plugin: "p".into(),
            function: "create".into(),
            limit_ms: 1,
        };
        assert!(ProviderFailure::Call(slow).retryable());
        let trap = CallError::Trap {
            plugin: "p".into(),
            function: "create".into(),
            message: "unreachable".into(),
        };
        assert!(!ProviderFailure::Call(trap).retryable());
    }
}
