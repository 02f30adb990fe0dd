//! A webhook's dead letters and their redrive, scoped to the token's account like every route:
//! `GET /v1/webhooks/{id}/dead_letters` (newest first), `POST /v1/webhooks/{id}/redrive` (202,
//! a job; see [`crate::redrive`]) and `GET /v1/webhooks/{id}/redrive/{job_id}` (its progress).
//! A webhook whose row cannot be decoded still answers here (only its existence is read), so its
//! `webhook_unreadable` letters can be seen and, once it reads again, redriven.

use axum::{
    extract::{Path, RawQuery, State},
    http::StatusCode,
    Extension, Json,
};
use serde::Serialize;
use uuid::Uuid;

use super::{
    auth::Account,
    error::{ApiError, ErrorBody},
    path::WebhookId,
    rate_limit::Write,
    webhooks::Page,
    ApiState,
};
use crate::store::{dead_letters::DeadLetterRow, redrive_jobs::RedriveJobRow};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeadLetterList {
    /// Always `list`.
    #[schema(value_type = String)]
    object: &'static str,
    data: Vec<DeadLetterRow>,
    has_more: bool,
    total_count: i64,
}

/// The account has this webhook (another account's answers 404, like a missing one).
async fn require_webhook(state: &ApiState, account: &str, id: Uuid) -> Result<(), ApiError> {
    match state.registry.store().webhook_exists(account, id).await? {
        true => Ok(()),
        false => Err(ApiError::WebhookNotFound),
    }
}

#[utoipa::path(
    operation_id = "list_webhook_dead_letters",
    get,
    path = "/v1/webhooks/{id}/dead_letters",
    tag = "deliveries",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "The webhook's id"),
        super::openapi::PageQuery,
    ),
    responses(
        (status = 200, description = "The webhook's dead letters, newest first (redriven ones \
          too, with redriven_at)", body = DeadLetterList),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No such webhook in the token's account (or not a UUID)", body = ErrorBody),
        (status = 422, description = "A bad page or per_page, named", body = ErrorBody),
        (status = 500, description = "Internal error (logged; the body says no more)", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<ApiState>,
    Extension(Account(account)): Extension<Account>,
    WebhookId(id): WebhookId,
    RawQuery(query): RawQuery,
) -> Result<Json<DeadLetterList>, ApiError> {
    let page = Page::parse(query.as_deref().unwrap_or_default())?;
    require_webhook(&state, &account, id).await?;
    let (data, total) = state
        .registry
        .store()
        .list_dead_letters(&account, id, page.offset, page.per_page)
        .await?;
    let shown = page.offset.saturating_add(data.len() as i64);
    Ok(Json(DeadLetterList {
        object: "list",
        has_more: shown < total,
        total_count: total,
        data,
    }))
}

#[utoipa::path(
    operation_id = "redrive_webhook",
    post,
    path = "/v1/webhooks/{id}/redrive",
    tag = "deliveries",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The webhook's id")),
    responses(
        (status = 202, description = "A redrive job over the webhook's dead letters not yet \
          redriven (or the one already running for it); follow it at \
          /v1/webhooks/{id}/redrive/{job_id}", body = RedriveJobRow),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No such webhook in the token's account (or not a UUID)", body = ErrorBody),
        (status = 429, description = "Over the account's write rate limit (api.write_rate_limit); Retry-After says when to retry", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait (at least 1)"))),
        (status = 500, description = "Internal error (logged; the body says no more)", body = ErrorBody),
    )
)]
pub async fn redrive(
    State(state): State<ApiState>,
    Extension(Account(account)): Extension<Account>,
    _: Write,
    WebhookId(id): WebhookId,
) -> Result<(StatusCode, Json<RedriveJobRow>), ApiError> {
    require_webhook(&state, &account, id).await?;
    let store = state.registry.store();
    let job = crate::redrive::start(store, &state.config, &state.background, &account, id).await?;
    tracing::info!(webhook_id = %id, account_id = %account, job_id = %job.id, total = job.total,
        "redrive started");
    Ok((StatusCode::ACCEPTED, Json(job)))
}

#[utoipa::path(
    operation_id = "get_redrive_job",
    get,
    path = "/v1/webhooks/{id}/redrive/{job_id}",
    tag = "deliveries",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "The webhook's id"),
        ("job_id" = Uuid, Path, description = "The redrive job's id"),
    ),
    responses(
        (status = 200, description = "The job's progress", body = RedriveJobRow),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No such job for this webhook of the token's account", body = ErrorBody),
        (status = 500, description = "Internal error (logged; the body says no more)", body = ErrorBody),
    )
)]
pub async fn job(
    State(state): State<ApiState>,
    Extension(Account(account)): Extension<Account>,
    Path((webhook, job)): Path<(String, String)>,
) -> Result<Json<RedriveJobRow>, ApiError> {
    // Anything that is not a UUID names nothing: 404, as a missing one.
    let webhook = Uuid::parse_str(&webhook).map_err(|_| ApiError::WebhookNotFound)?;
    let job = Uuid::parse_str(&job).map_err(|_| ApiError::RedriveJobNotFound)?;
    let mut job = state
        .registry
        .store()
        .get_redrive_job(&account, webhook, job)
        .await?
        .ok_or(ApiError::RedriveJobNotFound)?;
    if job.status == "running" && abandoned(&job.updated_at, chrono::Utc::now()) {
        // Its replica stopped: it will make no more progress (the next redrive replaces it).
        job.status = "failed".into();
    }
    Ok(Json(job))
}

/// A running job whose row was last refreshed at `updated_at` is abandoned by `now` when it
/// made no progress for [`crate::redrive::STALE_AFTER`].
fn abandoned(updated_at: &str, now: chrono::DateTime<chrono::Utc>) -> bool {
    let Ok(updated) = chrono::DateTime::parse_from_rfc3339(updated_at) else {
        return false;
    };
    let idle = now
        .signed_duration_since(updated)
        .to_std()
        .unwrap_or_default();
    idle > crate::redrive::STALE_AFTER
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_job_without_progress_for_two_minutes_is_abandoned() {
        let now = chrono::Utc::now();
        let at = |seconds| crate::webhook::timestamp(now - chrono::TimeDelta::seconds(seconds));
        assert!(!abandoned(&at(5), now));
        assert!(abandoned(&at(121), now));
        assert!(!abandoned("not a time", now));
    }
}
