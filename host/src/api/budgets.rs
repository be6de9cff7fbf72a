//! `/api/v1/projects/{name}/budgets`: a project's monthly budgets, per currency, and where
//! this month stands against them. Whoever may read the project's machines sees them;
//! system administrators set and remove them.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::ApiState;
use super::caller::ApiCaller;
use super::extract::ApiJson;
use super::problem::{ApiResult, Problem};
use crate::auth::Action;
use crate::scheduling::budgets::{BudgetStatus, NewBudget};
use crate::storage::tables::cost::Budget;

/// A project's budgets and this month's figures against each: spent so far (closed and
/// provisional), committed by its machines to the month's end, remaining, and the
/// thresholds crossed.
#[utoipa::path(get, operation_id = "budgets_list", path = "/api/v1/projects/{name}/budgets", tag = "costs", params(("name" = String, Path)),
    responses((status = 200, body = [BudgetStatus]), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn list_budgets(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<BudgetStatus>>> {
    caller.require(&state.auth, &name, Action::ReadMachines)?;
    Ok(Json(state.scheduling.budgets(&name).await?))
}

/// Sets a project's monthly budget in a currency (system administrators): warnings at
/// its thresholds (audited, and posted to the webhook as `budget.threshold`), and with
/// `enforce`, a create that would take the month past it is refused with the figures.
#[utoipa::path(put, operation_id = "budgets_set", path = "/api/v1/projects/{name}/budgets/{currency}", tag = "costs",
    params(("name" = String, Path), ("currency" = String, Path, description = "ISO 4217")), request_body = NewBudget,
    responses((status = 200, body = Budget), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 415, body = Problem)))]
pub async fn set_budget(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path((name, currency)): Path<(String, String)>,
    ApiJson(new): ApiJson<NewBudget>,
) -> ApiResult<Json<Budget>> {
    caller.require_admin()?;
    let budget = state
        .scheduling
        .set_budget(&name, &currency, new, caller.principal.name())
        .await?;
    caller
        .audit(
            &state,
            "budget.set",
            &name,
            Some(format!(
                "{} {} a month, warnings at {:?}%{}",
                budget.monthly,
                budget.currency,
                budget.thresholds,
                if budget.enforce { ", enforced" } else { "" }
            )),
        )
        .await;
    Ok(Json(budget))
}

/// Removes a project's budget in a currency (system administrators).
#[utoipa::path(delete, operation_id = "budgets_remove", path = "/api/v1/projects/{name}/budgets/{currency}", tag = "costs",
    params(("name" = String, Path), ("currency" = String, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn remove_budget(
    State(state): State<ApiState>,
    caller: ApiCaller,
    Path((name, currency)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    state.scheduling.remove_budget(&name, &currency).await?;
    caller
        .audit(&state, "budget.remove", &name, Some(currency))
        .await;
    Ok(StatusCode::NO_CONTENT)
}
