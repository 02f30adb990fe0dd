//! The account's signing keys for `private_key_jwt`: its public JWKS behind its API token
//! (`GET /v1/webhooks/oidc_keys`, with the public `jwks_uri` named in it), the same JWKS at that
//! public URL (`GET /jwks/{jwks_id}`, no auth, for identity providers that fetch a `jwks_uri`),
//! and rotation (`POST /v1/webhooks/oidc_keys/rotate`).
//!
//! Only public key members ever leave, and no private key is read to answer a JWKS: both JWKS
//! routes are served from [`crate::oidc::published`]'s cache, with an `ETag` (a hash of the
//! body) and `304 Not Modified` for an `If-None-Match` that matches it. The public id is random
//! and says nothing of the account; an unknown one answers 404.

use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Extension, Json,
};
use bytes::Bytes;
use serde_json::{json, Value};

use super::schema::{JwksBody, PublicJwks, RotationBody};
use super::{
    auth::Account,
    error::{ApiError, ErrorBody},
    path::PathText,
    rate_limit::Rotation,
    ApiState,
};
use crate::{
    oidc::{
        published::{etag_of, if_none_match},
        PublishedJwks,
    },
    webhook::timestamp,
};

/// Identity providers may cache the public JWKS this long, or for `oidc.key_rotation_delay` if
/// that is shorter: rotation publishes a key that long before it signs, so a cached copy is
/// never missing the signer.
const PUBLIC_MAX_AGE_SECONDS: u64 = 300;

/// The account's JWKS plus `jwks_uri`.
fn body(state: &ApiState, published: &PublishedJwks) -> Value {
    let mut body = published.jwks.clone();
    if let Some(members) = body.as_object_mut() {
        members.insert(
            "jwks_uri".into(),
            json!(jwks_uri(state, &published.jwks_id)),
        );
    }
    body
}

/// `body` as JSON with its `ETag`, or 304 when the client's `If-None-Match` names that tag.
fn conditional(
    request: &HeaderMap,
    etag: &str,
    body: Bytes,
    extra: &[(header::HeaderName, String)],
) -> Response {
    let matched = request
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| if_none_match(value, etag));
    let mut response = match matched {
        true => StatusCode::NOT_MODIFIED.into_response(),
        false => {
            let mut response = body.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
    };
    let headers = response.headers_mut();
    for (name, value) in extra
        .iter()
        .chain([(header::ETAG, etag.to_string())].iter())
    {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name.clone(), value);
        }
    }
    response
}

/// Absolute when `api.public_base_url` is set, else a path.
pub fn jwks_uri(state: &ApiState, jwks_id: &str) -> String {
    format!(
        "{}/jwks/{jwks_id}",
        state.public_base_url.trim_end_matches('/')
    )
}

/// `GET /v1/webhooks/oidc_keys`: the account's public keys (made on first need).
#[utoipa::path(
    operation_id = "get_account_keys",
    get,
    path = "/v1/webhooks/oidc_keys",
    tag = "keys",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The account's public keys and their public URL; `ETag` names this answer", body = JwksBody),
        (status = 304, description = "Not modified: the `If-None-Match` names the current `ETag`"),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 409, description = "The keys come from oidc.signing_keys and cannot be rotated here", body = ErrorBody),
        (status = 503, description = "No database.encryption_key (or no store) to keep keys in", body = ErrorBody),
        (status = 500, description = "Internal error (logged; the body says no more)", body = ErrorBody),
    )
)]
pub async fn account_jwks(
    State(state): State<ApiState>,
    Extension(Account(account)): Extension<Account>,
    request: HeaderMap,
) -> Result<Response, ApiError> {
    let published = state.keys.published_for_account(&account).await?;
    let body = Bytes::from(body(&state, &published).to_string());
    // Private to the account's token: caches may keep it only for that client.
    let cache = (header::CACHE_CONTROL, "private, no-cache".to_string());
    Ok(conditional(&request, &etag_of(&body), body, &[cache]))
}

/// `POST /v1/webhooks/oidc_keys/rotate`: a new key, published now, signing after
/// `oidc.key_rotation_delay`.
#[utoipa::path(
    operation_id = "rotate_account_key",
    post,
    path = "/v1/webhooks/oidc_keys/rotate",
    tag = "keys",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A new key: published now, signing from signs_from", body = RotationBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 409, description = "The keys come from oidc.signing_keys and cannot be rotated here", body = ErrorBody),
        (status = 503, description = "No database.encryption_key (or no store) to keep keys in", body = ErrorBody),
        (status = 429, description = "Over the account's rotation or write rate limit (oidc.rotation_rate_limit, api.write_rate_limit); Retry-After says when to retry", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait (at least 1)"))),
        (status = 500, description = "Internal error (logged; the body says no more)", body = ErrorBody),
    )
)]
pub async fn rotate(
    State(state): State<ApiState>,
    Extension(Account(account)): Extension<Account>,
    _: Rotation,
) -> Result<Json<Value>, ApiError> {
    let rotation = state.keys.rotate(&account).await?;
    let published = state.keys.published_for_account(&account).await?;
    let mut answer = body(&state, &published);
    if let Some(members) = answer.as_object_mut() {
        members.insert(
            "rotation".into(),
            json!({
                "kid": rotation.kid,
                "signs_from": timestamp(rotation.signs_from),
                "previous_keys_published_until": timestamp(rotation.previous_retire_at),
            }),
        );
    }
    tracing::info!(account_id = %account, kid = %rotation.kid, "signing key rotation started");
    Ok(Json(answer))
}

/// `GET /jwks/{jwks_id}`: the same public keys, without auth.
#[utoipa::path(
    operation_id = "get_public_jwks",
    get,
    path = "/jwks/{jwks_id}",
    tag = "keys",
    params(("jwks_id" = String, Path, description = "The key set's public id (from jwks_uri)")),
    responses(
        (status = 200, description = "The account's public keys; `ETag` names this answer", body = PublicJwks),
        (status = 304, description = "Not modified: the `If-None-Match` names the current `ETag`"),
        (status = 404, description = "No such key set", body = ErrorBody),
        (status = 409, description = "The keys come from oidc.signing_keys and cannot be rotated here", body = ErrorBody),
        (status = 503, description = "No database.encryption_key (or no store) to keep keys in", body = ErrorBody),
        (status = 500, description = "Internal error (logged; the body says no more)", body = ErrorBody),
    )
)]
pub async fn public_jwks(
    State(state): State<ApiState>,
    PathText(jwks_id): PathText,
    request: HeaderMap,
) -> Result<Response, ApiError> {
    let jwks_id = jwks_id.ok_or(ApiError::KeySetNotFound)?;
    // Ids are 22 base64url characters; anything else cannot name a set.
    let well_formed = jwks_id.len() <= 64
        && jwks_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !well_formed {
        return Err(ApiError::KeySetNotFound);
    }
    let published = state
        .keys
        .published_by_jwks_id(&jwks_id)
        .await?
        .ok_or(ApiError::KeySetNotFound)?;
    let max_age = state
        .keys
        .rotation_delay()
        .as_secs()
        .min(PUBLIC_MAX_AGE_SECONDS);
    let cache = (header::CACHE_CONTROL, format!("public, max-age={max_age}"));
    Ok(conditional(
        &request,
        &published.etag,
        published.body.clone(),
        &[cache],
    ))
}
