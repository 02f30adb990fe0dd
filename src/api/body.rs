//! Reading a request body into a typed value, with our own errors rather than axum's rejection
//! texts, in a fixed order so each kind of bad input gets one answer:
//!
//! 1. `Content-Type` is not JSON → 415;
//! 2. the body is over `api.max_body_bytes` (the router's `DefaultBodyLimit`) → 413;
//! 3. the bytes are not JSON → 400;
//! 4. the JSON is not an object → 422;
//! 5. a field has the wrong type or is unknown → 422 naming the field.
//!
//! Nothing a client sends can make this fail with a 500.

use axum::{
    body::Bytes,
    extract::{
        rejection::{BytesRejection, FailedToBufferBody},
        FromRequest, Request,
    },
    http::{header, HeaderMap},
};
use serde::de::DeserializeOwned;

use super::{error::ApiError, ApiState};

/// A JSON object body deserialized into `T`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<ApiState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &ApiState) -> Result<Self, Self::Rejection> {
        if !is_json(request.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection| match rejection {
                    BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
                        ApiError::PayloadTooLarge {
                            limit: state.max_body_bytes,
                        }
                    }
                    _ => ApiError::UnreadableBody,
                })?;
        parse(&bytes).map(JsonBody)
    }
}

/// `application/json`, with or without parameters (`; charset=utf-8`), or a `+json` type.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Steps 3 to 5 above.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            ApiError::MalformedJson("the body is empty".into())
        } else {
            ApiError::MalformedJson(e.to_string())
        }
    })?;
    if !value.is_object() {
        return Err(ApiError::Unprocessable(vec![
            super::error::ErrorEntry::general("the body must be a JSON object"),
        ]));
    }
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner().to_string();
        let (field, message) = match unknown_field(&inner) {
            // The path already ends at the unknown key; "." would mean serde did not say where.
            Some(name) if path == "." => (name.to_string(), "is not a known field".to_string()),
            Some(_) => (path, "is not a known field".to_string()),
            None => (path, describe(&inner)),
        };
        ApiError::invalid(field, message)
    })
}

/// The name in serde's "unknown field `name`, expected one of ..." message.
fn unknown_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("unknown field `")?
        .split_once('`')
        .map(|(name, _)| name)
}

/// serde's "invalid type: string \"x\", expected i64" as "must be an integer, not a string".
/// The value itself is never repeated: it could be a secret sent in the wrong field.
fn describe(message: &str) -> String {
    let Some((found, expected)) = message
        .strip_prefix("invalid type: ")
        .and_then(|rest| rest.split_once(", expected "))
    else {
        // Other serde messages ("invalid value", "invalid length") name no value we were sent.
        return message.to_string();
    };
    let kind = found.split([' ', '`', '"']).next().unwrap_or(found);
    let kind = match kind {
        "floating" => "a number with a fraction",
        "integer" => "an integer",
        "string" => "a string",
        "sequence" => "an array",
        "map" => "an object",
        "boolean" => "a boolean",
        "null" => "null",
        _ => "another type",
    };
    let expected = match expected {
        "a sequence" => "an array",
        "a map" => "an object",
        "i64" | "u64" | "i32" | "u32" => "an integer",
        other => other,
    };
    format!("must be {expected}, not {kind}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::WebhookPatch;

    fn entries(error: ApiError) -> Vec<super::super::error::ErrorEntry> {
        match error {
            ApiError::Unprocessable(entries) => entries,
            other => panic!("expected 422, got {other:?}"),
        }
    }

    #[test]
    fn an_unknown_field_is_named() {
        let error = parse::<WebhookPatch>(br#"{"url":"https://x.test","colour":1}"#).unwrap_err();
        let entry = &entries(error)[0];
        assert_eq!(entry.field.as_deref(), Some("colour"));
    }

    #[test]
    fn a_wrong_type_names_the_field_and_the_type() {
        let error = parse::<WebhookPatch>(br#"{"url":5}"#).unwrap_err();
        let entry = &entries(error)[0];
        assert_eq!(entry.field.as_deref(), Some("url"));
        assert_eq!(entry.message, "must be a string, not an integer");
        let error = parse::<WebhookPatch>(br#"{"enabled_events":"whsec_x"}"#).unwrap_err();
        assert_eq!(entries(error)[0].message, "must be an array, not a string");
        let error = parse::<WebhookPatch>(br#"{"oidc_access_token_ttl_seconds":"60"}"#);
        assert_eq!(
            entries(error.unwrap_err())[0].message,
            "must be an integer, not a string"
        );
        let error = parse::<WebhookPatch>(br#"{"enabled_events":["a",7]}"#).unwrap_err();
        assert_eq!(
            entries(error)[0].field.as_deref(),
            Some("enabled_events[1]")
        );
    }

    #[test]
    fn malformed_json_and_non_objects_are_told_apart() {
        assert!(matches!(
            parse::<WebhookPatch>(b"{\"url\":"),
            Err(ApiError::MalformedJson(_))
        ));
        assert!(matches!(
            parse::<WebhookPatch>(b""),
            Err(ApiError::MalformedJson(_))
        ));
        assert!(matches!(
            parse::<WebhookPatch>(b"[1,2]"),
            Err(ApiError::Unprocessable(_))
        ));
    }

    #[test]
    fn json_content_types_are_recognised() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            is_json(&headers)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(with("application/merge-patch+json"));
        assert!(!with("text/plain"));
        assert!(!with("application/x-www-form-urlencoded"));
        assert!(!is_json(&HeaderMap::new()));
    }
}
