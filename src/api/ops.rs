//! The unauthenticated operational routes: the index at `/` (links to what this listener
//! serves), liveness, readiness, metrics, and the JSON answers for unknown routes and methods.
//!
//! `/healthz` says the process serves HTTP. `/readyz` says it can do its job: the database
//! answers (within [`PING_TIMEOUT`], so a stuck pool cannot hang the probe), the webhook
//! registry is not stale and, for roles that consume, the broker connection is up and not
//! blocked.

use std::time::Duration;

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use super::schema::{Health, Readiness};
use super::{error::ApiError, ApiState};

pub const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /`: where a newcomer who opens the address in a browser finds the rest.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct Index {
    /// `webhook-worker`.
    pub name: &'static str,
    /// The running version.
    pub version: &'static str,
    pub links: IndexLinks,
}

/// The routes this listener serves; a link is absent when this listener does not serve it (a
/// worker-only process has no API; with `api.metrics_listen` set, `/metrics` is served there).
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct IndexLinks {
    /// The Webhooks API's base (needs `Authorization: Bearer <token>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhooks: Option<&'static str>,
    /// The OpenAPI document of the API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub openapi: Option<&'static str>,
    pub healthz: &'static str,
    pub readyz: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<&'static str>,
}

impl IndexLinks {
    /// The links of a listener that serves the API when `api`, and `/metrics` when `metrics`.
    pub fn new(api: bool, metrics: bool) -> Self {
        Self {
            webhooks: api.then_some("/v1/webhooks"),
            openapi: api.then_some("/openapi.json"),
            healthz: "/healthz",
            readyz: "/readyz",
            metrics: metrics.then_some("/metrics"),
        }
    }
}

#[utoipa::path(
    operation_id = "index",
    get,
    path = "/",
    tag = "operations",
    responses((status = 200, description = "Links to the routes this listener serves", body = Index))
)]
pub async fn index(links: IndexLinks) -> Json<Index> {
    Json(Index {
        name: env!("CARGO_PKG_NAME"),
        version: env!("CARGO_PKG_VERSION"),
        links,
    })
}

#[utoipa::path(
    operation_id = "healthz",
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process serves HTTP", body = Health))
)]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

#[utoipa::path(
    operation_id = "readyz",
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready: database, broker and registry are fine", body = Readiness),
        (status = 503, description = "Not ready; `checks` says what is not", body = Readiness),
    )
)]
pub async fn readyz(State(state): State<ApiState>) -> Response {
    let database = tokio::time::timeout(PING_TIMEOUT, state.store.ping())
        .await
        .unwrap_or(false);
    let broker = state.readiness.broker_ok();
    let registry = state.registry.is_fresh();
    let status = if database && broker && registry {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = |ok: bool| if ok { "ok" } else { "not_ready" };
    let body = json!({
        "status": if status == StatusCode::OK { "ready" } else { "not_ready" },
        "checks": {
            "database": word(database),
            "broker": match (state.readiness.needs_broker(), state.readiness.broker_blocked()) {
                (false, _) => "not_used",
                (true, true) => "blocked",
                (true, false) => word(broker),
            },
            "registry": word(registry),
        },
        "registry_age_seconds": state.registry.snapshot_age().as_secs(),
        // Not a reason to be unready (the other webhooks deliver), but an operator's to fix.
        "registry_rows_unreadable": state.registry.unreadable_count(),
    });
    (status, Json(body)).into_response()
}

#[utoipa::path(
    operation_id = "metrics",
    get,
    path = "/metrics",
    tag = "operations",
    responses((
        status = 200,
        description = "Prometheus metrics (OpenMetrics text); not served here when \
                       api.metrics_listen is set",
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8",
        body = String
    ))
)]
pub async fn metrics(State(state): State<ApiState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

pub async fn no_route() -> ApiError {
    ApiError::RouteNotFound
}

pub async fn no_method() -> ApiError {
    ApiError::MethodNotAllowed
}
