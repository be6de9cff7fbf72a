//! HTTP through the host. Only endpoints granted to the plugin are reachable; any other
//! request fails with [`HttpError::NotGranted`] before it leaves the host.
//!
//! ```ignore
//! let instances: Reservations = http::Request::post("https://ec2.us-east-1.amazonaws.com/")
//!     .form(&[("Action", "DescribeInstances"), ("Version", "2016-11-15")])
//!     .send()?
//!     .error_for_status()?
//!     .xml()?;
//! ```

use crate::bindings::berth::plugin::http as raw;
pub use raw::{HttpError, Method};

/// A request being built.
#[derive(Debug, Clone)]
pub struct Request {
    method: Method,
    url: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    timeout_ms: Option<u32>,
}

impl Request {
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Request {
            method,
            url: url.into(),
            query: Vec::new(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout_ms: None,
        }
    }
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::Get, url)
    }
    pub fn head(url: impl Into<String>) -> Self {
        Self::new(Method::Head, url)
    }
    pub fn post(url: impl Into<String>) -> Self {
        Self::new(Method::Post, url)
    }
    pub fn put(url: impl Into<String>) -> Self {
        Self::new(Method::Put, url)
    }
    pub fn patch(url: impl Into<String>) -> Self {
        Self::new(Method::Patch, url)
    }
    pub fn delete(url: impl Into<String>) -> Self {
        Self::new(Method::Delete, url)
    }

    /// Appends query parameters (percent-encoded when sent).
    pub fn query<K: AsRef<str>, V: AsRef<str>>(mut self, pairs: &[(K, V)]) -> Self {
        self.query.extend(
            pairs
                .iter()
                .map(|(k, v)| (k.as_ref().to_string(), v.as_ref().to_string())),
        );
        self
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// A JSON body, with its content type.
    pub fn json<T: serde::Serialize + ?Sized>(self, value: &T) -> Self {
        let body = serde_json::to_vec(value).expect("serializing to a Vec cannot fail");
        self.header("content-type", "application/json").body(body)
    }

    /// An `application/x-www-form-urlencoded` body (the EC2 and ECS query APIs).
    pub fn form<K: AsRef<str>, V: AsRef<str>>(self, pairs: &[(K, V)]) -> Self {
        let body = encode_pairs(pairs.iter().map(|(k, v)| (k.as_ref(), v.as_ref())));
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    }

    pub fn timeout_ms(mut self, ms: u32) -> Self {
        self.timeout_ms = Some(ms);
        self
    }

    /// The full URL this request goes to, query included (what a signer must sign).
    pub fn full_url(&self) -> String {
        if self.query.is_empty() {
            return self.url.clone();
        }
        let query = encode_pairs(self.query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let separator = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{separator}{query}", self.url)
    }

    /// The headers set so far.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The body set so far.
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    /// Sends the request through the host.
    pub fn send(self) -> Result<Response, HttpError> {
        let url = self.full_url();
        let request = raw::Request {
            method: self.method,
            url,
            headers: self.headers,
            body: self.body,
            timeout_ms: self.timeout_ms,
        };
        let response = raw::send(&request)?;
        Ok(Response {
            status: response.status,
            headers: response.headers,
            body: response.body,
        })
    }
}

fn encode_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        serializer.append_pair(k, v);
    }
    serializer.finish()
}

/// A complete response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A response that could not be used: a status outside 2xx, or a body that did not decode.
#[derive(Debug, Clone)]
pub enum ResponseError {
    Status { status: u16, body: String },
    Decode(String),
}

impl core::fmt::Display for ResponseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ResponseError::Status { status, body } => write!(f, "HTTP {status}: {body}"),
            ResponseError::Decode(e) => write!(f, "undecodable response body: {e}"),
        }
    }
}

impl Response {
    /// The first header of that name, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The wait a `Retry-After` header asks for in seconds, as milliseconds (an HTTP date
    /// is not read).
    pub fn retry_after_ms(&self) -> Option<u32> {
        self.header("retry-after")
            .and_then(|s| s.trim().parse::<u32>().ok())
            .map(|secs| secs.saturating_mul(1000))
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The response itself when 2xx, else its status and (at most 1 KiB of) its body.
    pub fn error_for_status(self) -> Result<Response, ResponseError> {
        if self.is_success() {
            return Ok(self);
        }
        let mut body = self.text();
        if body.len() > 1024 {
            let mut cut = 1024;
            while !body.is_char_boundary(cut) {
                cut -= 1;
            }
            body.truncate(cut);
        }
        Err(ResponseError::Status {
            status: self.status,
            body,
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ResponseError> {
        serde_json::from_slice(&self.body).map_err(|e| ResponseError::Decode(e.to_string()))
    }

    /// Decodes an XML body with serde (quick-xml's conventions: `@attr`, `$text`).
    pub fn xml<T: serde::de::DeserializeOwned>(&self) -> Result<T, ResponseError> {
        let text =
            core::str::from_utf8(&self.body).map_err(|e| ResponseError::Decode(e.to_string()))?;
        quick_xml::de::from_str(text).map_err(|e| ResponseError::Decode(e.to_string()))
    }
}

/// A sentence for an [`HttpError`], for logs and provider errors.
pub fn describe(error: &HttpError) -> String {
    match error {
        HttpError::NotGranted(origin) => format!("endpoint {origin} is not granted to this plugin"),
        HttpError::InvalidRequest(why) => format!("invalid request: {why}"),
        HttpError::Connection(why) => format!("connection failed: {why}"),
        HttpError::Timeout => "request timed out".to_string(),
        HttpError::TooLarge(limit) => format!("response larger than the host's {limit}-byte limit"),
    }
}
