//! `berth:plugin/http`: outbound requests, each checked against the plugin's granted
//! endpoints before anything leaves the host. Redirects are not followed (the client is
//! built without them), since a redirect could lead outside the grant.

use std::time::Duration;

use futures::StreamExt;
use url::Url;

use crate::grants::origin;
use crate::state::CallState;

use super::{HTTP_REQUEST_LIMIT, HTTP_RESPONSE_LIMIT, HTTP_TIMEOUT_MS};

/// A plugin's request, whatever the package version.
pub(crate) struct Request {
    pub(crate) method: reqwest::Method,
    pub(crate) url: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    pub(crate) timeout_ms: Option<u32>,
}

/// The answer handed back.
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

/// Why a request got no answer: the cases of the WIT's `http-error`.
pub(crate) enum HttpError {
    NotGranted(String),
    InvalidRequest(String),
    Connection(String),
    Timeout,
    TooLarge(u64),
}

impl CallState {
    pub(crate) async fn send_checked(&mut self, request: Request) -> Result<Response, HttpError> {
        let url = Url::parse(&request.url)
            .map_err(|e| HttpError::InvalidRequest(format!("not an absolute URL: {e}")))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(HttpError::InvalidRequest(format!(
                "scheme {:?} is not http or https",
                url.scheme()
            )));
        }
        // A path servers could read two ways is refused outright, and said so: the grant
        // check below compares the path as servers act on it.
        if let Err(why) = crate::grants::effective_path(url.path()) {
            tracing::warn!(
                plugin = &*self.plugin,
                origin = origin(&url),
                "refused an HTTP request whose path could escape its grant"
            );
            return Err(HttpError::InvalidRequest(format!(
                "refused: the path {}",
                crate::log::escape(&why)
            )));
        }
        let scoped = self
            .scope
            .as_ref()
            .and_then(|s| s.grants.endpoint_for(&url));
        let Some(endpoint) = self.settings.grants.endpoint_for(&url).or(scoped) else {
            let origin = origin(&url);
            tracing::warn!(
                plugin = &*self.plugin,
                origin,
                path = crate::log::escape(url.path()).as_ref(),
                "refused an HTTP request to an endpoint not granted to the plugin"
            );
            return Err(HttpError::NotGranted(origin));
        };
        if request.body.len() > HTTP_REQUEST_LIMIT {
            return Err(HttpError::InvalidRequest(format!(
                "request body of {} bytes is over the {HTTP_REQUEST_LIMIT}-byte limit",
                request.body.len()
            )));
        }
        let method = request.method;
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in request.headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| HttpError::InvalidRequest(format!("invalid header name {name:?}")))?;
            let value = reqwest::header::HeaderValue::from_str(&value).map_err(|_| {
                HttpError::InvalidRequest(format!("invalid value for header {name}"))
            })?;
            if host_owned(&name, &value, &url, request.body.len()).map_err(|why| {
                tracing::warn!(
                    plugin = &*self.plugin,
                    origin = origin(&url),
                    header = name.as_str(),
                    "refused an HTTP request with a header the host's client owns"
                );
                HttpError::InvalidRequest(why)
            })? {
                continue;
            }
            headers.append(name, value);
        }
        let timeout_ms = request
            .timeout_ms
            .unwrap_or(HTTP_TIMEOUT_MS)
            .min(HTTP_TIMEOUT_MS);
        tracing::debug!(plugin = &*self.plugin, %endpoint, method = %method, path = url.path(), "plugin HTTP request");
        let send = self
            .services
            .http
            .request(method, url.clone())
            .headers(headers)
            .body(request.body)
            .timeout(Duration::from_millis(timeout_ms.into()))
            .send();
        let response = send.await.map_err(|e| classify(&url, e))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        if response
            .content_length()
            .is_some_and(|n| n > HTTP_RESPONSE_LIMIT)
        {
            return Err(HttpError::TooLarge(HTTP_RESPONSE_LIMIT));
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| classify(&url, e))?;
            if (body.len() + chunk.len()) as u64 > HTTP_RESPONSE_LIMIT {
                return Err(HttpError::TooLarge(HTTP_RESPONSE_LIMIT));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// Whether `name` is a header the host's HTTP client writes itself, so the plugin's copy
/// is dropped (`Ok(true)`) when it says the same, and the request refused (`Err`) when it
/// does not. These headers route or frame the request: a `Host` other than the URL's
/// would reach another virtual host at the granted address (one the grant never named),
/// and framing headers that disagree with the body would let a plugin smuggle a second
/// request to the granted server.
fn host_owned(
    name: &reqwest::header::HeaderName,
    value: &reqwest::header::HeaderValue,
    url: &Url,
    body_len: usize,
) -> Result<bool, String> {
    use reqwest::header;
    let text = value.to_str().unwrap_or("").trim();
    if name == header::HOST {
        return if same_authority(text, url) {
            Ok(true)
        } else {
            Err(format!(
                "refused: the Host header ({}) must name the URL's own host ({}); a request \
                 goes to the host its URL names",
                crate::log::escape(text),
                authority(url)
            ))
        };
    }
    if name == header::CONTENT_LENGTH {
        return if text.parse::<usize>().ok() == Some(body_len) {
            Ok(true)
        } else {
            Err(format!(
                "refused: Content-Length {} does not match the body's {body_len} bytes (the \
                 host sets it; leave it out)",
                crate::log::escape(text)
            ))
        };
    }
    let framing = [
        header::TRANSFER_ENCODING,
        header::CONNECTION,
        header::UPGRADE,
        header::TE,
        header::TRAILER,
    ];
    if framing.contains(name) || name == "keep-alive" || name == "proxy-connection" {
        return Err(format!(
            "refused: the {name} header belongs to the host's HTTP client, which frames and \
             keeps connections itself; leave it out"
        ));
    }
    Ok(false)
}

/// `host[:port]` as the client sends it for `url`: the port only when it is not the
/// scheme's default.
fn authority(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// Whether a `Host` value names `url`'s host and port (the default port may be spelled
/// out or left out; host names compare without regard to case).
fn same_authority(value: &str, url: &Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default();
    let (named_host, named_port) = match value.rsplit_once(':') {
        // An IPv6 literal is bracketed, so a colon inside it is not a port separator.
        Some((h, p)) if !p.contains(']') => match p.parse::<u16>() {
            Ok(p) => (h, Some(p)),
            Err(_) => return false,
        },
        // No port: the scheme's default (only http and https get this far).
        _ => (value, Some(if url.scheme() == "https" { 443 } else { 80 })),
    };
    named_host.eq_ignore_ascii_case(host) && named_port == port
}

/// Maps a client error to the typed error, naming the origin but never the query string.
fn classify(url: &Url, error: reqwest::Error) -> HttpError {
    if error.is_timeout() {
        return HttpError::Timeout;
    }
    let mut cause = String::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(&error);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    let what = if error.is_connect() {
        "cannot connect to"
    } else {
        "request failed to"
    };
    HttpError::Connection(format!("{what} {}: {cause}", origin(url)))
}

#[cfg(test)]
mod tests {
    use super::{host_owned, same_authority};
    use reqwest::header::{HeaderName, HeaderValue};
    use url::Url;

    fn check(name: &str, value: &str, url: &str, body: usize) -> Result<bool, String> {
        host_owned(
            &HeaderName::from_bytes(name.as_bytes()).unwrap(),
            &HeaderValue::from_str(value).unwrap(),
            &Url::parse(url).unwrap(),
            body,
        )
    }

    #[test]
    fn a_host_header_must_name_the_urls_own_host_and_port() {
        let url = Url::parse("https://ecs.aliyuncs.com/").unwrap();
        assert!(same_authority("ecs.aliyuncs.com", &url));
        assert!(same_authority("ECS.aliyuncs.com:443", &url));
        assert!(!same_authority("ecs.aliyuncs.com:8443", &url));
        assert!(!same_authority("internal.example", &url));
        assert!(!same_authority("ecs.aliyuncs.com:x", &url));
        let url = Url::parse("http://127.0.0.1:8080/api/").unwrap();
        assert!(same_authority("127.0.0.1:8080", &url));
        assert!(!same_authority("127.0.0.1", &url));
        let url = Url::parse("http://[::1]:9000/").unwrap();
        assert!(same_authority("[::1]:9000", &url));
        assert!(!same_authority("[::1]", &url));
        assert_eq!(
            check("host", "127.0.0.1:8080", "http://127.0.0.1:8080/", 0),
            Ok(true)
        );
        let refused = check("Host", "internal.example", "http://127.0.0.1:8080/", 0).unwrap_err();
        assert!(refused.contains("127.0.0.1:8080"), "{refused}");
    }

    #[test]
    fn framing_headers_belong_to_the_client() {
        let url = "http://127.0.0.1:8080/";
        assert_eq!(check("content-length", "4", url, 4), Ok(true));
        assert!(check("content-length", "0", url, 4).is_err());
        for name in [
            "transfer-encoding",
            "connection",
            "upgrade",
            "te",
            "trailer",
            "keep-alive",
            "proxy-connection",
        ] {
            assert!(check(name, "x", url, 0).is_err(), "{name}");
        }
        assert_eq!(check("x-acs-date", "x", url, 0), Ok(false));
        assert_eq!(check("authorization", "x", url, 0), Ok(false));
    }
}
