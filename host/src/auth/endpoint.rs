//! The token endpoint (Docker registry token spec), at `/service/token` as in Harbor.
//!
//! ```text
//! GET  /service/token?service=berth&scope=repository:team/app:pull,push[&scope=…][&offline_token=true]
//!      [Authorization: Basic …]           (none: an anonymous token)
//!   → 200 {"token","access_token","expires_in","issued_at"[,"refresh_token"]}
//! POST /service/token   application/x-www-form-urlencoded
//!      grant_type=password&username=…&password=…&service=…&scope=…[&access_type=offline]
//!      grant_type=refresh_token&refresh_token=…&service=…&scope=…
//!   → 200 {"access_token","token","scope","expires_in","issued_at"[,"refresh_token"]}
//! 401 UNAUTHORIZED (bad credentials), 429 TOOMANYREQUESTS (Retry-After), 400 (bad request)
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde_json::json;

use super::audit::AuditRecord;
use super::authenticate::{AccessControl, AuthError, Credentials};
use super::principal::Principal;
use super::scope::Scope;
use super::token::TokenError;

/// Largest token request body read.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The token routes.
pub fn router(auth: Arc<AccessControl>) -> Router {
    Router::new()
        .route(
            "/service/token",
            axum::routing::get(get_token).post(post_token),
        )
        .with_state(auth)
}

/// The client's address, as the server recorded it for this connection.
pub fn source_of(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"errors": [{"code": code, "message": message}]}).to_string(),
    )
        .into_response()
}

fn auth_error(e: AuthError) -> Response {
    match e {
        AuthError::RateLimited(wait) => {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "TOOMANYREQUESTS",
                &e.to_string(),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, wait.as_secs().max(1).into());
            r
        }
        AuthError::Store(inner) => {
            tracing::error!(error = %inner, "token request failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "UNKNOWN",
                "internal error; see the server log",
            )
        }
        AuthError::Malformed(_) => error(StatusCode::BAD_REQUEST, "UNAUTHORIZED", &e.to_string()),
        other => error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", &other.to_string()),
    }
}

struct TokenRequest {
    service: Option<String>,
    scopes: Vec<Scope>,
    offline: bool,
}

fn parse_request(pairs: &[(String, String)]) -> TokenRequest {
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    // Scopes may repeat, and POST requests may space-separate several in one value.
    let scopes = pairs
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').filter_map(Scope::parse).collect::<Vec<_>>())
        .collect();
    let offline = get("offline_token").as_deref() == Some("true")
        || get("access_type").as_deref() == Some("offline");
    TokenRequest {
        service: get("service"),
        scopes,
        offline,
    }
}

async fn login(
    auth: &Arc<AccessControl>,
    username: String,
    password: String,
    source: IpAddr,
) -> Result<Principal, AuthError> {
    let auth2 = auth.clone();
    let (u, result) = tokio::task::spawn_blocking(move || {
        // Successes are cached briefly (failures never are), so a CI fleet asking for a
        // token per pull pays argon2 once a minute, not per request.
        let r = auth2.login_cached(&username, &password, source);
        (username, r)
    })
    .await
    .map_err(|e| AuthError::Store(crate::storage::store::StoreError::Backend(e.to_string())))?;
    let outcome = if result.is_ok() { "success" } else { "failure" };
    let mut record = AuditRecord::new(&u, &source.to_string(), "login", &u, outcome);
    if let Err(e) = &result {
        record.detail = Some(e.to_string());
    }
    auth.audit.record(record).await;
    result
}

async fn respond(
    auth: &Arc<AccessControl>,
    principal: &Principal,
    request: &TokenRequest,
    refresh: Option<String>,
) -> Response {
    if let Some(service) = &request.service
        && service != auth.tokens.service()
    {
        return error(
            StatusCode::BAD_REQUEST,
            "DENIED",
            &format!(
                "this token service is for service {:?}, not {service:?}",
                auth.tokens.service()
            ),
        );
    }
    let granted = match auth.grant(principal, &request.scopes) {
        Ok(g) => g,
        Err(e) => return auth_error(AuthError::Store(e)),
    };
    let scope_text = granted
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let token = auth.tokens.issue_access(principal.name(), granted);
    let issued_at = time_rfc3339_now();
    let mut body = json!({
        "token": token,
        "access_token": token,
        "expires_in": auth.tokens.access_ttl_secs(),
        "issued_at": issued_at,
        "scope": scope_text,
    });
    let refresh = refresh.or_else(|| {
        (request.offline && !matches!(principal, Principal::Anonymous))
            .then(|| auth.tokens.issue_refresh(principal.name()))
    });
    if let Some(refresh) = refresh {
        body["refresh_token"] = json!(refresh);
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn time_rfc3339_now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// `GET /service/token`: Basic credentials (or none, for anonymous access).
async fn get_token(State(auth): State<Arc<AccessControl>>, request: Request) -> Response {
    let source = source_of(&request);
    let pairs: Vec<(String, String)> =
        form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let token_request = parse_request(&pairs);
    let principal = match AccessControl::credentials(request.headers()) {
        Ok(Credentials::None) => Principal::Anonymous,
        Ok(Credentials::Basic { username, password }) => {
            match login(&auth, username, password, source).await {
                Ok(p) => p,
                Err(e) => return auth_error(e),
            }
        }
        Ok(Credentials::Bearer(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "UNAUTHORIZED",
                "the token endpoint takes Basic credentials, not a token",
            );
        }
        Err(e) => return auth_error(e),
    };
    respond(&auth, &principal, &token_request, None).await
}

/// `POST /service/token`: the OAuth2 password and refresh_token grants.
async fn post_token(State(auth): State<Arc<AccessControl>>, request: Request) -> Response {
    let source = source_of(&request);
    let body: Bytes = match http_body_util::Limited::new(request.into_body(), MAX_FORM_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "UNSUPPORTED",
                "token request body too large",
            );
        }
    };
    let pairs: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let token_request = parse_request(&pairs);
    match get("grant_type").as_deref() {
        Some("password") => {
            let (Some(username), Some(password)) = (get("username"), get("password")) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "UNAUTHORIZED",
                    "the password grant needs username and password",
                );
            };
            match login(&auth, username, password, source).await {
                Ok(principal) => respond(&auth, &principal, &token_request, None).await,
                Err(e) => auth_error(e),
            }
        }
        Some("refresh_token") => {
            let Some(refresh) = get("refresh_token") else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "UNAUTHORIZED",
                    "the refresh_token grant needs refresh_token",
                );
            };
            let principal = auth
                .tokens
                .verify_refresh(&refresh)
                .map_err(|TokenError::Invalid(why)| AuthError::InvalidToken(why))
                .and_then(|(subject, issued_at)| auth.principal_for_subject(&subject, issued_at));
            match principal {
                Ok(principal) => respond(&auth, &principal, &token_request, Some(refresh)).await,
                Err(e) => auth_error(e),
            }
        }
        other => error(
            StatusCode::BAD_REQUEST,
            "UNSUPPORTED",
            &format!(
                "unsupported grant_type {:?}; use password or refresh_token",
                other.unwrap_or("")
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_dates() {
        let s = super::time_rfc3339_now();
        assert_eq!(s.len(), 20);
        assert!(s.starts_with("20") && s.ends_with('Z'));
    }
}
