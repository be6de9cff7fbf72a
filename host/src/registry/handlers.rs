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

/// Query parameters, decoded; the first of repeated keys wins.
pub fn query_params(query: Option<&str>) -> HashMap<String, String> {
    let mut params = HashMap::new();
    for (k, v) in query_pairs(query) {
        params.entry(k).or_insert(v);
    }
    params
}

/// Every value of `key`, in order (`?tag=a&tag=b`).
pub fn query_values(query: Option<&str>, key: &str) -> Vec<String> {
    query_pairs(query)
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect()
}

/// The query's pairs, percent-decoded as RFC 3986 says: a `+` is a plus, not a space.
/// The registry's queries are not HTML forms, and the values that can hold a `+` (media
/// types such as `application/spdx+json`) never hold a space.
fn query_pairs(query: Option<&str>) -> impl Iterator<Item = (String, String)> + '_ {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(move |pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
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
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("last", last)
        .append_pair("n", &n.to_string())
        .finish();
    format!("<{path}?{query}>; rel=\"next\"")
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

    #[test]
    fn a_plus_in_a_query_is_a_plus() {
        let q = Some("artifactType=application/spdx+json&x=a%2Bb%20c&tag=1&tag=2");
        let params = query_params(q);
        assert_eq!(params["artifactType"], "application/spdx+json");
        assert_eq!(params["x"], "a+b c");
        assert_eq!(query_values(q, "tag"), ["1", "2"]);
    }
}
