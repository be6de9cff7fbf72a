//! Parses `/v2/…` paths into typed requests and dispatches them.
//!
//! Repository names contain slashes, so routes are matched from the right: the suffix
//! (`/manifests/<ref>`, `/blobs/<digest>`, `/blobs/uploads/<id>`, `/tags/list`,
//! `/referrers/<digest>`) is fixed, and everything before it is the name.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::Registry;
use super::content::Replicated;
use super::errcode::{ErrorCode, RegistryError, RegistryResult};
use super::{guard, handlers};
use crate::digest::Digest;
use crate::names::{Reference, RepoName};

/// A parsed registry route.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags(RepoName),
    /// `/v2/<name>/manifests/<reference>`
    Manifest(RepoName, Reference),
    /// `/v2/<name>/manifests/<text>` where the text is neither a valid tag nor a valid
    /// digest: nothing can be stored under it (GET/HEAD/DELETE answer 404), and a PUT is
    /// refused with the reason.
    ManifestBadReference(RepoName, String),
    /// `/v2/<name>/blobs/<digest>`
    Blob(RepoName, Digest),
    /// `/v2/<name>/blobs/uploads/`
    UploadStart(RepoName),
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload(RepoName, String),
    /// `/v2/<name>/referrers/<digest>`
    Referrers(RepoName, Digest),
}

impl Route {
    /// The repository this route addresses, if any: what access control checks.
    pub fn repository(&self) -> Option<&RepoName> {
        match self {
            Route::Base | Route::Catalog => None,
            Route::Tags(n)
            | Route::Manifest(n, _)
            | Route::ManifestBadReference(n, _)
            | Route::Blob(n, _)
            | Route::UploadStart(n)
            | Route::Upload(n, _)
            | Route::Referrers(n, _) => Some(n),
        }
    }
}

/// Parses a request path (without query) into a route.
pub fn parse(path: &str) -> Result<Route, RegistryError> {
    let Some(rest) = path.strip_prefix("/v2/") else {
        return if path == "/v2" {
            Ok(Route::Base)
        } else {
            Err(not_found(path))
        };
    };
    if rest.is_empty() {
        return Ok(Route::Base);
    }
    if rest == "_catalog" {
        return Ok(Route::Catalog);
    }
    let segments: Vec<&str> = rest.split('/').collect();
    let n = segments.len();
    let name_of = |k: usize| -> Result<RepoName, RegistryError> {
        if n <= k {
            return Err(not_found(path));
        }
        Ok(RepoName::parse_allowing_one_component(
            &segments[..n - k].join("/"),
        )?)
    };
    if n >= 3 && segments[n - 3] == "blobs" && segments[n - 2] == "uploads" {
        let name = name_of(3)?;
        let id = segments[n - 1];
        return Ok(if id.is_empty() {
            Route::UploadStart(name)
        } else {
            Route::Upload(name, id.to_owned())
        });
    }
    if n >= 2 {
        let (kind, last) = (segments[n - 2], segments[n - 1]);
        match kind {
            "tags" if last == "list" => return Ok(Route::Tags(name_of(2)?)),
            "manifests" => {
                let name = name_of(2)?;
                return Ok(match Reference::parse(last) {
                    Ok(reference) => Route::Manifest(name, reference),
                    Err(_) => Route::ManifestBadReference(name, last.to_owned()),
                });
            }
            "blobs" if last == "uploads" => return Ok(Route::UploadStart(name_of(2)?)),
            "blobs" => {
                let name = name_of(2)?;
                return Ok(Route::Blob(name, last.parse()?));
            }
            "referrers" => {
                let name = name_of(2)?;
                return Ok(Route::Referrers(name, last.parse()?));
            }
            _ => {}
        }
    }
    Err(not_found(path))
}

/// The answer for any request under a one-component name (`alpine`). Such a name holds
/// nothing, since every repository is `<project>/<repository>`: reads answer as for absent
/// content, so that a pushing client goes on from its blob HEAD to the upload, whose
/// refusal carries the rule in a body the client shows (a HEAD's cannot).
fn one_component(route: &Route, method: &Method, name: &RepoName) -> RegistryError {
    let rule = format!(
        "repository name {name:?} has no project: names are <project>/<repository>, such as \
         'library/{name}'; push to a repository inside a project (`berth project create` makes one)"
    );
    let code = match (route, method) {
        (Route::Blob(..), &Method::GET | &Method::HEAD) => ErrorCode::BlobUnknown,
        (Route::Manifest(..) | Route::ManifestBadReference(..), &Method::GET | &Method::HEAD) => {
            ErrorCode::ManifestUnknown
        }
        (Route::Tags(_) | Route::Referrers(..), &Method::GET) => ErrorCode::NameUnknown,
        _ => ErrorCode::NameInvalid,
    };
    RegistryError::new(code).message(rule)
}

/// The repository a cross-repository mount (`POST …/blobs/uploads/?mount=<d>&from=<repo>`)
/// reads from, when the request is one: access control asks for pull on it too.
fn mount_source(route: &Route, method: &Method, query: Option<&str>) -> Option<RepoName> {
    if !matches!(route, Route::UploadStart(_)) || method != Method::POST {
        return None;
    }
    let params = handlers::query_params(query);
    params.get("mount")?;
    RepoName::parse(params.get("from")?).ok()
}

fn not_found(path: &str) -> RegistryError {
    RegistryError::new(ErrorCode::NameUnknown).message(format!(
        "no registry endpoint at {}",
        path.chars().take(300).collect::<String>()
    ))
}

fn method_not_allowed(method: &Method) -> RegistryError {
    RegistryError::new(ErrorCode::Unsupported)
        .message(format!("method {method} is not supported on this endpoint"))
}

/// The `/v2` router.
pub fn router(registry: Arc<Registry>) -> Router {
    // A fallback rather than path patterns: names contain slashes, so `parse` matches
    // from the right, which axum's router cannot express.
    Router::new()
        .fallback(dispatch)
        .with_state(registry)
        .layer(axum::middleware::from_fn(error_bodies))
}

/// Every 4xx answer of the registry carries the OCI error body (`{"errors":[…]}`), which
/// clients show; the handlers build their errors as [`RegistryError`], and this catches
/// any empty one that slips past them (a HEAD answer has no body by definition).
async fn error_bodies(request: Request, next: axum::middleware::Next) -> Response {
    use http_body::Body as _;
    let head = request.method() == Method::HEAD;
    let response = next.run(request).await;
    let status = response.status();
    if head || !status.is_client_error() || response.body().size_hint().exact() != Some(0) {
        return response;
    }
    let code = match status {
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
        StatusCode::FORBIDDEN => ErrorCode::Denied,
        StatusCode::TOO_MANY_REQUESTS => ErrorCode::TooManyRequests,
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::RANGE_NOT_SATISFIABLE => ErrorCode::SizeInvalid,
        _ => ErrorCode::Unsupported,
    };
    let (parts, _) = response.into_parts();
    let mut filled = RegistryError::new(code)
        .status(status)
        .message(
            status
                .canonical_reason()
                .unwrap_or("the request was refused")
                .to_lowercase(),
        )
        .into_response();
    for (name, value) in parts.headers.iter() {
        if name != axum::http::header::CONTENT_LENGTH && name != axum::http::header::CONTENT_TYPE {
            filled.headers_mut().append(name, value.clone());
        }
    }
    filled
}

/// The header a replicating peer names itself in (see `replication::remote`).
pub const ORIGIN_HEADER: &str = "berth-replication-origin";
/// The header carrying the clock of a replicated tag move or delete.
pub const CLOCK_HEADER: &str = "berth-tag-clock";

/// Where a manifest write or delete came from, when a replicating peer says so. Only
/// system administrators and robot accounts may say so: the origin decides where a
/// change is not sent, and the clock who wins a tag, so an ordinary developer must not be
/// able to keep a push from reaching the other primary.
fn replicated_from(
    caller: &crate::auth::authenticate::Caller,
    headers: &axum::http::HeaderMap,
) -> RegistryResult<Option<Replicated>> {
    let Some(origin) = headers.get(ORIGIN_HEADER) else {
        return Ok(None);
    };
    let trusted = caller.principal.is_admin()
        || matches!(caller.principal, crate::auth::Principal::Robot { .. });
    if !trusted {
        return Ok(None);
    }
    let invalid = |what: &str| {
        RegistryError::new(ErrorCode::ManifestInvalid).message(format!(
            "the {what} header is malformed; it is set by replicating berth instances"
        ))
    };
    let origin = origin
        .to_str()
        .ok()
        .filter(|o| !o.is_empty() && o.len() <= 64)
        .ok_or_else(|| invalid(ORIGIN_HEADER))?
        .to_string();
    let clock = match headers.get(CLOCK_HEADER) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| invalid(CLOCK_HEADER))?,
        ),
    };
    Ok(Some(Replicated { origin, clock }))
}

async fn dispatch(State(registry): State<Arc<Registry>>, request: Request) -> Response {
    let route = match parse(request.uri().path()) {
        Ok(route) => route,
        Err(e) => return e.into_response(),
    };
    let method = request.method().clone();
    if let Some(name) = route.repository()
        && !name.has_project()
    {
        return finish(Err(one_component(&route, &method, name)), &method);
    }
    let source = crate::auth::endpoint::source_of(&request);
    let is_base = route == Route::Base;
    let mount_source = mount_source(&route, &method, request.uri().query());
    let caller = match guard::admit(
        &registry,
        &route,
        &method,
        request.headers(),
        source,
        mount_source.as_ref(),
    )
    .await
    {
        Ok(caller) => caller,
        Err(e) => {
            let response = finish(Err(e), &method);
            return if is_base {
                name_instance(&registry, response)
            } else {
                response
            };
        }
    };
    let audited = route.clone();
    let result = match (route, &method) {
        (Route::Base, &Method::GET | &Method::HEAD) => Ok(handlers::base::get()),
        (Route::Catalog, &Method::GET) => {
            handlers::catalog::get(&registry, request.uri().query(), &caller).await
        }
        (Route::Tags(name), &Method::GET) => {
            handlers::tags::list(&registry, &name, request.uri().query()).await
        }
        (Route::Manifest(name, reference), &Method::GET | &Method::HEAD) => {
            handlers::manifests::get(
                &registry,
                &name,
                &reference,
                request.headers(),
                method == Method::HEAD,
            )
            .await
        }
        (Route::Manifest(name, reference), &Method::PUT) => {
            match replicated_from(&caller, request.headers()) {
                Ok(from) => {
                    handlers::manifests::put(&registry, name, reference, request, from.as_ref())
                        .await
                }
                Err(e) => Err(e),
            }
        }
        (Route::ManifestBadReference(_, text), &Method::PUT) => {
            Err(match Reference::parse(&text) {
                Err(e) => RegistryError::from(e),
                Ok(_) => RegistryError::new(ErrorCode::ManifestInvalid),
            })
        }
        (
            Route::ManifestBadReference(name, text),
            &Method::GET | &Method::HEAD | &Method::DELETE,
        ) => Err(RegistryError::new(ErrorCode::ManifestUnknown)
            .message(format!(
                "{:?} is neither a tag nor a digest, so no manifest is stored under it",
                text.chars().take(200).collect::<String>()
            ))
            .detail(serde_json::json!({ "name": name.as_str() }))),
        (Route::Manifest(name, reference), &Method::DELETE) => {
            match replicated_from(&caller, request.headers()) {
                Ok(from) => {
                    handlers::manifests::delete(&registry, &name, &reference, from.as_ref()).await
                }
                Err(e) => Err(e),
            }
        }
        (Route::Blob(name, digest), &Method::GET | &Method::HEAD) => {
            handlers::blobs::get(
                &registry,
                &name,
                &digest,
                request.headers(),
                method == Method::HEAD,
            )
            .await
        }
        (Route::Blob(name, digest), &Method::DELETE) => {
            handlers::blobs::delete(&registry, &name, &digest).await
        }
        (Route::UploadStart(name), &Method::POST) => {
            handlers::uploads::start(&registry, name, request, &caller).await
        }
        (Route::Upload(name, id), &Method::GET) => {
            handlers::uploads::status(&registry, &name, &id).await
        }
        (Route::Upload(name, id), &Method::PATCH) => {
            handlers::uploads::patch(&registry, name, id, request).await
        }
        (Route::Upload(name, id), &Method::PUT) => {
            handlers::uploads::close(&registry, name, id, request).await
        }
        (Route::Upload(name, id), &Method::DELETE) => {
            handlers::uploads::cancel(&registry, &name, &id).await
        }
        (Route::Referrers(name, digest), &Method::GET) => {
            handlers::referrers::list(&registry, &name, &digest, request.uri().query()).await
        }
        _ => Err(method_not_allowed(&method)),
    };
    let mut response = finish(result, &method);
    if is_base {
        response = name_instance(&registry, response);
    }
    let digest = response
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    guard::record(
        &registry,
        &caller,
        &audited,
        &method,
        response.status(),
        digest,
    )
    .await;
    response
}

/// The header `/v2/` answers (authenticated or not) name this instance in, so that a
/// berth adding this one as an endpoint learns the name its replicated content will carry.
pub const INSTANCE_HEADER: &str = "berth-instance";

fn name_instance(registry: &Registry, mut response: Response) -> Response {
    if let Ok(value) = axum::http::HeaderValue::from_str(registry.clock.node()) {
        response.headers_mut().insert(INSTANCE_HEADER, value);
    }
    response
}

fn finish(result: Result<Response, RegistryError>, method: &Method) -> Response {
    match result {
        Ok(response) => response,
        Err(e) => {
            let mut response = e.into_response();
            if method == Method::HEAD {
                // HEAD answers carry no body; the status and headers say it all.
                *response.body_mut() = Body::empty();
            }
            response
        }
    }
}

/// `Docker-Distribution-API-Version`, sent on every `/v2` answer.
pub async fn api_version_header(request: Request, next: axum::middleware::Next) -> Response {
    let mut response = next.run(request).await;
    response.headers_mut().insert(
        "docker-distribution-api-version",
        axum::http::HeaderValue::from_static("registry/2.0"),
    );
    response
}

/// Status for a response with no body.
pub fn empty(status: StatusCode) -> Response {
    (status, Body::empty()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> Digest {
        Digest::sha256_of(b"x")
    }

    #[test]
    fn routes_are_matched_from_the_right() {
        let name = RepoName::parse("team/blobs/uploads").unwrap();
        assert_eq!(
            parse("/v2/team/blobs/uploads/blobs/uploads/").unwrap(),
            Route::UploadStart(name.clone())
        );
        assert_eq!(
            parse("/v2/team/blobs/uploads/blobs/uploads/abc").unwrap(),
            Route::Upload(name.clone(), "abc".into())
        );
        assert_eq!(
            parse(&format!("/v2/team/blobs/uploads/blobs/{}", d())).unwrap(),
            Route::Blob(name, d())
        );
        assert_eq!(parse("/v2/").unwrap(), Route::Base);
        assert_eq!(parse("/v2/_catalog").unwrap(), Route::Catalog);
        assert!(matches!(
            parse("/v2/a/b/tags/list").unwrap(),
            Route::Tags(_)
        ));
        assert!(matches!(
            parse("/v2/a/b/manifests/latest").unwrap(),
            Route::Manifest(_, Reference::Tag(_))
        ));
        assert!(matches!(
            parse(&format!("/v2/a/b/referrers/{}", d())).unwrap(),
            Route::Referrers(..)
        ));
    }

    #[test]
    fn bad_names_and_digests_get_their_codes() {
        assert_eq!(
            parse("/v2/A/b/tags/list").unwrap_err().code(),
            ErrorCode::NameInvalid
        );
        assert_eq!(
            parse("/v2/a/../b/tags/list").unwrap_err().code(),
            ErrorCode::NameInvalid
        );
        assert_eq!(
            parse("/v2/a/b/blobs/sha256:zz").unwrap_err().code(),
            ErrorCode::DigestInvalid
        );
        assert_eq!(
            parse("/v2/a/b/nothing").unwrap_err().code(),
            ErrorCode::NameUnknown
        );
        assert_eq!(
            parse("/v2/tags/list").unwrap_err().code(),
            ErrorCode::NameUnknown
        );
    }
}
