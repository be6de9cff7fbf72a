//! `/api/v1/plugins`: load, inspect, configure, call and remove plugins, and the secrets
//! they may be granted. System administrators only: a plugin runs inside the host.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use http_body_util::BodyExt as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiState;
use super::caller::ApiCaller;
use super::extract::{ApiJson, ApiQuery};
use super::problem::{ApiError, ApiResult, Problem};
use crate::plugins::PluginSource;
use crate::plugins::{
    LimitsUpdate, MAX_COMPONENT_BYTES, PluginHostError, PluginStatus, PluginUpdate, Replace,
};
use berth_plugin_runtime::{CallError, CallStats};

/// A plugin as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PluginView {
    pub name: String,
    /// `cloud-provider`, `replication-strategy` or `host-init`.
    pub kind: String,
    /// The `berth:plugin` package version it is built for.
    pub world_version: String,
    /// The plugin's own version.
    pub version: String,
    pub description: String,
    /// `sha256:<hex>` of the component.
    pub digest: String,
    pub source: PluginSource,
    pub enabled: bool,
    /// `ready`, or `failed` (see `error`).
    pub state: String,
    pub error: Option<String>,
    /// Memory (bytes), tables (elements), fuel (≈ instructions) and wall time (ms) per call.
    #[schema(value_type = Object)]
    pub limits: serde_json::Value,
    /// Granted endpoints and secret names.
    #[schema(value_type = Object)]
    pub grants: serde_json::Value,
    /// The plugin's configuration values.
    pub config: BTreeMap<String, String>,
    pub loaded_by: String,
    /// ms since the epoch.
    pub loaded_at: u64,
    /// Fully qualified imports of the component.
    pub imports: Vec<String>,
    /// Fully qualified exports of the component.
    pub exports: Vec<String>,
    /// Functions `POST /api/v1/plugins/{name}/invoke` can call.
    pub functions: Vec<String>,
    /// Calls running or queued now.
    pub calls_in_flight: usize,
    /// What its finished calls have cost since it was loaded (this server's uptime at most).
    pub calls: CallStatsView,
}

/// A plugin's call statistics since it was loaded.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CallStatsView {
    /// Calls finished, successfully or not.
    pub completed: u64,
    /// Calls that ended in an error (a trap, a limit, a refused host call, a cancellation).
    pub failed: u64,
    /// Mean µs per call in the sandbox: fresh instance, the call's own running time,
    /// teardown.
    pub mean_sandbox_us: Option<f64>,
    /// Mean µs per call from its start until the caller had the result: waiting for a slot
    /// and a plugin thread, the sandbox up to the answer, the hand-over back (the teardown
    /// comes after).
    pub mean_total_us: Option<f64>,
    /// Log events dropped because a call had used up its log budget (`log_events`,
    /// `log_bytes`), and their bytes.
    pub log_events_dropped: u64,
    pub log_bytes_dropped: u64,
}

impl From<CallStats> for CallStatsView {
    fn from(s: CallStats) -> CallStatsView {
        let us = |d: Option<std::time::Duration>| d.map(|d| d.as_secs_f64() * 1e6);
        CallStatsView {
            completed: s.calls,
            failed: s.failures,
            mean_sandbox_us: us(s.mean_sandbox_time()),
            mean_total_us: us(s.mean_total_time()),
            log_events_dropped: s.log_events_dropped,
            log_bytes_dropped: s.log_bytes_dropped,
        }
    }
}

impl From<PluginStatus> for PluginView {
    fn from(s: PluginStatus) -> PluginView {
        let r = s.record;
        let (imports, exports) = s
            .inspection
            .map(|i| (i.imports, i.exports))
            .unwrap_or_default();
        PluginView {
            name: s.name,
            kind: r.kind.to_string(),
            world_version: r.world_version,
            version: r.version,
            description: r.description,
            digest: r.digest,
            source: r.source,
            enabled: r.enabled,
            state: s.state,
            error: s.error,
            limits: serde_json::to_value(r.settings.limits).expect("serializes"),
            grants: serde_json::to_value(&r.settings.grants).expect("serializes"),
            config: r.settings.config,
            loaded_by: r.loaded_by,
            loaded_at: r.loaded_at,
            imports,
            exports,
            functions: s.functions,
            calls_in_flight: s.calls_in_flight,
            calls: s.calls.into(),
        }
    }
}

impl From<PluginHostError> for ApiError {
    fn from(e: PluginHostError) -> ApiError {
        match e {
            PluginHostError::NotFound(d) => ApiError::not_found(d),
            PluginHostError::Conflict(d) => ApiError::conflict(d),
            PluginHostError::Invalid(d) => ApiError::bad_request(d),
            PluginHostError::Refused(e) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("the plugin was refused: {e}"),
            ),
            PluginHostError::Call(
                e @ (CallError::BadInput { .. } | CallError::NoSuchFunction { .. }),
            ) => ApiError::bad_request(e.to_string()),
            PluginHostError::Call(e) => ApiError::new(StatusCode::BAD_GATEWAY, e.to_string()),
            e @ (PluginHostError::Store(_)
            | PluginHostError::Io(_)
            | PluginHostError::Runtime(_)) => ApiError::internal(e),
        }
    }
}

/// `POST /api/v1/plugins` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LoadQuery {
    /// `true`: replace a loaded plugin of the same name (its settings are kept); a name:
    /// replace that plugin, whose limits the component's `info` call runs under.
    pub replace: Option<String>,
    /// Limits for the component's first call and, for a new plugin, after it.
    pub memory_bytes: Option<u64>,
    pub table_elements: Option<u64>,
    pub fuel: Option<u64>,
    pub wall_time_ms: Option<u64>,
    pub log_events: Option<u64>,
    pub log_bytes: Option<u64>,
    /// The file's name, for the record.
    pub filename: Option<String>,
    /// The OCI reference (pinned by digest) the client pulled the component from.
    pub reference: Option<String>,
}

/// `POST /api/v1/plugins/{name}/invoke`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Invoke {
    /// One of the plugin's `functions`.
    pub function: String,
    /// The function's arguments as a JSON object (see the WIT world).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub input: serde_json::Value,
}

/// The function's result; a WIT `result` is `{"ok": …}` or `{"error": …}`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct Invoked {
    #[schema(value_type = Object)]
    pub output: serde_json::Value,
}

/// `PUT /api/v1/plugin-secrets/{name}`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretValue {
    /// The value; stored sealed, never returned.
    pub value: String,
}

/// The plugin contract this host serves.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Worlds {
    /// `berth:plugin`.
    pub package: String,
    /// Package versions a plugin may be built for.
    pub versions: Vec<String>,
    /// Each world, with the host interfaces it may import and the functions it exports.
    pub worlds: Vec<World>,
}

/// One world of the contract.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct World {
    pub name: String,
    pub imports: Vec<String>,
    pub functions: Vec<String>,
}

/// Which `berth:plugin` versions and worlds this host loads plugins for.
#[utoipa::path(get, operation_id = "plugins_worlds", path = "/api/v1/plugin-worlds", tag = "plugins",
    responses((status = 200, body = Worlds), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn worlds(caller: ApiCaller) -> ApiResult<Json<Worlds>> {
    caller.require_admin()?;
    use berth_plugin_runtime::Kind;
    Ok(Json(Worlds {
        package: berth_plugin_runtime::world::PACKAGE.to_string(),
        versions: berth_plugin_runtime::SUPPORTED_VERSIONS
            .iter()
            .map(|v| v.to_string())
            .collect(),
        worlds: Kind::ALL
            .into_iter()
            .map(|kind| World {
                name: kind.world().to_string(),
                imports: kind
                    .allowed_imports()
                    .iter()
                    .filter(|i| **i != "types")
                    .map(|i| i.to_string())
                    .collect(),
                functions: berth_plugin_runtime::calls::functions(
                    kind,
                    berth_plugin_runtime::latest::VERSION,
                )
                .iter()
                .map(|f| f.to_string())
                .collect(),
            })
            .collect(),
    }))
}

/// Lists every plugin, built-ins included.
#[utoipa::path(get, operation_id = "plugins_list", path = "/api/v1/plugins", tag = "plugins",
    responses((status = 200, body = [PluginView]), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn list(
    State(state): State<ApiState>,
    caller: ApiCaller,
) -> ApiResult<Json<Vec<PluginView>>> {
    caller.require_admin()?;
    Ok(Json(
        state
            .plugins
            .list()
            .await?
            .into_iter()
            .map(PluginView::from)
            .collect(),
    ))
}

/// Loads a component (the request body, `application/wasm`) after checking it.
#[utoipa::path(post, operation_id = "plugins_load", path = "/api/v1/plugins", tag = "plugins", params(LoadQuery),
    request_body(content = Vec<u8>, content_type = "application/wasm"),
    responses((status = 201, body = PluginView), (status = 400, body = Problem), (status = 403, body = Problem),
        (status = 409, body = Problem), (status = 413, body = Problem), (status = 422, body = Problem)))]
pub async fn load(
    State(state): State<ApiState>,
    caller: ApiCaller,
    ApiQuery(query): ApiQuery<LoadQuery>,
    body: Body,
) -> ApiResult<(StatusCode, Json<PluginView>)> {
    caller.require_admin()?;
    let wasm = http_body_util::Limited::new(body, MAX_COMPONENT_BYTES)
        .collect()
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("a component may be at most {MAX_COMPONENT_BYTES} bytes"),
            )
        })?
        .to_bytes();
    if wasm.is_empty() {
        return Err(ApiError::bad_request(
            "the request body must be the component (application/wasm)",
        ));
    }
    let source = match (query.reference, query.filename) {
        (Some(reference), _) => PluginSource::Oci { reference },
        (None, filename) => PluginSource::File { filename },
    };
    let replace = match query.replace.as_deref() {
        None | Some("false") => Replace::No,
        Some("true") => Replace::Any,
        Some(name) => Replace::Named(name.to_string()),
    };
    let stated = LimitsUpdate {
        memory_bytes: query.memory_bytes,
        table_elements: query.table_elements,
        fuel: query.fuel,
        wall_time_ms: query.wall_time_ms,
        log_events: query.log_events,
        log_bytes: query.log_bytes,
    };
    let status = state
        .plugins
        .load(
            wasm.to_vec(),
            source,
            caller.principal.name(),
            replace,
            stated,
        )
        .await?;
    caller
        .audit(
            &state,
            "plugin.load",
            &status.name,
            Some(status.record.digest.clone()),
        )
        .await;
    Ok((StatusCode::CREATED, Json(status.into())))
}

/// One plugin, with its imports, exports, grants and limits.
#[utoipa::path(get, operation_id = "plugins_get", path = "/api/v1/plugins/{name}", tag = "plugins",
    responses((status = 200, body = PluginView), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> ApiResult<Json<PluginView>> {
    caller.require_admin()?;
    Ok(Json(state.plugins.get(&name).await?.into()))
}

/// Enables or disables a plugin, changes its limits or configuration, grants or revokes.
#[utoipa::path(patch, operation_id = "plugins_update", path = "/api/v1/plugins/{name}", tag = "plugins", request_body = PluginUpdate,
    responses((status = 200, body = PluginView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 415, body = Problem)))]
pub async fn update(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
    ApiJson(update): ApiJson<PluginUpdate>,
) -> ApiResult<Json<PluginView>> {
    caller.require_admin()?;
    let detail = serde_json::to_string(&update).ok();
    let status = state.plugins.update(&name, update).await?;
    caller.audit(&state, "plugin.update", &name, detail).await;
    Ok(Json(status.into()))
}

/// Removes a loaded plugin (built-ins can only be disabled).
#[utoipa::path(delete, operation_id = "plugins_remove", path = "/api/v1/plugins/{name}", tag = "plugins",
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn remove(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    state.plugins.remove(&name).await?;
    caller.audit(&state, "plugin.remove", &name, None).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Calls one function of a plugin with JSON arguments (for trying plugins out and for
/// scripts); a plugin that fails or exceeds a limit answers 502 with the reason.
#[utoipa::path(post, operation_id = "plugins_invoke", path = "/api/v1/plugins/{name}/invoke", tag = "plugins", request_body = Invoke,
    responses((status = 200, body = Invoked), (status = 400, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 415, body = Problem), (status = 502, body = Problem)))]
pub async fn invoke(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
    ApiJson(call): ApiJson<Invoke>,
) -> ApiResult<Json<Invoked>> {
    caller.require_admin()?;
    let output = state
        .plugins
        .invoke(&name, &call.function, call.input)
        .await?;
    Ok(Json(Invoked { output }))
}

/// The names of the stored plugin secrets (never their values).
#[utoipa::path(get, operation_id = "plugins_secrets", path = "/api/v1/plugin-secrets", tag = "plugins",
    responses((status = 200, body = [String]), (status = 403, body = Problem)))]
pub async fn secrets(
    State(state): State<ApiState>,
    caller: ApiCaller,
) -> ApiResult<Json<Vec<String>>> {
    caller.require_admin()?;
    Ok(Json(state.plugins.secret_names().await?))
}

/// Stores a secret (sealed at rest); plugins see it only when granted.
#[utoipa::path(put, operation_id = "plugins_set_secret", path = "/api/v1/plugin-secrets/{name}", tag = "plugins", request_body = SecretValue,
    responses((status = 204), (status = 400, body = Problem), (status = 403, body = Problem), (status = 415, body = Problem)))]
pub async fn set_secret(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
    ApiJson(secret): ApiJson<SecretValue>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    state.plugins.set_secret(&name, &secret.value).await?;
    caller.audit(&state, "plugin.secret.set", &name, None).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a secret.
#[utoipa::path(delete, operation_id = "plugins_remove_secret", path = "/api/v1/plugin-secrets/{name}", tag = "plugins",
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn remove_secret(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    state.plugins.remove_secret(&name).await?;
    caller
        .audit(&state, "plugin.secret.remove", &name, None)
        .await;
    Ok(StatusCode::NO_CONTENT)
}
