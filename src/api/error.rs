//! The API's one error type and how each variant answers: a status code and the JSON body
//! `{"errors":[{"message":"...","field":"..."}]}`.
//!
//! Client errors say what to fix and name the field when one is at fault. Internal errors log
//! their whole cause chain and answer a generic 500: the body never carries a database message,
//! a stack of causes, or anything a secret could hide in.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;

use crate::{store::StoreError, webhook::FieldError};

/// One entry of the `errors` array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ErrorEntry {
    /// What is wrong, and how to fix it.
    pub message: String,
    /// The request field at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ErrorEntry {
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            field: Some(field.into()),
        }
    }

    pub fn general(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            field: None,
        }
    }
}

impl From<FieldError> for ErrorEntry {
    fn from(error: FieldError) -> Self {
        ErrorEntry::field(error.field, error.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No usable bearer token. The message says which way the header is wrong, never why a
    /// token did not match.
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    /// A missing webhook, another account's webhook, and an id that is not a UUID all answer
    /// the same, so ids of other accounts cannot be probed.
    #[error("no such webhook")]
    WebhookNotFound,
    #[error("no such route")]
    RouteNotFound,
    /// A redrive job id that is not one of this webhook's (of the token's account).
    #[error("no such redrive job")]
    RedriveJobNotFound,
    /// An unknown public JWKS id: the same answer whatever the id, so none can be probed.
    #[error("no such key set")]
    KeySetNotFound,
    /// The request cannot be carried out in the resource's current state.
    #[error("{0}")]
    Conflict(String),
    /// The server is not configured for the request (the message names the setting).
    #[error("{0}")]
    Unavailable(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The request took longer than the API allows (a slow client, a stuck database).
    #[error("the request took longer than {0:?}; try again")]
    Timeout(std::time::Duration),
    #[error("the body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("the body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the body could not be read")]
    UnreadableBody,
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    /// Well-formed input that breaks a rule; every broken rule is listed.
    #[error("invalid request")]
    Unprocessable(Vec<ErrorEntry>),
    /// Over the account's write (or rotation) rate limit; answers 429 with `Retry-After`.
    #[error("{0}")]
    RateLimited(super::limited::Limited),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Unprocessable(vec![ErrorEntry::field(field, message)])
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::WebhookNotFound
            | ApiError::RouteNotFound
            | ApiError::KeySetNotFound
            | ApiError::RedriveJobNotFound => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnreadableBody | ApiError::MalformedJson(_) => StatusCode::BAD_REQUEST,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn entries(&self) -> Vec<ErrorEntry> {
        match self {
            ApiError::Unprocessable(entries) => entries.clone(),
            ApiError::Unauthorized(why) => vec![ErrorEntry::general(format!(
                "{why}; send Authorization: Bearer <token>"
            ))],
            ApiError::Internal(_) => vec![ErrorEntry::general(
                "internal error; the cause was logged, please retry later",
            )],
            other => vec![ErrorEntry::general(other.to_string())],
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            // The handlers check this before writing; this arm covers a key removed in between.
            StoreError::NoKeyForSecret => ApiError::Unprocessable(vec![ErrorEntry::general(
                "cannot store secrets: database.encryption_key is not configured",
            )]),
            other => ApiError::Internal(Box::new(other)),
        }
    }
}

impl From<crate::oidc::KeysError> for ApiError {
    fn from(error: crate::oidc::KeysError) -> Self {
        use crate::oidc::KeysError;
        match error {
            KeysError::NoEncryptionKey | KeysError::NoStore => {
                ApiError::Unavailable(error.to_string())
            }
            KeysError::FileManaged => ApiError::Conflict(error.to_string()),
            other => ApiError::Internal(Box::new(other)),
        }
    }
}

/// `error: cause: cause`, for the log line of an internal error.
fn cause_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Every error's body.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub errors: Vec<ErrorEntry>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(error = %cause_chain(cause.as_ref()), "API request failed");
        }
        let status = self.status();
        let retry_after = match &self {
            ApiError::RateLimited(limited) => Some(limited.retry_after_seconds()),
            _ => None,
        };
        let mut response = (
            status,
            Json(ErrorBody {
                errors: self.entries(),
            }),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_internal_error_answers_500_without_its_cause() {
        let error = ApiError::Internal(Box::new(std::io::Error::other("password=hunter2")));
        assert!(error
            .entries()
            .iter()
            .all(|e| !e.message.contains("hunter2")));
        assert_eq!(
            error.into_response().status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn a_rate_limited_write_answers_429_with_retry_after_in_whole_seconds() {
        let error = ApiError::RateLimited(crate::api::limited::Limited {
            key: "api.write_rate_limit",
            retry_after: std::time::Duration::from_millis(2500),
        });
        assert!(
            error.to_string().contains("api.write_rate_limit"),
            "{error}"
        );
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
    }

    #[test]
    fn the_cause_chain_joins_every_source() {
        let error = StoreError::Database(sqlx::Error::PoolTimedOut);
        assert!(cause_chain(&error).starts_with("database error: "));
    }
}
