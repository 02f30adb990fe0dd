//! The Webhooks API (axum): the seed's CRUD routes under `/v1/webhooks`, the JWKS, and the
//! operational routes (`/healthz`, `/readyz`, `/metrics`).
//!
//! # Layout
//!
//! - [`auth`]: bearer tokens (only their SHA-256 is configured) and the [`auth::Account`] they
//!   grant; every `/v1/webhooks` route but `oidc_keys` sits behind it.
//! - [`body`]: reading a JSON body with our own 415/413/400/422 answers.
//! - [`error`]: the one error type and its JSON shape.
//! - [`webhooks`]: the handlers.
//! - [`deliveries`]: the delivery log per webhook and per event.
//! - [`dead_letters`]: a webhook's dead letters, and their redrive as a job.
//! - `page`: `page` and `per_page` of the list routes.
//! - [`keys`]: the account's signing keys: its JWKS, the public `jwks_uri`, rotation.
//! - [`ops`]: the index at `/`, health, readiness, metrics, and the JSON 404/405 fallbacks.
//! - [`openapi`]: the OpenAPI document, generated from the handlers' annotations.
//!   [`schema`]: its documentation-only types, which the handlers name.
//! - [`rate_limit`]: each account's write and key-rotation rate limits (429 with `Retry-After`).
//! - [`server`]: the accept loop: connection caps (overall and per peer address), header-read
//!   and write timeouts, graceful shutdown.
//!
//! Two routers share one [`ApiState`]: [`router`] (roles `all` and `api`) serves everything;
//! [`ops_router`] (role `worker`) serves only `/`, `/healthz`, `/readyz` and `/metrics`, so a process
//! that only delivers never exposes the write API, even with tokens in its configuration. With
//! `api.metrics_listen` set, [`metrics_router`] serves `/metrics` there and the others do not.

pub mod auth;
pub mod body;
pub mod dead_letters;
pub mod deliveries;
pub mod error;
pub mod keys;
pub mod limited;
pub mod openapi;
pub mod ops;
mod page;
pub mod path;
pub mod rate_limit;
pub mod schema;
pub mod server;
pub mod webhooks;

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{DefaultBodyLimit, Request},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};
use tokio_util::sync::CancellationToken;

pub use auth::ApiTokens;
pub use error::ApiError;
pub use server::ConnectionLimits;

use crate::{
    config::Config, health::Readiness, net::AddressPolicy, oidc::AccountKeys, registry::Registry,
    store::Store, telemetry::Metrics, webhook::UrlRules,
};

/// What every handler may use: cheap handles, built once at start.
#[derive(Clone)]
pub struct ApiState {
    /// Where the handlers read and write webhooks, keys, the delivery log and redrive jobs.
    pub store: Store,
    /// Each write goes to the store and then here, so this process's deliveries see it at once.
    pub registry: Arc<Registry>,
    pub tokens: Arc<ApiTokens>,
    pub url_rules: Arc<UrlRules>,
    /// Each account's signing keys; shared with the worker's token client in role `all`, so a
    /// rotation here is seen by this process's deliveries at once.
    pub keys: AccountKeys,
    /// `api.public_base_url`, for absolute `jwks_uri`s.
    pub public_base_url: String,
    pub max_webhooks_per_account: i64,
    pub readiness: Readiness,
    pub metrics: Metrics,
    pub max_body_bytes: usize,
    /// Each account's write and rotation buckets; shared by every clone, so every request of an
    /// account in this process counts against the same limit.
    pub write_limits: Arc<rate_limit::WriteLimits>,
    /// For what reaches the broker (redrive).
    pub config: Arc<Config>,
    /// Work that outlives its request (redrive jobs): the process waits for it at shutdown,
    /// and it stops between batches once `cancel` fires.
    pub background: crate::redrive::Background,
}

/// Why the API's state could not be built from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ApiStateError {
    #[error(transparent)]
    Tokens(#[from] auth::BadTokenHash),
    #[error(transparent)]
    Keys(#[from] crate::oidc::KeyError),
}

impl ApiState {
    /// The state for `config`, with account keys kept in the registry's store.
    pub fn new(
        config: &Config,
        registry: Arc<Registry>,
        readiness: Readiness,
        metrics: Metrics,
    ) -> Result<Self, ApiStateError> {
        Ok(ApiState {
            tokens: Arc::new(ApiTokens::from_config(&config.api.tokens)?),
            url_rules: Arc::new(UrlRules {
                allow_http: config.delivery.allow_http,
                addresses: AddressPolicy::new(config.delivery.allow_networks.clone()),
            }),
            store: registry.store().clone(),
            keys: AccountKeys::new(Some(registry.store().clone()), &config.oidc)?,
            public_base_url: config.api.public_base_url.clone(),
            max_webhooks_per_account: i64::from(config.api.max_webhooks_per_account),
            readiness,
            metrics,
            max_body_bytes: config.api.max_body_bytes,
            write_limits: Arc::new(rate_limit::WriteLimits::from_config(config)),
            config: Arc::new(config.clone()),
            background: crate::redrive::Background::default(),
            registry,
        })
    }

    /// Runs redrive jobs on the process's tasks, stopped by its shutdown.
    pub fn with_background(mut self, background: crate::redrive::Background) -> Self {
        self.background = background;
        self
    }

    /// Shares `keys` (and its cache) with the rest of the process.
    pub fn with_keys(mut self, keys: AccountKeys) -> Self {
        self.keys = keys;
        self
    }
}

/// Every route: the Webhooks API, the JWKS and the operational routes.
pub fn router(state: ApiState) -> Router {
    api_router(state, true)
}

/// Every route, with or without `/metrics` (without when `api.metrics_listen` serves it).
pub fn api_router(state: ApiState, with_metrics: bool) -> Router {
    let authenticated = Router::new()
        .route("/v1/webhooks", post(webhooks::create).get(webhooks::list))
        .route(
            "/v1/webhooks/{id}",
            get(webhooks::get)
                .patch(webhooks::update)
                .put(webhooks::update)
                .delete(webhooks::delete),
        )
        // A static segment wins over `{id}` in axum's router, so `oidc_keys` is never an id.
        .route("/v1/webhooks/oidc_keys", get(keys::account_jwks))
        .route("/v1/webhooks/oidc_keys/rotate", post(keys::rotate))
        .route("/v1/webhooks/{id}/deliveries", get(deliveries::for_webhook))
        .route("/v1/webhooks/{id}/dead_letters", get(dead_letters::list))
        .route("/v1/webhooks/{id}/redrive", post(dead_letters::redrive))
        .route("/v1/webhooks/{id}/redrive/{job_id}", get(dead_letters::job))
        .route(
            "/v1/events/{event_id}/deliveries",
            get(deliveries::for_event),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    let public = Router::new()
        .route("/jwks/{jwks_id}", get(keys::public_jwks))
        .route("/openapi.json", get(openapi::openapi_json));
    operational(true, with_metrics)
        .merge(public)
        .merge(authenticated)
        .fallback(ops::no_route)
        .method_not_allowed_fallback(ops::no_method)
        // Bodies are read by `body::JsonBody`, which turns the limit into a JSON 413.
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .with_state(state)
}

/// Only `/`, `/healthz`, `/readyz` and `/metrics`: what a worker-only process serves.
pub fn ops_router(state: ApiState) -> Router {
    worker_router(state, true)
}

/// Only `/`, `/healthz`, `/readyz` and, `with_metrics`, `/metrics`.
pub fn worker_router(state: ApiState, with_metrics: bool) -> Router {
    operational(false, with_metrics)
        .fallback(ops::no_route)
        .method_not_allowed_fallback(ops::no_method)
        .with_state(state)
}

/// Only `/metrics` and `/healthz`: what `api.metrics_listen` serves, so an internal scraper
/// never reaches the API.
pub fn metrics_router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .fallback(ops::no_route)
        .method_not_allowed_fallback(ops::no_method)
        .with_state(state)
}

/// The operational routes, with an index at `/` linking to them (and to the API `with_api`).
fn operational(with_api: bool, with_metrics: bool) -> Router<ApiState> {
    let links = ops::IndexLinks::new(with_api, with_metrics);
    let router = Router::new()
        .route("/", get(move || ops::index(links)))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz));
    if with_metrics {
        router.route("/metrics", get(ops::metrics))
    } else {
        router
    }
}

/// Serves `router` on `listener` until `cancel` fires, then lets in-flight requests finish.
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: ConnectionLimits,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let router = with_time_limit(router, REQUEST_TIME_LIMIT);
    server::serve(listener, router, limits, cancel).await
}

/// A request that takes longer than this (a slow client, a stuck database) answers 408 instead
/// of holding its connection and task.
const REQUEST_TIME_LIMIT: Duration = Duration::from_secs(30);

/// Ends every request of `router` that takes longer than `limit` with a 408 in the API's error
/// format.
fn with_time_limit(router: Router, limit: Duration) -> Router {
    router.layer(middleware::from_fn(move |request: Request, next: Next| {
        within(limit, request, next)
    }))
}

async fn within(limit: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout(limit).into_response(),
    }
}

/// Serves the full API ([`router`]) on `listener` until `cancel` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    limits: ConnectionLimits,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    serve_router(listener, router(state), limits, cancel).await
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_request_over_the_time_limit_answers_408_in_the_error_format() {
        let slow = Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        );
        let router = with_time_limit(slow, Duration::from_millis(50));
        let request = Request::get("/slow").body(Body::empty()).unwrap();
        let response = router.oneshot(request).await.unwrap();
        assert_eq!(response.status(), axum::http::StatusCode::REQUEST_TIMEOUT);
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let message = json["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("the request took longer than 50ms"),
            "{json}"
        );
    }
}
