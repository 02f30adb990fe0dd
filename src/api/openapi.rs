//! The OpenAPI 3.1 document of the API, generated from the `#[utoipa::path]` annotations next to
//! each handler, and served at `GET /openapi.json` (no auth) by roles `all` and `api`.
//!
//! A copy is committed at `docs/openapi.json` (`webhook-worker openapi > docs/openapi.json`
//! writes it); a test fails when the served document differs from it, so neither can drift.
//! The handlers' own types ([`crate::webhook::WebhookView`], [`ErrorBody`], ...) are the
//! schemas; the few bodies built as JSON values have documentation-only types here.

use std::sync::LazyLock;

use axum::{http::header, response::IntoResponse};
use serde::Serialize;
use utoipa::{
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    IntoParams, Modify, OpenApi, ToSchema,
};

use super::{dead_letters, deliveries, error::ErrorBody, keys, ops, webhooks};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "webhook-worker API",
        description = "Webhook registrations, their delivery log, the accounts' signing keys, \
                       and the operational routes. Every error answers \
                       `{\"errors\":[{\"message\":\"...\",\"field\":\"...\"}]}`."
    ),
    paths(
        webhooks::create,
        webhooks::list,
        webhooks::get,
        webhooks::update,
        webhooks::delete,
        keys::account_jwks,
        keys::rotate,
        keys::public_jwks,
        deliveries::for_webhook,
        deliveries::for_event,
        dead_letters::list,
        dead_letters::redrive,
        dead_letters::job,
        ops::index,
        ops::healthz,
        ops::readyz,
        ops::metrics,
        openapi_json,
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth, &DistinctPut),
    tags(
        (name = "webhooks", description = "Webhook registrations of the token's account"),
        (name = "keys", description = "The account's signing keys for private_key_jwt"),
        (name = "deliveries", description = "The delivery log, dead letters and redrive"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
    )
)]
pub struct ApiDoc;

/// The `bearer` scheme every `/v1` route names in its `security`.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token made by `webhook-worker token`; it sees only its \
                         account's webhooks.",
                    ))
                    .build(),
            ),
        );
    }
}

/// PATCH and PUT share one handler (and so one annotation); OpenAPI wants each operation's id
/// unique, so PUT gets its own.
struct DistinctPut;

impl Modify for DistinctPut {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(item) = openapi.paths.paths.get_mut("/v1/webhooks/{id}") {
            if let Some(put) = item.put.as_mut() {
                put.operation_id = Some("replace_webhook".into());
            }
        }
    }
}

/// The document as served and committed: pretty JSON with a final newline.
pub fn document() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|error| format!("{{\"error\":\"{error}\"}}"));
    text.push('\n');
    text
}

static DOCUMENT: LazyLock<String> = LazyLock::new(document);

/// `GET /openapi.json`: this document.
#[utoipa::path(
    operation_id = "openapi",
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "This OpenAPI document", content_type = "application/json", body = Object))
)]
pub async fn openapi_json() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
}

/// `page` and `per_page`, as every list route reads them.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// The page, from 1.
    #[param(minimum = 1)]
    pub page: Option<i64>,
    /// Entries per page, 1 to 100 (default 10).
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<i64>,
}

/// An account's public JWKS (documentation only: the handlers build it as JSON).
#[derive(Debug, Serialize, ToSchema)]
pub struct JwksBody {
    /// Public JWKs (RFC 7517): `kty`, `kid`, `use`, `alg`, `n`, `e`.
    #[schema(value_type = Vec<Object>)]
    pub keys: Vec<serde_json::Value>,
    /// Where identity providers fetch these keys without auth (`GET /jwks/{jwks_id}`).
    pub jwks_uri: String,
}

/// What a rotation started (documentation only).
#[derive(Debug, Serialize, ToSchema)]
pub struct RotationBody {
    #[schema(value_type = Vec<Object>)]
    pub keys: Vec<serde_json::Value>,
    pub jwks_uri: String,
    pub rotation: Rotation,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Rotation {
    /// The new key's id.
    pub kid: String,
    /// When the new key starts signing (`oidc.key_rotation_delay` from now).
    pub signs_from: String,
    /// Until when the keys it replaces stay published.
    pub previous_keys_published_until: String,
}

/// The public JWKS (documentation only).
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicJwks {
    #[schema(value_type = Vec<Object>)]
    pub keys: Vec<serde_json::Value>,
}

/// `/healthz` (documentation only).
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

/// `/readyz` (documentation only).
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: String,
    pub checks: ReadinessChecks,
    /// Seconds since the webhook registry was last loaded from the database.
    pub registry_age_seconds: u64,
    /// Webhook rows that cannot be decoded (secret or settings); their events are
    /// dead-lettered as `webhook_unreadable` (does not make the process not ready).
    pub registry_rows_unreadable: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadinessChecks {
    /// `ok` or `not_ready`.
    pub database: String,
    /// `ok`, `not_ready`, `blocked` (the broker blocked publishing), or `not_used` (role `api`).
    pub broker: String,
    /// `ok` or `not_ready` (stale).
    pub registry: String,
}
