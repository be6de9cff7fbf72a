//! The EC2 Query API: a form-encoded `POST` of `Action`, `Version` and the action's
//! parameters, signed with SigV4 (service `ec2`) inside the sandbox, answered in XML. Its
//! errors become the provider's typed errors by their EC2 code, with EC2's request id.

use std::time::{Duration, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use berth_plugin_sdk::host;
use berth_plugin_sdk::http::{Request, Response};
use berth_plugin_sdk::provider::{ClusterContext, ErrorKind, ProviderError};

/// The API version every action is asked in.
const VERSION: &str = "2016-11-15";

/// Where to send and how to sign requests about one cluster in one region.
pub struct Client {
    endpoint: String,
    region: String,
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

impl Client {
    /// A client for `region` of `cluster`: the cluster's endpoint (an emulator, a private
    /// endpoint) or EC2's regional one, and the cluster's credentials `access-key-id`,
    /// `secret-access-key` and, when present, `session-token`.
    pub fn new(cluster: &ClusterContext, region: &str) -> Result<Client, ProviderError> {
        let endpoint = match &cluster.endpoint {
            Some(endpoint) => endpoint.trim_end_matches('/').to_string(),
            None => format!("https://ec2.{region}.amazonaws.com"),
        };
        let session_token = if cluster.credentials.iter().any(|c| c == "session-token") {
            Some(cluster.credential("session-token")?)
        } else {
            None
        };
        Ok(Client {
            endpoint,
            region: region.to_string(),
            access_key_id: cluster.credential("access-key-id")?,
            secret_access_key: cluster.credential("secret-access-key")?,
            session_token,
        })
    }

    /// Calls `action` with `params` and answers the XML body of its success.
    pub fn call(&self, action: &str, params: &[(String, String)]) -> Result<String, ProviderError> {
        let mut form: Vec<(&str, &str)> = vec![("Action", action), ("Version", VERSION)];
        form.extend(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let request = Request::post(format!("{}/", self.endpoint)).form(&form);
        let started = host::monotonic_now();
        let request = self.signed(request)?;
        // What signing costs in the sandbox, for whoever asks berth for debug logs
        // (`cargo bench --bench scheduling` does).
        let signing_ns = host::monotonic_now().saturating_sub(started).to_string();
        host::debug(
            "signed a request",
            &[
                ("action", action),
                ("scheme", "AWS4-HMAC-SHA256"),
                ("signing_ns", &signing_ns),
            ],
        );
        let response = request.send()?;
        if (200..300).contains(&response.status) {
            return Ok(response.text());
        }
        Err(error_of(&response, action))
    }

    /// `request` with SigV4's headers. The time is the host's: the sandbox's own clock
    /// reads zero.
    fn signed(&self, request: Request) -> Result<Request, ProviderError> {
        let now = host::now();
        let time = UNIX_EPOCH + Duration::new(now.seconds, now.nanoseconds);
        let identity = Credentials::new(
            &self.access_key_id,
            &self.secret_access_key,
            self.session_token.clone(),
            None,
            "berth-cluster",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("ec2")
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| ProviderError::invalid(format!("signing: {e}")))?
            .into();
        let url = request.full_url();
        let headers = request.headers().to_vec();
        let signable = SignableRequest::new(
            "POST",
            &url,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(request.body_bytes()),
        )
        .map_err(|e| ProviderError::invalid(format!("signing: {e}")))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| ProviderError::invalid(format!("signing: {e}")))?
            .into_parts();
        let mut signed = request;
        for (name, value) in instructions.headers() {
            signed = signed.header(name, value);
        }
        Ok(signed)
    }
}

/// An EC2 error reply as a provider error: its code decides the kind.
fn error_of(response: &Response, action: &str) -> ProviderError {
    let body = response.text();
    let code = element(&body, "Code");
    let message = element(&body, "Message").unwrap_or_else(|| {
        let mut text = body.clone();
        text.truncate(512);
        text
    });
    let request_id = element(&body, "RequestID").or_else(|| element(&body, "RequestId"));
    let kind = match code.as_deref() {
        Some(code) => kind_of(code),
        None if response.status >= 500 => ErrorKind::Transient,
        None if response.status == 401 || response.status == 403 => ErrorKind::Auth,
        None => ErrorKind::Other,
    };
    let kind = if kind == ErrorKind::Other && response.status >= 500 {
        ErrorKind::Transient
    } else {
        kind
    };
    let mut error =
        ProviderError::new(kind, format!("{action}: {message}")).with_code(code, request_id);
    if kind == ErrorKind::Throttled {
        // EC2 names no wait; its guidance is exponential backoff from about a second.
        error.retry_after_ms = response.retry_after_ms().or(Some(1000));
    }
    error
}

/// What berth must do about EC2 error `code`.
pub fn kind_of(code: &str) -> ErrorKind {
    match code {
        "RequestLimitExceeded" | "Throttling" | "ThrottlingException" => ErrorKind::Throttled,
        "InsufficientInstanceCapacity"
        | "InsufficientHostCapacity"
        | "InsufficientReservedInstanceCapacity"
        | "InsufficientCapacity"
        | "InsufficientFreeAddressesInSubnet" => ErrorKind::Capacity,
        "InstanceLimitExceeded" | "VcpuLimitExceeded" | "MaxSpotInstanceCountExceeded" => {
            ErrorKind::Quota
        }
        "AuthFailure"
        | "UnauthorizedOperation"
        | "SignatureDoesNotMatch"
        | "InvalidClientTokenId"
        | "AccessDenied"
        | "OptInRequired"
        | "Blocked"
        | "PendingVerification" => ErrorKind::Auth,
        "IncorrectInstanceState" | "IncorrectState" | "InvalidState" => ErrorKind::Conflict,
        "IdempotentParameterMismatch" => ErrorKind::AlreadyExists,
        "InternalError" | "InternalFailure" | "ServiceUnavailable" | "Unavailable" => {
            ErrorKind::Transient
        }
        "Unsupported" | "UnsupportedOperation" => ErrorKind::Unsupported,
        code if code.ends_with(".NotFound") => ErrorKind::NotFound,
        code if code.starts_with("Invalid")
            || code.starts_with("Missing")
            || code == "UnknownParameter" =>
        {
            ErrorKind::Invalid
        }
        _ => ErrorKind::Other,
    }
}

/// The text of the first `<name>` element of `xml`, unescaped.
fn element(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    Some(
        xml[start..end]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}
