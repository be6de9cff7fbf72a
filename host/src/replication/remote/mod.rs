//! A remote registry as a transfer end, over the OCI Distribution API.
//!
//! Reads and blob uploads go through oci-client (token auth, streaming in both
//! directions, monolithic PUTs with a known length). Manifest writes and deletes use the
//! same token with a plain HTTP client, because oci-client cannot delete and cannot send
//! the `Berth-Replication-Origin` header that tells a berth peer where content came from.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Reference, RegistryOperation};

use super::endpoints::{EndpointKind, EndpointRecord};
use super::side::{SideError, SideResult};

use crate::registry::routes::INSTANCE_HEADER;

/// Every manifest media type berth moves.
const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// Tokens are asked for again after this long, well inside the usual 5-minute lifetime.
const TOKEN_REUSE: Duration = Duration::from_secs(60);

/// A repository, and whether the token is for pushing.
type TokenKey = (String, bool);

/// A remote registry, one per endpoint.
pub struct Remote {
    name: String,
    kind: EndpointKind,
    /// TLS settings, for handing a destination to a delegated transfer.
    insecure: bool,
    ca_cert: Option<String>,
    host: String,
    base_url: String,
    /// oci-client, which caches the tokens it obtains for as long as they are valid:
    /// replaced whole when the registry refuses one (see [`Remote::forget_tokens`]).
    oci: std::sync::RwLock<oci_client::Client>,
    /// How to build it again: protocol and certificates.
    oci_settings: OciSettings,
    http: reqwest::Client,
    auth: RegistryAuth,
    /// This instance's name, sent as the origin of what it writes to a berth.
    origin: String,
    /// The connect and read timeout of requests.
    timeout: Duration,
    /// Bearer tokens by (repository, push?), with when they were obtained; `None` when
    /// the registry wants none (anonymous, or Basic credentials).
    tokens: Mutex<HashMap<TokenKey, (Option<String>, Instant)>>,
    /// The registry's `Bearer` challenge (realm, service), asked once; `None` inside when
    /// it wants no token.
    challenge: tokio::sync::OnceCell<Option<(String, Option<String>)>>,
}

/// What an oci-client for one endpoint is built from.
#[derive(Clone)]
struct OciSettings {
    plain_http: bool,
    insecure: bool,
    certificates: Vec<Certificate>,
    timeout: Duration,
}

impl OciSettings {
    fn client(&self) -> oci_client::Client {
        oci_client::Client::new(ClientConfig {
            protocol: if self.plain_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            accept_invalid_certificates: self.insecure,
            // One PUT with the whole blob streamed, rather than chunks: fewer round trips,
            // and the receiver gets the length up front.
            use_monolithic_push: true,
            extra_root_certificates: self.certificates.clone(),
            connect_timeout: Some(self.timeout),
            read_timeout: Some(self.timeout),
            user_agent: concat!("berth/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        })
    }
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("name", &self.name).finish()
    }
}

impl Remote {
    /// A client for `endpoint`, logging in with `password` (opened by the caller).
    pub fn new(
        endpoint: &EndpointRecord,
        password: Option<String>,
        origin: &str,
        timeout: Duration,
    ) -> SideResult<Remote> {
        let auth = match (&endpoint.username, password) {
            (Some(user), Some(password)) => RegistryAuth::Basic(user.clone(), password),
            (Some(user), None) => RegistryAuth::Basic(user.clone(), String::new()),
            _ => RegistryAuth::Anonymous,
        };
        Remote::with_auth(endpoint, auth, origin, timeout)
    }

    /// A client for `endpoint` that presents `token`, a bearer token another instance
    /// obtained for it (a delegated transfer): it can do what the token allows and
    /// nothing more.
    pub fn with_token(
        endpoint: &EndpointRecord,
        token: String,
        origin: &str,
        timeout: Duration,
    ) -> SideResult<Remote> {
        Remote::with_auth(endpoint, RegistryAuth::Bearer(token), origin, timeout)
    }

    fn with_auth(
        endpoint: &EndpointRecord,
        auth: RegistryAuth,
        origin: &str,
        timeout: Duration,
    ) -> SideResult<Remote> {
        let host = endpoint.host();
        let certificates: Vec<Certificate> = endpoint
            .ca_cert
            .iter()
            .map(|pem| Certificate {
                encoding: CertificateEncoding::Pem,
                data: pem.as_bytes().to_vec(),
            })
            .collect();
        let oci_settings = OciSettings {
            plain_http: endpoint.plain_http(),
            insecure: endpoint.insecure,
            certificates,
            timeout,
        };
        let oci = std::sync::RwLock::new(oci_settings.client());
        let mut http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .read_timeout(timeout)
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .danger_accept_invalid_certs(endpoint.insecure);
        if let Some(pem) = &endpoint.ca_cert {
            let cert = reqwest::Certificate::from_pem(pem.as_bytes()).map_err(|e| {
                SideError::Refused(format!(
                    "endpoint {}: its CA certificate is not PEM: {e}",
                    endpoint.name
                ))
            })?;
            http = http.add_root_certificate(cert);
        }
        let http = http
            .build()
            .map_err(|e| SideError::Failed(format!("HTTP client: {e}")))?;
        Ok(Remote {
            name: endpoint.name.clone(),
            kind: endpoint.kind,
            insecure: endpoint.insecure,
            ca_cert: endpoint.ca_cert.clone(),
            host,
            base_url: endpoint.url.clone(),
            oci,
            oci_settings,
            http,
            auth,
            origin: origin.to_string(),
            timeout,
            tokens: Mutex::new(HashMap::new()),
            challenge: tokio::sync::OnceCell::new(),
        })
    }

    fn reference(&self, repository: &str, reference: &str) -> Reference {
        if reference.contains(':') {
            Reference::with_digest(self.host.clone(), repository.into(), reference.into())
        } else {
            Reference::with_tag(self.host.clone(), repository.into(), reference.into())
        }
    }

    /// Makes sure oci-client holds a fresh token for `repository` (and returns it, for
    /// the requests made without oci-client).
    async fn authorize(&self, repository: &str, push: bool) -> SideResult<Option<String>> {
        let key = (repository.to_string(), push);
        if let Some((token, at)) = self.tokens.lock().expect("tokens lock").get(&key)
            && at.elapsed() < TOKEN_REUSE
        {
            return Ok(token.clone());
        }
        let op = if push {
            RegistryOperation::Push
        } else {
            RegistryOperation::Pull
        };
        let token = self
            .client()
            .auth(&self.reference(repository, "latest"), &self.auth, op)
            .await
            .map_err(|e| self.error(e, &format!("logging in for {repository}")))?;
        self.tokens
            .lock()
            .expect("tokens lock")
            .insert(key, (token.clone(), Instant::now()));
        Ok(token)
    }

    /// The oci-client to use now.
    fn client(&self) -> oci_client::Client {
        self.oci.read().expect("oci lock").clone()
    }

    /// Forgets every token held for this endpoint, ours and oci-client's, after the
    /// registry refused one: a token obtained before the destination's project existed,
    /// or before the account's rights were fixed, grants nothing, and oci-client would
    /// otherwise present it until it expires.
    fn forget_tokens(&self) {
        self.tokens.lock().expect("tokens lock").clear();
        *self.oci.write().expect("oci lock") = self.oci_settings.client();
    }

    fn request(
        &self,
        method: reqwest::Method,
        url: String,
        token: Option<String>,
    ) -> reqwest::RequestBuilder {
        let request = self.http.request(method, url);
        match (token, &self.auth) {
            (Some(token), _) => request.bearer_auth(token),
            (None, RegistryAuth::Basic(user, password)) => request.basic_auth(user, Some(password)),
            (None, _) => request,
        }
    }

    /// Maps an oci-client error to what the copier needs to know.
    fn error(&self, e: OciDistributionError, doing: &str) -> SideError {
        let text = format!(
            "{} ({}): {doing}: {}",
            self.name,
            self.base_url,
            with_causes(&e)
        );
        match &e {
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => {
                self.forget_tokens();
                SideError::Unauthorized(text)
            }
            OciDistributionError::RegistryError { envelope, .. } => {
                match envelope.errors.first().map(|e| &e.code) {
                    Some(
                        OciErrorCode::BlobUnknown
                        | OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound,
                    ) => SideError::NotFound(text),
                    Some(OciErrorCode::Unauthorized | OciErrorCode::Denied) => {
                        self.forget_tokens();
                        SideError::Unauthorized(text)
                    }
                    Some(OciErrorCode::Toomanyrequests) => SideError::Failed(text),
                    _ => SideError::Refused(text),
                }
            }
            OciDistributionError::ServerError { code, .. } => match code {
                404 => SideError::NotFound(text),
                401 | 403 => {
                    self.forget_tokens();
                    SideError::Unauthorized(text)
                }
                400..=499 if *code != 408 && *code != 429 => SideError::Refused(text),
                _ => SideError::Failed(text),
            },
            _ => SideError::Failed(text),
        }
    }

    /// Maps a plain HTTP answer that is not a success.
    async fn status_error(&self, response: reqwest::Response, doing: &str) -> SideError {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let text = format!(
            "{} ({}): {doing}: HTTP {status}: {}",
            self.name,
            self.base_url,
            body.chars().take(500).collect::<String>()
        );
        match status.as_u16() {
            401 | 403 => {
                self.forget_tokens();
                SideError::Unauthorized(text)
            }
            404 => SideError::NotFound(text),
            408 | 429 => SideError::Failed(text),
            400..=499 => SideError::Refused(text),
            _ => SideError::Failed(text),
        }
    }

    fn transport(&self, e: reqwest::Error, doing: &str) -> SideError {
        SideError::Failed(format!(
            "{} ({}): {doing}: {}",
            self.name,
            self.base_url,
            with_causes(&e)
        ))
    }

    /// Checks that the endpoint answers as a registry and accepts the credentials:
    /// `GET /v2/`, then a token for the login alone when it wants one. Returns the
    /// instance name a berth reports.
    pub async fn check(&self) -> SideResult<Option<String>> {
        let response = self
            .http
            .get(format!("{}/v2/", self.base_url))
            .send()
            .await
            .map_err(|e| self.transport(e, "GET /v2/"))?;
        let instance = response
            .headers()
            .get(INSTANCE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if response.status().is_success() {
            return Ok(instance);
        }
        if response.status() != reqwest::StatusCode::UNAUTHORIZED {
            return Err(self.status_error(response, "GET /v2/").await);
        }
        let challenge = response
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let RegistryAuth::Basic(user, password) = &self.auth else {
            return Err(SideError::Unauthorized(format!(
                "{} ({}) requires a login; set a username and password on the endpoint",
                self.name, self.base_url
            )));
        };
        let response = if let Some(params) = challenge.strip_prefix("Bearer ") {
            let params = parse_challenge(params);
            let Some(realm) = params.get("realm") else {
                return Err(SideError::Failed(format!(
                    "{}: its Bearer challenge names no realm",
                    self.name
                )));
            };
            let mut request = self.http.get(realm.as_str());
            if let Some(service) = params.get("service") {
                request = request.query(&[("service", service)]);
            }
            request.basic_auth(user, Some(password)).send().await
        } else {
            self.http
                .get(format!("{}/v2/", self.base_url))
                .basic_auth(user, Some(password))
                .send()
                .await
        }
        .map_err(|e| self.transport(e, "logging in"))?;
        if response.status().is_success() {
            Ok(instance)
        } else {
            Err(self.status_error(response, "logging in").await)
        }
    }
}

/// An error with the causes it wraps ("error sending request" says little; "invalid peer
/// certificate: UnknownIssuer" says what to fix).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// `key="value",…` of a `WWW-Authenticate` challenge.
fn parse_challenge(params: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = params;
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_string();
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.split_once('"') {
                Some((v, next)) => (v.to_string(), next),
                None => (quoted.to_string(), ""),
            }
        } else {
            match after.split_once(',') {
                Some((v, next)) => (v.trim().to_string(), next),
                None => (after.trim().to_string(), ""),
            }
        };
        out.insert(key, value);
        rest = next;
    }
    out
}

mod peer;
mod sink;
mod source;

#[cfg(test)]
mod tests {
    use super::parse_challenge;

    #[test]
    fn challenges_are_parsed_with_quoted_and_bare_values() {
        let p = parse_challenge(
            r#"realm="http://127.0.0.1:5000/service/token",service="berth",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(p["realm"], "http://127.0.0.1:5000/service/token");
        assert_eq!(p["service"], "berth");
        assert_eq!(p["scope"], "repository:a/b:pull,push");
        let p = parse_challenge("realm=x, service=y");
        assert_eq!(p["realm"], "x");
        assert_eq!(p["service"], "y");
    }
}
