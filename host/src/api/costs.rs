//! `/api/v1/costs` and `/api/v1/clusters/{name}/price-sheet`: what machines cost. A
//! report of a project is visible to whoever may read its machines; a report across
//! projects, price sheets and an accrual run now are system administrators'.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::ApiState;
use super::caller::ApiCaller;
use super::extract::{ApiJson, ApiQuery};
use super::problem::{ApiError, ApiResult, Problem};
use crate::auth::Action;
use crate::cost::report::{By, Report, month};
use crate::cost::sheet::Sheet;
use crate::storage::tables::cost::{EntryFilter, ExchangeRate, SheetVersion};

/// `GET /api/v1/costs` parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CostQuery {
    /// The month, `YYYY-MM` (UTC); or give `from` and `to`.
    pub month: Option<String>,
    /// Start, RFC 3339 (with `to`, instead of `month`).
    pub from: Option<String>,
    /// End (exclusive), RFC 3339.
    pub to: Option<String>,
    /// The project (required unless a system administrator asks).
    pub project: Option<String>,
    /// Only this cluster.
    pub cluster: Option<String>,
    /// Only this machine.
    pub machine: Option<String>,
    /// Rows by `project` (default), `cluster`, `machine`, `day` or `label:KEY`.
    pub by: Option<String>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
    /// Also convert every figure to this currency at the administrators' exchange
    /// rates (`conversion` in the answer; JSON only).
    pub convert_to: Option<String>,
}

/// A project's costs are for whoever may read its machines; costs across projects are
/// the system administrators'.
fn may_read_costs(state: &ApiState, caller: &ApiCaller, project: Option<&str>) -> ApiResult<()> {
    match project {
        Some(project) => {
            caller.require(&state.auth, project, Action::ReadMachines)?;
            Ok(())
        }
        None => caller
            .require_admin()
            .map_err(|_| ApiError::bad_request("name the project: ?project=NAME")),
    }
}

fn rfc3339(what: &str, text: &str) -> ApiResult<u64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .and_then(|t| u64::try_from(t.timestamp_millis()).ok())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "{what} {text:?} is not an RFC 3339 time (2026-11-01T00:00:00Z)"
            ))
        })
}

/// What machines cost over a month or a window, summed per currency and broken down by
/// project, cluster, machine, label or day; every breakdown adds up to the total. Amounts
/// are exact decimals (as strings); billed time without a price is counted apart.
#[utoipa::path(get, operation_id = "costs_report", path = "/api/v1/costs", tag = "costs", params(CostQuery),
    responses((status = 200, body = Report), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn cost_report(
    State(state): State<ApiState>,
    caller: ApiCaller,
    ApiQuery(query): ApiQuery<CostQuery>,
) -> ApiResult<Response> {
    may_read_costs(&state, &caller, query.project.as_deref())?;
    let (from, to) = match (&query.month, &query.from, &query.to) {
        (Some(m), None, None) => month(m).map_err(|e| ApiError::bad_request(e.to_string()))?,
        (None, Some(from), Some(to)) => (rfc3339("from", from)?, rfc3339("to", to)?),
        _ => {
            return Err(ApiError::bad_request(
                "give ?month=YYYY-MM, or both ?from= and ?to= (RFC 3339)",
            ));
        }
    };
    if to <= from {
        return Err(ApiError::bad_request("the window ends before it starts"));
    }
    let by_text = query.by.as_deref().unwrap_or("project");
    let by = By::parse(by_text).ok_or_else(|| {
        ApiError::bad_request(format!(
            "by {by_text:?}: use project, cluster, machine, day or label:KEY"
        ))
    })?;
    let filter = EntryFilter {
        from,
        to,
        project: query.project,
        cluster: query.cluster,
        machine: query.machine,
    };
    let report = state
        .scheduling
        .cost_report(filter, by, query.convert_to.as_deref())
        .await?;
    match query.format.as_deref() {
        None | Some("json") => Ok(Json(report).into_response()),
        Some("csv") => Ok((
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            report.csv(),
        )
            .into_response()),
        Some(other) => Err(ApiError::bad_request(format!(
            "format {other:?}: use json or csv"
        ))),
    }
}

/// `GET /api/v1/costs/chart.svg` parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ChartQuery {
    /// The month, `YYYY-MM` (UTC).
    pub month: String,
    /// Only this project (required unless a system administrator asks).
    pub project: Option<String>,
    /// The currency to draw (needed when the month has costs in more than one).
    pub currency: Option<String>,
}

/// A chart of the month's daily cost per project: an SVG of stacked bars in one
/// currency, static (no script), for the web console or a wiki page.
#[utoipa::path(get, operation_id = "costs_chart", path = "/api/v1/costs/chart.svg", tag = "costs", params(ChartQuery),
    responses((status = 200, content_type = "image/svg+xml", body = String), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn cost_chart(
    State(state): State<ApiState>,
    caller: ApiCaller,
    ApiQuery(query): ApiQuery<ChartQuery>,
) -> ApiResult<Response> {
    may_read_costs(&state, &caller, query.project.as_deref())?;
    let svg = state
        .scheduling
        .cost_chart(&query.month, query.project, query.currency)
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml; charset=utf-8"),
            // Drawn by berth, but an SVG is a document: no script, nothing fetched.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        svg,
    )
        .into_response())
}

/// A new version of a cluster's price sheet.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSheet {
    /// The sheet: `{"kind": "pool", "currency": "EUR", "default": {…}, "hosts": {…}}` for a
    /// physical pool (each host's `purchase`, `purchased` date, `amortise_months` and
    /// `running_monthly`), or `{"kind": "flavors", "currency": "USD", "flavors": {"m1.small":
    /// {"per_hour": "0.02", "stopped_per_hour": "0.001"}}}`. Amounts are decimal strings.
    #[schema(value_type = Object)]
    pub sheet: serde_json::Value,
    /// When it takes effect, RFC 3339 (now if not given; never in the past).
    pub effective_from: Option<String>,
}

/// Sets a version of a cluster's price sheet (system administrators): what its machines
/// cost where no provider prices them, from its effective time on.
#[utoipa::path(put, operation_id = "price_sheet_set", path = "/api/v1/clusters/{name}/price-sheet", tag = "costs", params(("name" = String, Path)), request_body = NewSheet,
    responses((status = 201, body = SheetVersion), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 415, body = Problem)))]
pub async fn set_price_sheet(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
    ApiJson(new): ApiJson<NewSheet>,
) -> ApiResult<(StatusCode, Json<SheetVersion>)> {
    caller.require_admin()?;
    let sheet: Sheet = serde_json::from_value(new.sheet)
        .map_err(|e| ApiError::bad_request(format!("invalid price sheet: {e}")))?;
    let from = new
        .effective_from
        .as_deref()
        .map(|t| rfc3339("effective_from", t))
        .transpose()?;
    let version = state
        .scheduling
        .set_price_sheet(&name, sheet, from, caller.principal.name())
        .await?;
    caller
        .audit(
            &state,
            "cluster.price-sheet",
            &name,
            Some(format!("effective from {}", version.effective_from)),
        )
        .await;
    Ok((StatusCode::CREATED, Json(version)))
}

/// A cluster's price sheet versions, oldest first (system administrators).
#[utoipa::path(get, operation_id = "price_sheet_get", path = "/api/v1/clusters/{name}/price-sheet", tag = "costs", params(("name" = String, Path)),
    responses((status = 200, body = [SheetVersion]), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn price_sheets(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<SheetVersion>>> {
    caller.require_admin()?;
    Ok(Json(state.scheduling.price_sheets(&name).await?))
}

/// What an accrual run did.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AccrualView {
    /// Whether this node ran it; false when another node holds the accrual lease.
    pub ran: bool,
    /// Machines whose cost was accrued.
    pub machines: usize,
    /// Ledger entries appended.
    pub entries: usize,
}

/// `POST /api/v1/costs/accrue` parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AccrueQuery {
    /// Up to when, RFC 3339, no later than now (default: the last whole hour).
    pub until: Option<String>,
}

/// Accrues every machine now rather than at the hour (system administrators): up to the
/// last whole hour, or to `until`. Accrual is idempotent: nothing is charged twice, and
/// the hourly round goes on from where this one stopped.
#[utoipa::path(post, operation_id = "costs_accrue", path = "/api/v1/costs/accrue", tag = "costs", params(AccrueQuery),
    responses((status = 200, body = AccrualView), (status = 400, body = Problem), (status = 403, body = Problem)))]
pub async fn accrue(
    State(state): State<ApiState>,
    caller: ApiCaller,
    ApiQuery(query): ApiQuery<AccrueQuery>,
) -> ApiResult<Json<AccrualView>> {
    caller.require_admin()?;
    let until = query
        .until
        .as_deref()
        .map(|t| rfc3339("until", t))
        .transpose()?;
    let round = state.scheduling.accrue_costs(until).await?;
    Ok(Json(AccrualView {
        ran: round.is_some(),
        machines: round.map(|r| r.machines).unwrap_or(0),
        entries: round.map(|r| r.entries).unwrap_or(0),
    }))
}

/// A new exchange rate.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewExchangeRate {
    /// One unit of the first currency is this many of the second: a decimal string.
    #[schema(example = "1.0834")]
    pub rate: String,
    /// From when, RFC 3339 (now if not given; an earlier time records a past rate).
    pub effective_from: Option<String>,
}

/// Every exchange rate administrators set (any signed-in user).
#[utoipa::path(get, operation_id = "exchange_rates_list", path = "/api/v1/costs/exchange-rates", tag = "costs",
    responses((status = 200, body = [ExchangeRate]), (status = 401, body = Problem)))]
pub async fn exchange_rates(
    State(state): State<ApiState>,
    // Any signed-in caller: the extractor refuses the rest.
    _caller: ApiCaller,
) -> ApiResult<Json<Vec<ExchangeRate>>> {
    Ok(Json(state.scheduling.exchange_rates().await?))
}

/// Sets the rate from one currency to another (system administrators). Reports use it
/// only where asked to convert (`convert_to`), and say so; the ledger never does.
#[utoipa::path(put, operation_id = "exchange_rates_set", path = "/api/v1/costs/exchange-rates/{from}/{to}", tag = "costs",
    params(("from" = String, Path), ("to" = String, Path)), request_body = NewExchangeRate,
    responses((status = 200, body = ExchangeRate), (status = 400, body = Problem), (status = 403, body = Problem), (status = 415, body = Problem)))]
pub async fn set_exchange_rate(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path((from, to)): Path<(String, String)>,
    ApiJson(new): ApiJson<NewExchangeRate>,
) -> ApiResult<Json<ExchangeRate>> {
    caller.require_admin()?;
    let effective_from = new
        .effective_from
        .as_deref()
        .map(|t| rfc3339("effective_from", t))
        .transpose()?;
    let rate = state
        .scheduling
        .set_exchange_rate(
            &from,
            &to,
            &new.rate,
            effective_from,
            caller.principal.name(),
        )
        .await?;
    caller
        .audit(
            &state,
            "cost.exchange-rate",
            &format!("{}/{}", rate.from, rate.to),
            Some(format!("{} from {}", rate.rate, rate.effective_from)),
        )
        .await;
    Ok(Json(rate))
}
