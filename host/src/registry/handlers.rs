//! One module per endpoint family; each handler's doc shows its wire form.

pub mod base;
pub mod blobs;
pub mod catalog;
pub mod manifests;
pub mod referrers;
pub mod tags;
pub mod uploads;

use std::collections::HashMap;

use super::errcode::{ErrorCode, RegistryError, RegistryResult};

/// Most entries one catalog or tag-list page returns when the client sets no `n` (or a
/// larger one): bounds the response size; the `Link` header leads to the rest.
pub const MAX_PAGE: usize = 10_000;

/// Query parameters, decoded.
pub fn query_params(query: Option<&str>) -> HashMap<String, String> {
    query
        .map(|q| {
            url_decode_pairs(q)
                .into_iter()
                .fold(HashMap::new(), |mut m, (k, v)| {
                    m.entry(k).or_insert(v);
                    m
                })
        })
        .unwrap_or_default()
}

fn url_decode_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| {
                std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .flatten();
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, b) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `n` and `last` pagination parameters.
pub fn pagination(params: &HashMap<String, String>) -> RegistryResult<(usize, Option<String>)> {
    let n = match params.get("n") {
        None => MAX_PAGE,
        Some(n) => n
            .parse::<usize>()
            .map_err(|_| {
                RegistryError::new(ErrorCode::Unsupported)
                    .status(axum::http::StatusCode::BAD_REQUEST)
                    .message(format!("n must be a non-negative integer, not {n:?}"))
            })?
            .min(MAX_PAGE),
    };
    let last = params.get("last").filter(|l| !l.is_empty()).cloned();
    Ok((n, last))
}

/// `Link: <path?last=…&n=…>; rel="next"` for a page that may have a successor.
pub fn next_link(path: &str, last: &str, n: usize) -> String {
    format!("<{path}?last={}&n={n}>; rel=\"next\"", percent_encode(last))
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_percent_decoded() {
        let p = query_params(Some("digest=sha256%3Aab&n=3&x=%zz"));
        assert_eq!(p["digest"], "sha256:ab");
        assert_eq!(p["n"], "3");
        assert_eq!(p["x"], "%zz");
    }

    #[test]
    fn next_links_encode_the_cursor() {
        assert_eq!(
            next_link("/v2/_catalog", "a/b", 2),
            "</v2/_catalog?last=a%2Fb&n=2>; rel=\"next\""
        );
    }
}
