//! The `{…}` segments routes take from their path, decoded here so that a segment that does not
//! decode (percent-encoded bytes that are not UTF-8) answers in the API's error format like any
//! other unknown name, never with axum's plain-text 400.

use axum::{
    extract::{FromRequestParts, Path},
    http::request::Parts,
};
use uuid::Uuid;

use super::{error::ApiError, ApiState};

/// The path's one `{…}` segment as text; `None` when it does not decode, so it names nothing.
pub struct PathText(pub Option<String>);

impl FromRequestParts<ApiState> for PathText {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let text = Path::<String>::from_request_parts(parts, state).await.ok();
        Ok(PathText(text.map(|Path(text)| text)))
    }
}

/// The `{id}` of a webhook's path. Anything that is not a UUID cannot name a webhook, so it
/// answers 404 like a missing one.
pub struct WebhookId(pub Uuid);

impl FromRequestParts<ApiState> for WebhookId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let PathText(text) = match PathText::from_request_parts(parts, state).await {
            Ok(text) => text,
            Err(never) => match never {},
        };
        text.and_then(|id| Uuid::parse_str(&id).ok())
            .map(WebhookId)
            .ok_or(ApiError::WebhookNotFound)
    }
}
