//! The delivery log through the API, scoped to the token's account like every other route:
//! `GET /v1/webhooks/{id}/deliveries` (newest first, `status` filters by outcome or HTTP
//! status) and `GET /v1/events/{event_id}/deliveries` (the answer to "did you send it?").
//! Dead letters and redrive are in [`super::dead_letters`].

use axum::{
    extract::{RawQuery, State},
    Extension, Json,
};
use serde::Serialize;

use super::{
    auth::Account,
    error::{ApiError, ErrorBody},
    page::Page,
    path::{PathText, WebhookId},
    ApiState,
};
use crate::{
    delivery_log::LogOutcome,
    store::attempts::{AttemptFilter, AttemptRow},
};

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = DeliveryAttemptList)]
pub struct AttemptList {
    /// Always `list`.
    #[schema(value_type = String)]
    object: &'static str,
    data: Vec<AttemptRow>,
    has_more: bool,
    total_count: i64,
}

/// `status=`: an outcome name, or an HTTP status.
fn status_filter(query: &str) -> Result<(Option<String>, Option<i64>), ApiError> {
    let Some((_, value)) =
        url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "status")
    else {
        return Ok((None, None));
    };
    let value = value.trim();
    if let Ok(code) = value.parse::<i64>() {
        if (100..=599).contains(&code) {
            return Ok((None, Some(code)));
        }
    }
    if LogOutcome::ALL.contains(&value) {
        return Ok((Some(value.to_string()), None));
    }
    Err(ApiError::invalid(
        "status",
        format!(
            "must be an outcome ({}) or an HTTP status from 100 to 599",
            LogOutcome::ALL.join(", ")
        ),
    ))
}

async fn page_of(
    state: &ApiState,
    account: &str,
    filter: AttemptFilter,
    page: Page,
) -> Result<Json<AttemptList>, ApiError> {
    let (data, total) = state
        .store
        .list_attempts(account, &filter, page.offset, page.per_page)
        .await?;
    let shown = page.offset.saturating_add(data.len() as i64);
    Ok(Json(AttemptList {
        object: "list",
        has_more: shown < total,
        total_count: total,
        data,
    }))
}

/// The account's webhook exists (another account's answers 404, like a missing one).
async fn require_webhook(state: &ApiState, account: &str, id: uuid::Uuid) -> Result<(), ApiError> {
    state
        .store
        .get(account, id)
        .await?
        .map(|_| ())
        .ok_or(ApiError::WebhookNotFound)
}

#[utoipa::path(
    operation_id = "list_webhook_deliveries",
    get,
    path = "/v1/webhooks/{id}/deliveries",
    tag = "deliveries",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "The webhook's id"),
        super::schema::PageQuery,
        ("status" = Option<String>, Query, description = "Only attempts with this outcome \
          (delivered, failed, parked, dead_lettered, disabled) or HTTP status (100-599)"),
    ),
    responses(
        (status = 200, description = "The webhook's attempts, newest first", body = AttemptList),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No such webhook in the token's account (or not a UUID)", body = ErrorBody),
        (status = 422, description = "A bad page, per_page or status, named", body = ErrorBody),
        (status = 500, description = "Internal error (logged; the body says no more)", body = ErrorBody),
    )
)]
pub async fn for_webhook(
    State(state): State<ApiState>,
    Extension(Account(account)): Extension<Account>,
    WebhookId(id): WebhookId,
    RawQuery(query): RawQuery,
) -> Result<Json<AttemptList>, ApiError> {
    let query = query.unwrap_or_default();
    let page = Page::parse(&query)?;
    let (outcome, status) = status_filter(&query)?;
    require_webhook(&state, &account, id).await?;
    let filter = AttemptFilter::Webhook {
        webhook_id: id,
        outcome,
        status,
    };
    page_of(&state, &account, filter, page).await
}

#[utoipa::path(
    operation_id = "list_event_deliveries",
    get,
    path = "/v1/events/{event_id}/deliveries",
    tag = "deliveries",
    security(("bearer" = [])),
    params(
        ("event_id" = String, Path, description = "The event's id"),
        super::schema::PageQuery,
    ),
    responses(
        (status = 200, description = "Every attempt for this event across the account's \
          webhooks, newest first (empty when there were none)", body = AttemptList),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 422, description = "A bad page or per_page, named", body = ErrorBody),
        (status = 500, description = "Internal error (logged; the body says no more)", body = ErrorBody),
    )
)]
pub async fn for_event(
    State(state): State<ApiState>,
    Extension(Account(account)): Extension<Account>,
    PathText(event_id): PathText,
    RawQuery(query): RawQuery,
) -> Result<Json<AttemptList>, ApiError> {
    let page = Page::parse(query.as_deref().unwrap_or_default())?;
    // An id that does not decode names no event: no attempts.
    let event_id = event_id.unwrap_or_default();
    page_of(&state, &account, AttemptFilter::Event { event_id }, page).await
}
