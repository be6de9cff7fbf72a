//! Endpoints: the registries this instance replicates with — another berth, CNCF
//! distribution, or any OCI registry — with their credentials, sealed at rest, and their
//! TLS options. The record is stored in `replication_endpoints`
//! (`storage/tables/replication.rs`); what its fields may hold is decided here.

use super::{ReplicationError, ReplicationResult};
use crate::storage::sealing::Sealer;

pub use crate::storage::tables::replication::{EndpointKind, EndpointRecord};

impl EndpointRecord {
    /// `host[:port]` of the URL, as registry references name it.
    pub fn host(&self) -> String {
        let url = url::Url::parse(&self.url).expect("checked when stored");
        match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        }
    }

    /// Whether the endpoint is reached over plain HTTP.
    pub fn plain_http(&self) -> bool {
        self.url.starts_with("http://")
    }

    /// The password, opened with `sealer`.
    pub fn password(&self, sealer: &Sealer) -> ReplicationResult<Option<String>> {
        let Some(sealed) = &self.sealed_password else {
            return Ok(None);
        };
        let plain = sealer.unseal(&sealing_context(&self.name), sealed).ok_or_else(|| {
            ReplicationError::Invalid(format!(
                "the stored password of endpoint {} does not open with this data directory's key; set it again",
                self.name
            ))
        })?;
        String::from_utf8(plain)
            .map(Some)
            .map_err(|_| ReplicationError::Invalid("stored password is not UTF-8".into()))
    }

    /// Seals and stores `password` (or clears it).
    pub fn set_password(&mut self, sealer: &Sealer, password: Option<&str>) {
        self.sealed_password =
            password.map(|p| sealer.seal(&sealing_context(&self.name), p.as_bytes()));
    }
}

/// The sealing context of an endpoint's password: a sealed password copied to another
/// endpoint's record does not open there.
fn sealing_context(name: &str) -> String {
    format!("replication-endpoint/{name}")
}

/// Checks an endpoint URL: `http` or `https`, a host, an optional port, nothing else.
pub fn check_url(text: &str) -> ReplicationResult<String> {
    let bad = |why: &str| {
        ReplicationError::Invalid(format!(
            "invalid endpoint URL {text:?}: {why} (expected http://host[:port] or https://host[:port])"
        ))
    };
    let url = url::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(bad("the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("it has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "credentials go in username and password, not in the URL",
        ));
    }
    if url.path() != "/" && !url.path().is_empty() || url.query().is_some() {
        return Err(bad("registries are served at the root; drop the path"));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_normalised_and_anything_but_a_registry_root_is_refused() {
        assert_eq!(
            check_url("http://127.0.0.1:5000/").unwrap(),
            "http://127.0.0.1:5000"
        );
        assert_eq!(
            check_url("https://registry.example.com").unwrap(),
            "https://registry.example.com"
        );
        for bad in [
            "ftp://x",
            "http://",
            "registry.example.com",
            "http://user:pw@x",
            "http://x/v2/",
            "http://x?q=1",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_sealed_password_survives_a_round_trip_through_json_and_opens_only_for_its_endpoint() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = Sealer::load(&Default::default(), &dir.path().join("k")).unwrap();
        let mut record = EndpointRecord {
            name: "dc2".into(),
            kind: EndpointKind::Berth,
            url: "http://127.0.0.1:5001".into(),
            username: Some("robot$sync".into()),
            sealed_password: None,
            insecure: false,
            ca_cert: None,
            instance: None,
            description: String::new(),
            created_by: "admin".into(),
            created_at: 0,
            updated_at: 0,
        };
        record.set_password(&sealer, Some("s3cret"));
        let json = serde_json::to_string(&record).unwrap();
        assert!(!json.contains("s3cret"));
        let back: EndpointRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back.password(&sealer).unwrap().as_deref(), Some("s3cret"));
        let moved = EndpointRecord {
            name: "dc3".into(),
            ..back
        };
        assert!(moved.password(&sealer).is_err());
    }
}
