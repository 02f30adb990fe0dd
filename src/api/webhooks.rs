//! The `/v1/webhooks` handlers: create, list, get, update (PATCH and PUT), delete.
//!
//! Every read and write is scoped to the token's [`Account`]: another account's webhook is
//! indistinguishable from a missing one. Every successful write goes to the store first and then
//! to this process's registry, so deliveries here see it at once (other replicas within
//! `registry.refresh`). Responses are built from [`Webhook::view`], which has no stored secret;
//! the one secret ever shown is one the API generated, in the answer to the write that made it.

use axum::{
    extract::{RawQuery, State},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Extension, Json,
};
use chrono::{DurationRound, TimeDelta, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{
    auth::Account,
    body::JsonBody,
    error::{ApiError, ErrorBody, ErrorEntry},
    page::Page,
    path::WebhookId,
    rate_limit::Write,
    ApiState,
};
use crate::{
    secret::Secret,
    store::origin_of,
    webhook::{Draft, Rotation, Webhook, WebhookPatch, WebhookView},
};

/// Now, at the millisecond precision the store keeps, so the registry's copy equals the stored one.
fn now() -> chrono::DateTime<Utc> {
    let now = Utc::now();
    now.duration_trunc(TimeDelta::milliseconds(1))
        .unwrap_or(now)
}

/// Secrets are encrypted at rest; without a key the store cannot take them, which is the
/// operator's doing, so the answer names the setting. The same holds for the account's signing
/// key that `private_key_jwt` needs (unless `oidc.signing_keys` serve the account): refused
/// here rather than dead-lettered as `token: no_signing_key` at every delivery.
fn secrets_storable(state: &ApiState, account: &str, patch: &WebhookPatch) -> Vec<ErrorEntry> {
    if state.store.can_store_secrets() {
        return Vec::new();
    }
    let message = "cannot be stored: database.encryption_key is not configured on this server";
    let mut errors = Vec::new();
    let wants_jwt = matches!(&patch.oidc_auth_method, Some(Some(m)) if m == "private_key_jwt");
    if wants_jwt && !state.keys.has_file_keys(account) {
        errors.push(ErrorEntry::field(
            "oidc_auth_method",
            "private_key_jwt needs the account's signing key, which cannot be stored: \
             database.encryption_key is not configured on this server",
        ));
    }
    if matches!(patch.secret, Some(Some(_))) {
        errors.push(ErrorEntry::field("secret", message));
    }
    if matches!(patch.oidc_client_secret, Some(Some(_))) {
        errors.push(ErrorEntry::field("oidc_client_secret", message));
    }
    errors
}

/// The signing side of a write, before validation: a `standard_webhooks` webhook left without
/// a secret gets a new one (returned, for this answer alone; `cleared`: this request sent
/// `secret: null`, which is refused instead), and an update that replaces the secret keeps the
/// replaced one signing for `signature.rotation_overlap`.
fn prepare_signing(
    state: &ApiState,
    draft: &mut Draft,
    cleared: bool,
    existing: Option<&Webhook>,
    now: chrono::DateTime<Utc>,
    problems: &mut Vec<ErrorEntry>,
) -> Option<Secret> {
    let generated = draft.generate_missing_secret(cleared);
    if generated.is_some() && !state.store.can_store_secrets() {
        problems.push(ErrorEntry::field(
            "secret",
            "cannot be generated for signature_format \"standard_webhooks\": it cannot be \
             stored, database.encryption_key is not configured on this server",
        ));
    }
    if let Some(existing) = existing {
        let overlap = state.config.signature.rotation_overlap.0;
        draft.rotate_from(existing, Rotation { now, overlap });
    }
    generated
}

/// The answer's view, with the secret this write generated, if any: the one time a secret is
/// shown.
fn view_with(webhook: &Webhook, generated: Option<Secret>) -> WebhookView {
    let mut view = webhook.view();
    view.secret = generated.map(|secret| secret.expose().to_string());
    view
}

/// Validates the merged draft; every broken rule (and every unstorable secret) is listed.
fn validated(
    state: &ApiState,
    draft: Draft,
    unstorable: Vec<ErrorEntry>,
    id: Uuid,
    account: &str,
    created_at: chrono::DateTime<Utc>,
    now: chrono::DateTime<Utc>,
) -> Result<Webhook, ApiError> {
    let mut errors = unstorable;
    match draft.validate(&state.url_rules, id, account, created_at, now) {
        Ok(webhook) if errors.is_empty() => return Ok(webhook),
        Ok(_) => {}
        Err(broken) => errors.extend(broken.into_iter().map(ErrorEntry::from)),
    }
    Err(ApiError::Unprocessable(errors))
}

#[utoipa::path(
    operation_id = "create_webhook",
    post,
    path = "/v1/webhooks",
    tag = "webhooks",
    security(("bearer" = [])),
    request_body = WebhookPatch,
    responses(
        (status = 201, description = "Created; Location names it. With `secret` when this request made a `standard_webhooks` webhook without one: the generated secret, shown this once", body = WebhookView),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 413, description = "The body is over api.max_body_bytes", body = ErrorBody),
        (status = 415, description = "Content-Type is not JSON", body = ErrorBody),
        (status = 422, description = "Invalid fields, each named", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 429, description = "Over the account's write rate limit (api.write_rate_limit); Retry-After says when to retry", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait (at least 1)"))),
        (status = 500, description = "Internal error (logged; the body says no more)", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<ApiState>,
    Extension(Account(account)): Extension<Account>,
    _: Write,
    JsonBody(patch): JsonBody<WebhookPatch>,
) -> Result<Response, ApiError> {
    let mut unstorable = secrets_storable(&state, &account, &patch);
    let now = now();
    let id = Uuid::new_v4();
    let cleared = matches!(patch.secret, Some(None));
    let mut draft = Draft::default().apply(patch);
    let generated = prepare_signing(&state, &mut draft, cleared, None, now, &mut unstorable);
    let webhook = validated(&state, draft, unstorable, id, &account, now, now)?;
    let limit = state.max_webhooks_per_account;
    if !state.store.insert_limited(&webhook, limit).await? {
        return Err(ApiError::Unprocessable(vec![ErrorEntry::general(format!(
            "the account already has {limit} webhooks, the most it may have \
             (api.max_webhooks_per_account); delete one first"
        ))]));
    }
    let view = view_with(&webhook, generated);
    tracing::info!(webhook_id = %id, account_id = %account, "webhook created");
    state.registry.upsert(webhook);
    let mut response = (StatusCode::CREATED, Json(view)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/webhooks/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

#[utoipa::path(
    operation_id = "get_webhook",
    get,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The webhook's id")),
    responses(
        (status = 200, description = "The webhook", body = WebhookView),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No such webhook in the token's account (or not a UUID)", body = ErrorBody),
        (status = 500, description = "Internal error (logged; the body says no more)", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<ApiState>,
    Extension(Account(account)): Extension<Account>,
    WebhookId(id): WebhookId,
) -> Result<Json<WebhookView>, ApiError> {
    let webhook = state
        .store
        .get(&account, id)
        .await?
        .ok_or(ApiError::WebhookNotFound)?;
    Ok(Json(webhook.view()))
}

/// PATCH and PUT: the same partial update (the platform's clients use both).
#[utoipa::path(
    operation_id = "update_webhook",
    method(patch, put),
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The webhook's id")),
    request_body = WebhookPatch,
    responses(
        (status = 200, description = "The updated webhook. With `secret` when this request left a `standard_webhooks` webhook without one: the generated secret, shown this once", body = WebhookView),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 413, description = "The body is over api.max_body_bytes", body = ErrorBody),
        (status = 415, description = "Content-Type is not JSON", body = ErrorBody),
        (status = 422, description = "Invalid fields, each named", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No such webhook in the token's account (or not a UUID)", body = ErrorBody),
        (status = 429, description = "Over the account's write rate limit (api.write_rate_limit); Retry-After says when to retry", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait (at least 1)"))),
        (status = 500, description = "Internal error (logged; the body says no more)", body = ErrorBody),
    )
)]
pub async fn update(
    State(state): State<ApiState>,
    Extension(Account(account)): Extension<Account>,
    _: Write,
    WebhookId(id): WebhookId,
    JsonBody(patch): JsonBody<WebhookPatch>,
) -> Result<Json<WebhookView>, ApiError> {
    let store = &state.store;
    let existing = store
        .get(&account, id)
        .await?
        .ok_or(ApiError::WebhookNotFound)?;
    let mut problems = secrets_storable(&state, &account, &patch);
    let secret_sent = matches!(patch.oidc_client_secret, Some(Some(_)));
    let cleared = matches!(patch.secret, Some(None));
    let mut draft = Draft::of(&existing).apply(patch);
    if let Some(problem) = client_secret_rebinding(&existing, &draft, secret_sent) {
        problems.push(problem);
    }
    let now = now();
    let generated = prepare_signing(
        &state,
        &mut draft,
        cleared,
        Some(&existing),
        now,
        &mut problems,
    );
    let created_at = existing.created_at;
    let webhook = validated(&state, draft, problems, id, &account, created_at, now)?;
    // Deleted between the read and the write: the same answer as if it had never existed.
    if !store.update(&webhook).await? {
        return Err(ApiError::WebhookNotFound);
    }
    let view = view_with(&webhook, generated);
    tracing::info!(webhook_id = %id, account_id = %account, "webhook updated");
    state.registry.upsert(webhook);
    Ok(Json(view))
}

/// A stored OAuth client secret goes only to the token endpoint (origin) and client it was
/// given for, and the tokens it earns only to the receiver (origin of `url`), scope and
/// resource they were asked for: changing any of these without sending the secret again is
/// refused, so nobody who can edit a webhook can redirect its secret, or a token earned with
/// it, to a host of their choosing. A path-only change of either URL keeps the secret.
fn client_secret_rebinding(
    existing: &Webhook,
    draft: &Draft,
    secret_sent: bool,
) -> Option<ErrorEntry> {
    let existing = Draft::of(existing);
    // Kept from the stored webhook, not sent with this request (a cleared secret goes nowhere).
    let kept =
        !secret_sent && existing.oidc_client_secret.is_some() && draft.oidc_client_secret.is_some();
    if !kept {
        return None;
    }
    let origin = |url: Option<&str>| origin_of(url.unwrap_or_default());
    let moved = origin(existing.oidc_token_endpoint.as_deref())
        != origin(draft.oidc_token_endpoint.as_deref());
    let other_client = existing.oidc_client_id != draft.oidc_client_id;
    let other_receiver = origin(existing.url.as_deref()) != origin(draft.url.as_deref());
    let other_audience = existing.oidc_scope != draft.oidc_scope
        || existing.oidc_resource_uri != draft.oidc_resource_uri;
    (moved || other_client || other_receiver || other_audience).then(|| {
        ErrorEntry::field(
            "oidc_client_secret",
            "must be sent again when oidc_token_endpoint (its origin), oidc_client_id, the \
             origin of url, oidc_scope or oidc_resource_uri changes: a stored secret, and the \
             tokens it earns, only go where they were given for",
        )
    })
}

#[utoipa::path(
    operation_id = "delete_webhook",
    delete,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The webhook's id")),
    responses(
        (status = 200, description = "The deleted webhook", body = WebhookView),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No such webhook in the token's account (or not a UUID)", body = ErrorBody),
        (status = 429, description = "Over the account's write rate limit (api.write_rate_limit); Retry-After says when to retry", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait (at least 1)"))),
        (status = 500, description = "Internal error (logged; the body says no more)", body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<ApiState>,
    Extension(Account(account)): Extension<Account>,
    _: Write,
    WebhookId(id): WebhookId,
) -> Result<Json<WebhookView>, ApiError> {
    let webhook = state
        .store
        .delete(&account, id)
        .await?
        .ok_or(ApiError::WebhookNotFound)?;
    tracing::info!(webhook_id = %id, account_id = %account, "webhook deleted");
    state.registry.remove(id);
    Ok(Json(webhook.view()))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = WebhookList)]
pub struct ListBody {
    /// Always `list`.
    #[schema(value_type = String)]
    object: &'static str,
    data: Vec<WebhookView>,
    has_more: bool,
    total_count: i64,
}

#[utoipa::path(
    operation_id = "list_webhooks",
    get,
    path = "/v1/webhooks",
    tag = "webhooks",
    security(("bearer" = [])),
    params(super::schema::PageQuery),
    responses(
        (status = 200, description = "The account's webhooks, oldest first", body = ListBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 422, description = "A bad page or per_page, named", body = ErrorBody),
        (status = 500, description = "Internal error (logged; the body says no more)", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<ApiState>,
    Extension(Account(account)): Extension<Account>,
    RawQuery(query): RawQuery,
) -> Result<Json<ListBody>, ApiError> {
    let page = Page::parse(query.as_deref().unwrap_or_default())?;
    let (webhooks, total) = state
        .store
        .list(&account, page.offset, page.per_page)
        .await?;
    let shown = page.offset.saturating_add(webhooks.len() as i64);
    Ok(Json(ListBody {
        object: "list",
        has_more: shown < total,
        total_count: total,
        data: webhooks.iter().map(Webhook::view).collect(),
    }))
}
