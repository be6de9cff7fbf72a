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
