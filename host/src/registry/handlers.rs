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
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        params
            .entry(k.into_owned())
            .or_insert_with(|| v.into_owned());
    }
    params
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
}
