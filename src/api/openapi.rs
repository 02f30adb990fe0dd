//! The OpenAPI 3.1 document of the API, generated from the `#[utoipa::path]` annotations next to
//! each handler, and served at `GET /openapi.json` (no auth) by roles `all` and `api`.
//!
//! A copy is committed at `docs/openapi.json` (`webhook-worker openapi > docs/openapi.json`
//! writes it); a test fails when the served document differs from it, so neither can drift.
//! The handlers' own types ([`crate::webhook::WebhookView`], [`ErrorBody`], ...) are the
//! schemas; the few bodies built as JSON values have documentation-only types in [`super::schema`].
//! This module imports the handlers, never the reverse.

use std::sync::LazyLock;

use axum::{http::header, response::IntoResponse};
use utoipa::{
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi,
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
