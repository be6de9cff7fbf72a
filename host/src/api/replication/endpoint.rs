//! `/api/v1/replication/endpoints`: the registries replication sends to and pulls from.

use crate::api::ApiState;
use crate::api::caller::ApiCaller;
use crate::api::extract::ApiJson;
use crate::api::problem::{ApiError, ApiResult, Problem};
use crate::replication::EndpointHealth;
use crate::replication::endpoints::{EndpointKind, EndpointRecord};
use crate::storage::store::now_millis;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::*;

/// An endpoint as the API shows it: never its password.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EndpointView {
    /// Its name.
    pub name: String,
    /// `berth`, `distribution` or `oci`.
    pub kind: EndpointKind,
    /// `http(s)://host[:port]`.
    pub url: String,
    /// The account berth logs in as.
    pub username: Option<String>,
    /// Whether a password is stored (sealed).
    pub has_password: bool,
    /// TLS certificates are not verified.
    pub insecure: bool,
    /// Whether a CA certificate is set.
    pub has_ca_cert: bool,
    /// The instance name a berth endpoint reports (learnt when it answers).
    pub instance: Option<String>,
    /// Free text.
    pub description: String,
    /// Who created it.
    pub created_by: String,
    /// When (ms since the epoch).
    pub created_at: u64,
    /// When it last changed.
    pub updated_at: u64,
}

impl From<EndpointRecord> for EndpointView {
    fn from(r: EndpointRecord) -> EndpointView {
        EndpointView {
            name: r.name,
            kind: r.kind,
            url: r.url,
            username: r.username,
            has_password: r.sealed_password.is_some(),
            insecure: r.insecure,
            has_ca_cert: r.ca_cert.is_some(),
            instance: r.instance,
            description: r.description,
            created_by: r.created_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// `POST /api/v1/replication/endpoints`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEndpoint {
    /// Lowercase letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// What answers there (default `oci`).
    #[serde(default = "oci")]
    pub kind: EndpointKind,
    /// `http(s)://host[:port]`.
    pub url: String,
    /// The account to log in as; none for anonymous access.
    pub username: Option<String>,
    /// Its password or robot secret; stored sealed, never shown again.
    pub password: Option<String>,
    /// Accept any TLS certificate (prefer `ca_cert`).
    #[serde(default)]
    pub insecure: bool,
    /// A PEM CA certificate to trust for this endpoint.
    pub ca_cert: Option<String>,
    /// Free text.
    #[serde(default)]
    pub description: String,
}

fn oci() -> EndpointKind {
    EndpointKind::Oci
}

/// `PATCH /api/v1/replication/endpoints/{name}`: absent fields stay; `null` clears the
/// optional ones.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointUpdate {
    /// What answers there.
    pub kind: Option<EndpointKind>,
    /// `http(s)://host[:port]`.
    pub url: Option<String>,
    /// The account to log in as.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub username: Option<Option<String>>,
    /// Its password.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub password: Option<Option<String>>,
    /// Accept any TLS certificate.
    pub insecure: Option<bool>,
    /// A PEM CA certificate.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub ca_cert: Option<Option<String>>,
    /// Free text.
    pub description: Option<String>,
}

fn check_ca(pem: &Option<String>) -> ApiResult<()> {
    if let Some(pem) = pem {
        let certificates: Vec<_> = rustls_pemfile::certs(&mut pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| ApiError::bad_request(format!("ca_cert is not PEM: {e}")))?;
        if certificates.is_empty() {
            return Err(ApiError::bad_request(
                "ca_cert holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            ));
        }
    }
    Ok(())
}

/// Lists the endpoints.
#[utoipa::path(get, operation_id = "replication_endpoints_list", path = "/api/v1/replication/endpoints", tag = "replication",
    responses((status = 200, body = [EndpointView]), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn list_endpoints(
    State(state): State<ApiState>,
    caller: ApiCaller,
) -> ApiResult<Json<Vec<EndpointView>>> {
    caller.require_admin()?;
    let list = state.replication.endpoints()?;
    Ok(Json(list.into_iter().map(EndpointView::from).collect()))
}

/// Creates an endpoint.
#[utoipa::path(post, operation_id = "replication_endpoints_create", path = "/api/v1/replication/endpoints", tag = "replication", request_body = NewEndpoint,
    responses((status = 201, body = EndpointView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem), (status = 415, body = Problem)))]
pub async fn create_endpoint(
    State(state): State<ApiState>,
    caller: ApiCaller,
    ApiJson(new): ApiJson<NewEndpoint>,
) -> ApiResult<(StatusCode, Json<EndpointView>)> {
    caller.require_admin()?;
    check_ca(&new.ca_cert)?;
    let now = now_millis();
    let url = crate::replication::endpoints::check_url(&new.url)?;
    let mut record = EndpointRecord {
        name: new.name.clone(),
        kind: new.kind,
        url,
        username: new.username.filter(|u| !u.is_empty()),
        sealed_password: None,
        insecure: new.insecure,
        ca_cert: new.ca_cert,
        instance: None,
        description: new.description,
        created_by: caller.principal.name().to_string(),
        created_at: now,
        updated_at: now,
    };
    record.set_password(
        state.replication.sealer(),
        new.password.as_deref().filter(|p| !p.is_empty()),
    );
    let record = state.replication.create_endpoint(record)?;
    let replication = state.replication.clone();
    let learn = new.name.clone();
    tokio::spawn(async move { replication.learn_instance(&learn).await });
    caller
        .audit(&state, "replication.endpoint.create", &new.name, None)
        .await;
    Ok((StatusCode::CREATED, Json(record.into())))
}

/// One endpoint.
#[utoipa::path(get, operation_id = "replication_endpoints_get", path = "/api/v1/replication/endpoints/{name}", tag = "replication", params(("name" = String, Path)),
    responses((status = 200, body = EndpointView), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn get_endpoint(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> ApiResult<Json<EndpointView>> {
    caller.require_admin()?;
    Ok(Json(state.replication.endpoint(&name)?.into()))
}

/// Changes an endpoint.
#[utoipa::path(patch, operation_id = "replication_endpoints_update", path = "/api/v1/replication/endpoints/{name}", tag = "replication", params(("name" = String, Path)), request_body = EndpointUpdate,
    responses((status = 200, body = EndpointView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 415, body = Problem)))]
pub async fn update_endpoint(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
    ApiJson(update): ApiJson<EndpointUpdate>,
) -> ApiResult<Json<EndpointView>> {
    caller.require_admin()?;
    if let Some(ca) = &update.ca_cert {
        check_ca(ca)?;
    }
    let sealer = state.replication.clone();
    // The change may be applied more than once (a transaction that lost a conflict runs
    // again), so it reads the update rather than consuming it.
    let record = state.replication.update_endpoint(&name, |r| {
        if let Some(kind) = update.kind {
            r.kind = kind;
        }
        if let Some(url) = &update.url {
            r.url = url.clone();
        }
        if let Some(username) = &update.username {
            r.username = username.clone().filter(|u| !u.is_empty());
        }
        if let Some(password) = &update.password {
            r.set_password(
                sealer.sealer(),
                password.as_deref().filter(|p| !p.is_empty()),
            );
        }
        if let Some(insecure) = update.insecure {
            r.insecure = insecure;
        }
        if let Some(ca) = &update.ca_cert {
            r.ca_cert = ca.clone();
        }
        if let Some(d) = &update.description {
            r.description = d.clone();
        }
        Ok(())
    })?;
    let replication = state.replication.clone();
    let learn = name.clone();
    tokio::spawn(async move { replication.learn_instance(&learn).await });
    caller
        .audit(&state, "replication.endpoint.update", &name, None)
        .await;
    Ok(Json(record.into()))
}

/// Deletes an endpoint no policy uses.
#[utoipa::path(delete, operation_id = "replication_endpoints_delete", path = "/api/v1/replication/endpoints/{name}", tag = "replication", params(("name" = String, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn delete_endpoint(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    state.replication.delete_endpoint(&name)?;
    caller
        .audit(&state, "replication.endpoint.delete", &name, None)
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Checks that an endpoint answers as a registry and accepts its credentials.
#[utoipa::path(post, operation_id = "replication_endpoints_check", path = "/api/v1/replication/endpoints/{name}/check", tag = "replication", params(("name" = String, Path)),
    responses((status = 200, body = EndpointHealth), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn check_endpoint(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> ApiResult<Json<EndpointHealth>> {
    caller.require_admin()?;
    Ok(Json(state.replication.check_endpoint(&name).await?))
}

// ---- policies ----
