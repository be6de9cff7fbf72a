//! The registry's door: every `/v2` request is identified and checked here before a
//! handler runs, and pushes, pulls and deletes are written to the audit log after.
//!
//! Unauthenticated callers get `401` with a `WWW-Authenticate: Bearer realm=…,service=…,
//! scope=…` challenge that leads clients to the token service; callers with a token that
//! lacks the scope get `401 … error="insufficient_scope"`; callers who logged in with
//! Basic credentials and lack the right get `403 DENIED`.

use std::net::IpAddr;

use axum::http::{HeaderMap, Method, StatusCode, header};

use super::Registry;
use super::errcode::{ErrorCode, RegistryError, RegistryResult};
use super::routes::Route;
use crate::auth::Action;
use crate::auth::audit::AuditRecord;
use crate::auth::authenticate::{AuthError, Caller};
use crate::names::{Reference, RepoName};

/// The action a route needs on its repository.
pub fn needed_action(route: &Route, method: &Method) -> Action {
    match (route, method) {
        (Route::Manifest(..) | Route::Blob(..), &Method::DELETE) => Action::Delete,
        (Route::Manifest(..), &Method::PUT) | (Route::UploadStart(_) | Route::Upload(..), _) => {
            Action::Push
        }
        _ => Action::Pull,
    }
}

fn scope_actions(action: Action) -> &'static str {
    match action {
        Action::Push => "pull,push",
        Action::Delete => "delete",
        _ => "pull",
    }
}

fn challenge(
    registry: &Registry,
    headers: &HeaderMap,
    scope: Option<&str>,
    error: Option<&str>,
    message: &str,
) -> RegistryError {
    let realm = registry.auth.realm(headers, registry.tls);
    let value = registry.auth.challenge(&realm, scope, error);
    RegistryError::new(ErrorCode::Unauthorized)
        .message(message)
        .header(header::WWW_AUTHENTICATE, &value)
}

fn identify_error(registry: &Registry, headers: &HeaderMap, e: AuthError) -> RegistryError {
    match e {
        AuthError::RateLimited(wait) => RegistryError::new(ErrorCode::TooManyRequests)
            .message(e.to_string())
            .header(header::RETRY_AFTER, &wait.as_secs().max(1).to_string()),
        AuthError::Store(inner) => inner.into(),
        AuthError::InvalidToken(_) => challenge(
            registry,
            headers,
            None,
            Some("invalid_token"),
            &e.to_string(),
        ),
        other => challenge(registry, headers, None, None, &other.to_string()),
    }
}

/// Identifies the caller and checks it may do what `route` needs. `mount_source` is the
/// repository a cross-repository mount reads from: the challenge names its pull scope
/// too, so a client that follows it gets a token the mount can use.
pub async fn admit(
    registry: &Registry,
    route: &Route,
    method: &Method,
    headers: &HeaderMap,
    source: IpAddr,
    mount_source: Option<&RepoName>,
) -> RegistryResult<Caller> {
    let caller = registry
        .auth
        .identify(headers, source)
        .await
        .map_err(|e| identify_error(registry, headers, e))?;
    let presented = caller.token_scopes.is_some()
        || !matches!(caller.principal, crate::auth::Principal::Anonymous);
    match route {
        Route::Base => {
            if !presented {
                return Err(challenge(
                    registry,
                    headers,
                    None,
                    None,
                    "authentication required; log in first",
                ));
            }
            Ok(caller)
        }
        Route::Catalog => {
            let covered = caller
                .token_scopes
                .as_ref()
                .is_none_or(|s| s.iter().any(|s| s.covers("registry", "catalog", "*")));
            if !presented || !covered {
                return Err(challenge(
                    registry,
                    headers,
                    Some("registry:catalog:*"),
                    None,
                    "authentication required",
                ));
            }
            Ok(caller)
        }
        _ => {
            let repo = route
                .repository()
                .expect("repository routes name one")
                .as_str();
            let action = needed_action(route, method);
            let mut scope = format!("repository:{repo}:{}", scope_actions(action));
            if let Some(from) = mount_source {
                // Distribution's form: several scopes in one parameter, space-separated.
                scope.push_str(&format!(" repository:{from}:pull"));
            }
            if registry.auth.allows(&caller, repo, action)? {
                // A token good for the push but not for the mount's source, held by an
                // account that may pull the source: ask the client for a fuller token
                // rather than let the mount silently become an upload. An account that
                // may not pull the source learns nothing, and uploads.
                if let (Some(from), Some(_)) = (mount_source, &caller.token_scopes)
                    && !registry.auth.allows(&caller, from.as_str(), Action::Pull)?
                    && registry
                        .auth
                        .repository_access(&caller.principal, from.as_str())?
                        .actions
                        .contains(&Action::Pull)
                {
                    return Err(challenge(
                        registry,
                        headers,
                        Some(&scope),
                        Some("insufficient_scope"),
                        &format!("the token does not grant pull on {from}, the mount's source"),
                    ));
                }
                return Ok(caller);
            }
            if !presented {
                return Err(challenge(
                    registry,
                    headers,
                    Some(&scope),
                    None,
                    "authentication required",
                ));
            }
            let project = repo.split('/').next().unwrap_or_default();
            let access = registry.auth.repository_access(&caller.principal, repo)?;
            if !access.project_exists && caller.principal.is_admin() {
                return Err(RegistryError::new(ErrorCode::NameUnknown).message(format!(
                    "project {project} does not exist; create it first (berth project create {project})"
                )));
            }
            let verb = action.scope_name().unwrap_or("use");
            // Why, in words the caller may hear: its own rights in a project it can see;
            // of a project it cannot see (missing, or private without membership), only
            // that it cannot see it, which tells apart nothing it may not know.
            let visible = access.actions.contains(&Action::Pull);
            let why = if access.actions.contains(&action) {
                String::new()
            } else if !visible {
                format!(
                    "project {project} does not exist, or {} is not a member of it",
                    caller.principal.name()
                )
            } else if matches!(caller.principal, crate::auth::Principal::Robot { .. }) {
                format!(
                    "{} is not granted {verb} in project {project}",
                    caller.principal.name()
                )
            } else {
                format!(
                    "{} has no role in project {project} that allows {verb} ({})",
                    caller.principal.name(),
                    role_needed(action)
                )
            };
            // A logged-in caller's read of what it cannot see is answered as absent: a HEAD
            // carries no body to explain a refusal, and a pushing client that hears 404 for
            // its blob goes on to the upload, whose refusal it shows. An anonymous caller
            // (with an anonymous token) is still challenged: logging in may help it.
            let anonymous = matches!(caller.principal, crate::auth::Principal::Anonymous);
            if !visible && action == Action::Pull && !anonymous {
                record_denial(registry, &caller, route, action).await;
                let code = match route {
                    Route::Blob(..) => ErrorCode::BlobUnknown,
                    Route::Manifest(..) | Route::ManifestBadReference(..) => {
                        ErrorCode::ManifestUnknown
                    }
                    _ => ErrorCode::NameUnknown,
                };
                return Err(RegistryError::new(code).message(why));
            }
            if caller.token_scopes.is_some() {
                if why.is_empty() {
                    // The account may do it now; the token was issued before it could.
                    return Err(challenge(
                        registry,
                        headers,
                        Some(&scope),
                        Some("insufficient_scope"),
                        &format!(
                            "the token does not grant {} on {repo}; ask the token service for a new one",
                            scope_actions(action)
                        ),
                    ));
                }
                record_denial(registry, &caller, route, action).await;
                return Err(challenge(
                    registry,
                    headers,
                    Some(&scope),
                    Some("insufficient_scope"),
                    &format!("requested access to {repo} is denied: {why}"),
                ));
            }
            record_denial(registry, &caller, route, action).await;
            Err(RegistryError::new(ErrorCode::Denied).message(format!(
                "requested access to the resource is denied: {} may not {verb} {repo}: {}",
                caller.principal.name(),
                if why.is_empty() {
                    "the account lacks the role".to_string()
                } else {
                    why
                }
            )))
        }
    }
}

/// The roles that allow `action`, for refusals.
fn role_needed(action: Action) -> &'static str {
    match action {
        Action::Pull => "pull needs guest, developer or admin, or a public project",
        Action::Push => "push needs developer or admin",
        Action::Delete => "delete needs admin",
        _ => "it needs a system administrator",
    }
}

async fn record_denial(registry: &Registry, caller: &Caller, route: &Route, action: Action) {
    let repo = route.repository().map(|r| r.as_str()).unwrap_or_default();
    let mut record = AuditRecord::new(
        caller.principal.name(),
        &caller.source.to_string(),
        action.scope_name().unwrap_or("access"),
        repo,
        "denied",
    );
    if let Route::Manifest(_, Reference::Tag(t)) = route {
        record.tag = Some(t.to_string());
    }
    registry.auth.audit.record(record).await;
}

/// Writes pushes, pulls and deletes of manifests, tags and blobs to the audit log.
pub async fn record(
    registry: &Registry,
    caller: &Caller,
    route: &Route,
    method: &Method,
    status: StatusCode,
    response_digest: Option<String>,
) {
    let action = match (route, method) {
        (Route::Manifest(..), &Method::GET) => "pull",
        (Route::Manifest(..), &Method::PUT) => "push",
        (Route::Manifest(..) | Route::Blob(..), &Method::DELETE) => "delete",
        _ => return,
    };
    let repo = route.repository().map(|r| r.as_str()).unwrap_or_default();
    let outcome = if status.is_success() {
        "success"
    } else {
        "failure"
    };
    let mut record = AuditRecord::new(
        caller.principal.name(),
        &caller.source.to_string(),
        action,
        repo,
        outcome,
    );
    match route {
        Route::Manifest(_, Reference::Tag(t)) => record.tag = Some(t.to_string()),
        Route::Manifest(_, Reference::Digest(d)) | Route::Blob(_, d) => {
            record.digest = Some(d.to_string())
        }
        _ => {}
    }
    if response_digest.is_some() {
        record.digest = response_digest;
    }
    if !status.is_success() && status != StatusCode::NOT_MODIFIED {
        record.detail = Some(format!("HTTP {}", status.as_u16()));
    }
    registry.auth.audit.record(record).await;
}
