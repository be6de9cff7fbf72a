//! ECS's RPC API: the action and version in `x-acs-*` headers, the parameters in the query,
//! an empty body, signed with ACS3-HMAC-SHA256 inside the sandbox (`sign`), answered in
//! JSON. Its errors become the provider's typed errors by their ECS code.

use std::hash::{BuildHasher, RandomState};

use berth_plugin_sdk::host;
use berth_plugin_sdk::http::{Request, Response};
use berth_plugin_sdk::provider::{ClusterContext, ErrorKind, ProviderError};
use berth_plugin_sdk::time::format_utc;
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The API version every action is asked in.
const VERSION: &str = "2014-05-26";
const ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// What ACS3 leaves unescaped: RFC 3986's unreserved characters. A space is `%20` and a
/// `+` is `%2B`, so a server that reads `+` as a space (as ECS does) reads what was signed.
const ESCAPED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub type Params = Vec<(String, String)>;

/// Where to send and how to sign requests about one cluster in one region.
pub struct Client {
    /// `scheme://authority`, no path.
    endpoint: String,
    /// What the HTTP client sends as `Host` (the port only when not the scheme's default).
    host: String,
    access_key_id: String,
    access_key_secret: String,
    security_token: Option<String>,
}

impl Client {
    /// A client for `region` of `cluster`: the cluster's endpoint (a VPC endpoint, an
    /// emulator) or ECS's regional one, and the cluster's credentials `access-key-id`,
    /// `access-key-secret` and, for STS credentials, `security-token`.
    pub fn new(cluster: &ClusterContext, region: &str) -> Result<Client, ProviderError> {
        let endpoint = match &cluster.endpoint {
            Some(endpoint) => endpoint.trim_end_matches('/').to_string(),
            None => format!("https://ecs.{region}.aliyuncs.com"),
        };
        let (scheme, authority) = endpoint
            .split_once("://")
            .ok_or_else(|| ProviderError::invalid(format!("endpoint {endpoint} has no scheme")))?;
        if authority.contains('/') || authority.contains('?') {
            return Err(ProviderError::invalid(format!(
                "endpoint {endpoint}: ECS's RPC API lives at the root; give scheme and host only"
            )));
        }
        let default_port = if scheme == "https" { ":443" } else { ":80" };
        let host = authority
            .strip_suffix(default_port)
            .unwrap_or(authority)
            .to_ascii_lowercase();
        let security_token = if cluster.credentials.iter().any(|c| c == "security-token") {
            Some(cluster.credential("security-token")?)
        } else {
            None
        };
        Ok(Client {
            endpoint: format!("{scheme}://{host}"),
            host,
            access_key_id: cluster.credential("access-key-id")?,
            access_key_secret: cluster.credential("access-key-secret")?,
            security_token,
        })
    }

    /// Calls `action` with `params` and answers the JSON body of its success.
    pub fn call(&self, action: &str, params: &[(String, String)]) -> Result<Value, ProviderError> {
        let started = host::monotonic_now();
        let query = canonical_query(params);
        let mut headers = vec![
            ("host".to_string(), self.host.clone()),
            ("x-acs-action".to_string(), action.to_string()),
            (
                "x-acs-content-sha256".to_string(),
                hex::encode(Sha256::digest(b"")),
            ),
            ("x-acs-date".to_string(), format_utc(&host::now())),
            ("x-acs-signature-nonce".to_string(), nonce()),
            ("x-acs-version".to_string(), VERSION.to_string()),
        ];
        if let Some(token) = &self.security_token {
            headers.push(("x-acs-security-token".to_string(), token.clone()));
        }
        headers.sort();
        let authorization = sign(
            "POST",
            &query,
            &headers,
            &self.access_key_id,
            &self.access_key_secret,
        );
        // What signing costs in the sandbox, for whoever asks berth for debug logs
        // (`cargo bench --bench scheduling` does).
        let signing_ns = host::monotonic_now().saturating_sub(started).to_string();
        host::debug(
            "signed a request",
            &[
                ("action", action),
                ("scheme", ALGORITHM),
                ("signing_ns", &signing_ns),
            ],
        );
        let mut request = Request::post(format!("{}/?{query}", self.endpoint))
            .header("authorization", authorization)
            .header("accept", "application/json");
        // `host` goes as the HTTP client sends it, from the URL.
        for (name, value) in headers.into_iter().filter(|(n, _)| n != "host") {
            request = request.header(name, value);
        }
        let response = request.send()?;
        if (200..300).contains(&response.status) {
            return serde_json::from_slice(&response.body).map_err(|e| {
                ProviderError::new(ErrorKind::Other, format!("{action}: unreadable reply: {e}"))
            });
        }
        Err(error_of(&response, action))
    }
}

/// The query string ACS3 signs and the request carries: every pair escaped RFC 3986
/// style, sorted by name (then value).
pub fn canonical_query(params: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| {
            (
                utf8_percent_encode(k, ESCAPED).to_string(),
                utf8_percent_encode(v, ESCAPED).to_string(),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The `Authorization` header of a request to `/` with `query` and `headers` (lowercase
/// names, sorted, every one of them signed; `x-acs-content-sha256` among them).
pub fn sign(
    method: &str,
    query: &str,
    headers: &[(String, String)],
    access_key_id: &str,
    secret: &str,
) -> String {
    let mut canonical_headers = String::new();
    for (name, value) in headers {
        canonical_headers.push_str(&format!("{name}:{}\n", value.trim()));
    }
    let signed_headers = headers
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let payload_hash = headers
        .iter()
        .find(|(n, _)| n == "x-acs-content-sha256")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    let canonical_request =
        format!("{method}\n/\n{query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}");
    let string_to_sign = format!(
        "{ALGORITHM}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(string_to_sign.as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    format!(
        "{ALGORITHM} Credential={access_key_id},SignedHeaders={signed_headers},Signature={signature}"
    )
}

/// A nonce no other request within ECS's 15 minutes carries: 128 bits from the sandbox's
/// random source (which std's `RandomState` reads), and the host's clock.
fn nonce() -> String {
    let now = host::now();
    let a = RandomState::new().hash_one(now.nanoseconds);
    let b = RandomState::new().hash_one(now.seconds);
    format!("{a:016x}{b:016x}{:x}{:08x}", now.seconds, now.nanoseconds)
}

/// An ECS error reply as a provider error: its code decides the kind.
fn error_of(response: &Response, action: &str) -> ProviderError {
    let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    let code = body["Code"].as_str().map(str::to_string);
    let message = body["Message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| {
            let mut text = response.text();
            text.truncate(512);
            text
        });
    let request_id = body["RequestId"].as_str().map(str::to_string);
    let kind = match code.as_deref() {
        Some(code) => kind_of(code),
        None if response.status == 401 || response.status == 403 => ErrorKind::Auth,
        None => ErrorKind::Other,
    };
    let kind = if kind == ErrorKind::Other && response.status >= 500 {
        ErrorKind::Transient
    } else {
        kind
    };
    let message = match code.as_deref() {
        // The one refusal berth's operator must fix on berth's side, not in the account.
        Some("InvalidTimeStamp.Expired") => format!(
            "{action}: {message} (this machine's clock is more than 15 minutes from ECS's; \
             fix its time sync)"
        ),
        _ => format!("{action}: {message}"),
    };
    let mut error = ProviderError::new(kind, message).with_code(code, request_id);
    if kind == ErrorKind::Throttled {
        // ECS names no wait; back off from about a second.
        error.retry_after_ms = response.retry_after_ms().or(Some(1000));
    }
    error
}

/// What berth must do about ECS error `code`.
pub fn kind_of(code: &str) -> ErrorKind {
    match code {
        "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "MissingAuthorization"
        | "InvalidAccessKeyId.NotFound"
        | "InvalidAccessKeyId.Inactive"
        | "InvalidAccessKeyId"
        | "InvalidTimeStamp.Expired"
        | "NoPermission"
        | "Account.Arrearage" => ErrorKind::Auth,
        code if code.starts_with("Forbidden") || code.starts_with("InvalidSecurityToken") => {
            ErrorKind::Auth
        }
        // A fresh nonce, as the retry carries, is all it takes.
        "SignatureNonceUsed" => ErrorKind::Transient,
        code if code.starts_with("Throttling") => ErrorKind::Throttled,
        "ServiceUnavailable" | "InternalError" | "UnknownError" => ErrorKind::Transient,
        code if code.starts_with("InternalError") => ErrorKind::Transient,
        code if code.contains("NoStock") || code.ends_with("NotOnSale") => ErrorKind::Capacity,
        code if code.starts_with("QuotaExceed") => ErrorKind::Quota,
        code if code.starts_with("IncorrectInstanceStatus") => ErrorKind::Conflict,
        "IdempotentParameterMismatch" => ErrorKind::AlreadyExists,
        "InvalidAction.NotFound" => ErrorKind::Unsupported,
        code if code.ends_with(".NotFound") => ErrorKind::NotFound,
        code if code.starts_with("Invalid")
            || code.starts_with("Missing")
            || code.starts_with("DryRun") =>
        {
            ErrorKind::Invalid
        }
        _ => ErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_escaped_as_acs3_signs_it() {
        let params = vec![
            ("Tag.1.Value".to_string(), "a b+c~d*é".to_string()),
            ("RegionId".to_string(), "cn-hangzhou".to_string()),
            ("InstanceIds".to_string(), "[\"i-1\",\"i-2\"]".to_string()),
        ];
        assert_eq!(
            canonical_query(&params),
            "InstanceIds=%5B%22i-1%22%2C%22i-2%22%5D&RegionId=cn-hangzhou&\
             Tag.1.Value=a%20b%2Bc~d%2A%C3%A9"
        );
    }

    /// The expected header is what the official SDK's own signer
    /// (`alibabacloud_tea_openapi.utils.Utils.get_authorization`) answered for this request.
    #[test]
    fn the_signature_is_the_official_sdks() {
        let headers: Vec<(String, String)> = [
            ("host", "ecs.cn-hangzhou.aliyuncs.com"),
            ("x-acs-action", "DescribeRegions"),
            (
                "x-acs-content-sha256",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            ("x-acs-date", "2026-12-02T02:00:00Z"),
            ("x-acs-signature-nonce", "3156853299f313e23d1673dc12e1703d"),
            ("x-acs-version", "2014-05-26"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let authorization = sign(
            "POST",
            "RegionId=cn-hangzhou",
            &headers,
            "LTAI5tBerthTeam",
            "berth-ecs-secret",
        );
        assert_eq!(authorization, EXPECTED_AUTHORIZATION);
    }

    const EXPECTED_AUTHORIZATION: &str = "ACS3-HMAC-SHA256 Credential=LTAI5tBerthTeam,\
        SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;\
        x-acs-signature-nonce;x-acs-version,Signature=f6fd1d50e0c486224274c991859c27a02fda4045ac90f9c87ccf557ceeb6e852";

    #[test]
    fn codes_read_as_what_berth_must_do() {
        assert_eq!(kind_of("Throttling.User"), ErrorKind::Throttled);
        assert_eq!(kind_of("SignatureDoesNotMatch"), ErrorKind::Auth);
        assert_eq!(kind_of("InvalidAccessKeyId.NotFound"), ErrorKind::Auth);
        assert_eq!(kind_of("InvalidTimeStamp.Expired"), ErrorKind::Auth);
        assert_eq!(kind_of("OperationDenied.NoStock"), ErrorKind::Capacity);
        assert_eq!(kind_of("QuotaExceed.ElasticQuota"), ErrorKind::Quota);
        assert_eq!(kind_of("IncorrectInstanceStatus"), ErrorKind::Conflict);
        assert_eq!(kind_of("InvalidInstanceId.NotFound"), ErrorKind::NotFound);
        assert_eq!(kind_of("InvalidAction.NotFound"), ErrorKind::Unsupported);
        assert_eq!(kind_of("MissingVSwitchId"), ErrorKind::Invalid);
        assert_eq!(kind_of("SignatureNonceUsed"), ErrorKind::Transient);
    }
}
