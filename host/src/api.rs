//! The admin API (`/api/v1/…`, JSON): users, projects, members, robot accounts,
//! repositories and the audit log, with its OpenAPI document generated from the handlers
//! (`/api/v1/openapi.json`), so the document cannot drift from the code.
//!
//! Callers authenticate with Basic credentials (a user or a robot). Registry bearer
//! tokens are refused here: they are scoped capabilities for `/v2`, not a login.

pub mod audit;
pub mod budgets;
pub mod caller;
pub mod costs;
pub mod extract;
pub mod machines;
pub mod members;
pub mod metrics;
pub mod plugins;
pub mod problem;
pub mod projects;
pub mod replication;
pub mod repositories;
pub mod robots;
pub mod scheduling;
pub mod users;

use std::sync::Arc;

use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::AccessControl;
use crate::plugins::PluginHost;
use crate::registry::Registry;

/// What API handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// Access control.
    pub auth: Arc<AccessControl>,
    /// The registry (repositories, tags, manifests).
    pub registry: Arc<Registry>,
    /// Plugins.
    pub plugins: Arc<PluginHost>,
    /// Replication.
    pub replication: Arc<crate::replication::Replication>,
    /// Resource scheduling.
    pub scheduling: Arc<crate::scheduling::Scheduling>,
}

/// Most entries one page returns.
pub const MAX_PAGE_SIZE: usize = 500;

#[derive(OpenApi)]
#[openapi(
    info(title = "berth admin API", description = "Users, projects, members, robot accounts, repositories, the audit log, plugins, replication, clusters, quotas, machines and costs."),
    components(schemas(problem::Problem)),
    tags(
        (name = "users"), (name = "projects"), (name = "members"), (name = "robots"),
        (name = "repositories"), (name = "audit"), (name = "plugins"), (name = "replication"), (name = "clusters"), (name = "machines"), (name = "costs")
    )
)]
struct ApiDoc;

/// The API routes and their OpenAPI document.
pub fn router(state: ApiState) -> Router {
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(users::list, users::create))
        .routes(routes!(users::current))
        .routes(routes!(users::get, users::update, users::delete))
        .routes(routes!(users::change_password))
        .routes(routes!(projects::list, projects::create))
        .routes(routes!(projects::get, projects::update, projects::delete))
        .routes(routes!(members::list, members::add))
        .routes(routes!(members::set, members::remove))
        .routes(routes!(robots::list, robots::create))
        .routes(routes!(robots::get, robots::update, robots::delete))
        .routes(routes!(repositories::list))
        .routes(routes!(repositories::tags))
        .routes(routes!(repositories::delete_tag))
        .routes(routes!(repositories::tag_history))
        .routes(routes!(repositories::delete_manifest))
        .routes(routes!(audit::list))
        .routes(routes!(plugins::list, plugins::load))
        .routes(routes!(plugins::get, plugins::update, plugins::remove))
        .routes(routes!(plugins::invoke))
        .routes(routes!(plugins::worlds))
        .routes(routes!(plugins::secrets))
        .routes(routes!(plugins::set_secret, plugins::remove_secret))
        .routes(routes!(
            replication::list_endpoints,
            replication::create_endpoint
        ))
        .routes(routes!(
            replication::get_endpoint,
            replication::update_endpoint,
            replication::delete_endpoint
        ))
        .routes(routes!(replication::check_endpoint))
        .routes(routes!(
            replication::list_policies,
            replication::create_policy
        ))
        .routes(routes!(
            replication::get_policy,
            replication::update_policy,
            replication::delete_policy
        ))
        .routes(routes!(replication::run_policy))
        .routes(routes!(replication::list_jobs))
        .routes(routes!(replication::get_job))
        .routes(routes!(replication::cancel_job))
        .routes(routes!(replication::retry_job))
        .routes(routes!(replication::start_transfer))
        .routes(routes!(replication::get_transfer))
        .routes(routes!(replication::exchange_metadata))
        .routes(routes!(replication::status))
        .routes(routes!(
            scheduling::list_clusters,
            scheduling::create_cluster
        ))
        .routes(routes!(
            scheduling::get_cluster,
            scheduling::update_cluster,
            scheduling::delete_cluster
        ))
        .routes(routes!(
            scheduling::grant_cluster,
            scheduling::revoke_cluster
        ))
        .routes(routes!(scheduling::list_hosts, scheduling::import_hosts))
        .routes(routes!(scheduling::list_orphans))
        .routes(routes!(scheduling::reconcile))
        .routes(routes!(scheduling::adopt_orphan))
        .routes(routes!(scheduling::delete_orphan))
        .routes(routes!(scheduling::get_quota, scheduling::set_quota))
        .routes(routes!(costs::cost_report))
        .routes(routes!(costs::cost_chart))
        .routes(routes!(costs::exchange_rates))
        .routes(routes!(costs::set_exchange_rate))
        .routes(routes!(budgets::list_budgets))
        .routes(routes!(budgets::set_budget, budgets::remove_budget))
        .routes(routes!(costs::accrue))
        .routes(routes!(costs::price_sheets, costs::set_price_sheet))
        .routes(routes!(machines::list_machines, machines::create_machine))
        .routes(routes!(machines::register_machine))
        .routes(routes!(machines::plan_machines))
        .routes(routes!(machines::place_machines))
        .routes(routes!(machines::get_machine))
        .routes(routes!(machines::machine_history))
        .routes(routes!(machines::offline_machine))
        .routes(routes!(machines::online_machine))
        .routes(routes!(machines::stop_machine))
        .routes(routes!(machines::start_machine))
        .routes(routes!(machines::retire_machine))
        .routes(routes!(metrics::metrics))
        .with_state(state)
        .split_for_parts();
    let document = openapi
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    router.route(
        "/api/v1/openapi.json",
        axum::routing::get(move || async move {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                document,
            )
        }),
    )
}

/// `page` and `page_size` query parameters.
#[derive(Debug, Clone, Copy, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// 1-based page number (default 1).
    pub page: Option<usize>,
    /// Entries per page (default 50, at most 500).
    pub page_size: Option<usize>,
}

impl Page {
    /// The slice of `items` this page covers, and headers saying the total and the next page.
    pub fn apply<T>(self, items: Vec<T>, path: &str) -> (axum::http::HeaderMap, Vec<T>) {
        let size = self.page_size.unwrap_or(50).clamp(1, MAX_PAGE_SIZE);
        let page = self.page.unwrap_or(1).max(1);
        let total = items.len();
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("x-total-count", total.into());
        if page * size < total {
            let link = format!("<{path}?page={}&page_size={size}>; rel=\"next\"", page + 1);
            if let Ok(v) = link.parse() {
                headers.insert(axum::http::header::LINK, v);
            }
        }
        let items = items
            .into_iter()
            .skip((page - 1) * size)
            .take(size)
            .collect();
        (headers, items)
    }
}
