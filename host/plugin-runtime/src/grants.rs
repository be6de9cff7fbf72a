//! What a plugin may reach: HTTP endpoints (scheme, host, port, path prefix) and secrets
//! by name. Nothing is granted by default.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use url::Url;

/// Everything granted to one plugin.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Grants {
    pub endpoints: Vec<Endpoint>,
    pub secrets: BTreeSet<String>,
}

impl Grants {
    /// The first granted endpoint that covers `url`.
    pub fn endpoint_for(&self, url: &Url) -> Option<&Endpoint> {
        let path = effective_path(url.path()).ok()?;
        self.endpoints.iter().find(|e| e.allows_at(url, &path))
    }
}

/// One granted endpoint. Written `https://ec2.us-east-1.amazonaws.com/` or with a port
/// and a path prefix, `http://10.0.0.5:8774/v2.1/`; a host `*.example.com` covers every
/// subdomain of example.com (not example.com itself).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    scheme: String,
    host: String,
    port: u16,
    path_prefix: String,
}

impl Endpoint {
    /// Parses an endpoint grant; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Endpoint, String> {
        let wildcard = text.contains("://*.");
        let parseable = text.replacen("://*.", "://wildcard.", 1);
        let url = Url::parse(&parseable).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
        let scheme = url.scheme().to_string();
        if scheme != "http" && scheme != "https" {
            return Err(format!(
                "{text:?}: only http and https endpoints can be granted"
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "{text:?}: credentials do not belong in a grant; grant a secret"
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "{text:?}: a grant is scheme, host, port and path prefix only"
            ));
        }
        let mut host = url
            .host_str()
            .ok_or_else(|| format!("{text:?} has no host"))?
            .to_string();
        if wildcard {
            host = host.replacen("wildcard.", "*.", 1);
        }
        let port = url
            .port_or_known_default()
            .expect("http(s) has a default port");
        let path_prefix =
            effective_path(url.path()).map_err(|why| format!("{text:?}: the path {why}"))?;
        Ok(Endpoint {
            scheme,
            host,
            port,
            path_prefix,
        })
    }

    /// Whether a request to `url` falls inside this grant. The path must continue the
    /// prefix at a segment boundary: `/v2` covers `/v2` and `/v2/servers`, not `/v2x`.
    /// The path is compared as a server will act on it ([`effective_path`]); a path a
    /// server could read two ways is never inside a grant.
    pub fn allows(&self, url: &Url) -> bool {
        effective_path(url.path()).is_ok_and(|path| self.allows_at(url, &path))
    }

    /// [`Endpoint::allows`] with the URL's path already made effective.
    fn allows_at(&self, url: &Url, path: &str) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let host_matches = match self.host.strip_prefix("*.") {
            Some(domain) => host
                .strip_suffix(domain)
                .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1),
            None => host.eq_ignore_ascii_case(&self.host),
        };
        let path_matches = path == self.path_prefix
            || (path.starts_with(&self.path_prefix)
                && (self.path_prefix.ends_with('/')
                    || path.as_bytes().get(self.path_prefix.len()) == Some(&b'/')));
        url.scheme() == self.scheme
            && host_matches
            && url.port_or_known_default() == Some(self.port)
            && url.username().is_empty()
            && url.password().is_none()
            && path_matches
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}:{}{}",
            self.scheme, self.host, self.port, self.path_prefix
        )
    }
}

impl Serialize for Endpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Endpoint::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The path of a request as the server will act on it: each segment percent-decoded once,
/// with dot segments resolved (the URL parser has resolved `.`, `..` and their `%2e`
/// spellings already). A path is refused, rather than guessed at, where servers differ:
/// an encoded `/` or `\` inside a segment (`/api/..%2fprivate` is one segment to the
/// URL, but `/private` to a server that decodes before resolving), a NUL, a dot segment
/// hidden behind a `;` path parameter (`..;/`, which Tomcat and others resolve), and a
/// segment that decodes to another encoded separator or dot (decoded twice by a proxy).
pub fn effective_path(raw: &str) -> Result<String, String> {
    let mut segments: Vec<String> = Vec::new();
    let mut pieces = raw.split('/');
    if pieces.next() != Some("") {
        return Err(format!("{raw:?} is not absolute"));
    }
    for piece in pieces {
        let bytes: Vec<u8> = percent_encoding::percent_decode_str(piece).collect();
        let Ok(decoded) = String::from_utf8(bytes) else {
            return Err(format!(
                "{raw:?} has a segment that is not UTF-8 once decoded"
            ));
        };
        if decoded.contains(['/', '\\']) {
            return Err(format!(
                "{raw:?} has an encoded '/' or '\\' inside a segment, which servers resolve differently"
            ));
        }
        if decoded.chars().any(char::is_control) {
            return Err(format!("{raw:?} has an encoded control character"));
        }
        let lowered = decoded.to_ascii_lowercase();
        if ["%2f", "%5c", "%2e", "%00"]
            .iter()
            .any(|e| lowered.contains(e))
        {
            return Err(format!(
                "{raw:?} has a doubly encoded separator or dot, which a proxy decoding twice would resolve"
            ));
        }
        let before_parameters = decoded.split(';').next().unwrap_or_default();
        if decoded.contains(';') && matches!(before_parameters, "." | "..") {
            return Err(format!(
                "{raw:?} has a dot segment with path parameters ('..;'), which some servers resolve"
            ));
        }
        match decoded.as_str() {
            "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(decoded),
        }
    }
    // A trailing dot segment leaves a directory: keep its trailing slash.
    let trailing = raw.ends_with('/') || raw.ends_with("/.") || raw.ends_with("/..");
    let mut path = format!("/{}", segments.join("/"));
    if trailing && !path.ends_with('/') {
        path.push('/');
    }
    Ok(path)
}

/// The origin of a URL (`scheme://host:port`), for messages that must not echo a query
/// string, which may carry a signature or a token.
pub fn origin(url: &Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(host), Some(port)) => format!("{}://{host}:{port}", url.scheme()),
        _ => url.scheme().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(grant: &str, url: &str) -> bool {
        Endpoint::parse(grant)
            .unwrap()
            .allows(&Url::parse(url).unwrap())
    }

    #[test]
    fn scheme_host_port_and_path_prefix_must_all_match() {
        assert!(allows(
            "https://api.example.com/",
            "https://api.example.com/v1/x?y=1"
        ));
        assert!(allows(
            "https://api.example.com",
            "https://API.example.com:443/"
        ));
        assert!(!allows(
            "https://api.example.com/",
            "http://api.example.com/"
        ));
        assert!(!allows(
            "https://api.example.com/",
            "https://api.example.com:8443/"
        ));
        assert!(!allows(
            "https://api.example.com/",
            "https://api.example.com.evil.net/"
        ));
        assert!(!allows(
            "https://api.example.com/",
            "https://user:pw@api.example.com/"
        ));
        assert!(allows(
            "http://127.0.0.1:8774/v2",
            "http://127.0.0.1:8774/v2"
        ));
        assert!(allows(
            "http://127.0.0.1:8774/v2",
            "http://127.0.0.1:8774/v2/servers"
        ));
        assert!(!allows(
            "http://127.0.0.1:8774/v2",
            "http://127.0.0.1:8774/v2x"
        ));
        assert!(!allows(
            "http://127.0.0.1:8774/v2/",
            "http://127.0.0.1:8774/v2/../admin"
        ));
    }

    #[test]
    fn a_wildcard_covers_subdomains_only() {
        assert!(allows(
            "https://*.amazonaws.com/",
            "https://ec2.us-east-1.amazonaws.com/"
        ));
        assert!(!allows(
            "https://*.amazonaws.com/",
            "https://amazonaws.com/"
        ));
        assert!(!allows(
            "https://*.amazonaws.com/",
            "https://evilamazonaws.com/"
        ));
    }

    #[test]
    fn bad_grants_are_refused_with_the_reason() {
        assert!(
            Endpoint::parse("ftp://x/")
                .unwrap_err()
                .contains("only http and https")
        );
        assert!(
            Endpoint::parse("https://u:p@x/")
                .unwrap_err()
                .contains("credentials")
        );
        assert!(
            Endpoint::parse("https://x/?a=b")
                .unwrap_err()
                .contains("path prefix only")
        );
        assert!(
            Endpoint::parse("not a url")
                .unwrap_err()
                .contains("is not a URL")
        );
    }

    #[test]
    fn grants_round_trip_through_json() {
        let grants = Grants {
            endpoints: vec![Endpoint::parse("https://*.example.com:8443/api").unwrap()],
            secrets: ["token".to_string()].into(),
        };
        let json = serde_json::to_string(&grants).unwrap();
        assert_eq!(
            json,
            r#"{"endpoints":["https://*.example.com:8443/api"],"secrets":["token"]}"#
        );
        assert_eq!(serde_json::from_str::<Grants>(&json).unwrap(), grants);
    }
}
