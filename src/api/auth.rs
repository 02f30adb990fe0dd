//! Bearer-token authentication of the `/v1` routes.
//!
//! The configuration holds only the SHA-256 of each token (`api.tokens[].token_sha256`), so a
//! leaked configuration file grants nothing. A presented token is hashed and compared with every
//! configured hash in constant time, and all of them are compared whatever the outcome, so the
//! time taken says nothing about which hash came close. The matching entry's account is put in
//! the request's extensions as [`Account`]; handlers scope every read and write to it.

use axum::{
    extract::{Request, State},
    http::{header, HeaderMap},
    middleware::Next,
    response::Response,
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{error::ApiError, ApiState};
use crate::config::ApiToken;

/// The account the request's token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account(pub String);

/// The configured tokens: SHA-256 digests and the account each belongs to.
#[derive(Clone, Default)]
pub struct ApiTokens {
    entries: Vec<([u8; 32], String)>,
}

impl std::fmt::Debug for ApiTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiTokens")
            .field("count", &self.entries.len())
            .finish()
    }
}

/// An `api.tokens` entry whose hash does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("api.tokens: token_sha256 of account {account_id:?} must be 64 hex characters")]
pub struct BadTokenHash {
    pub account_id: String,
}

impl ApiTokens {
    /// Decodes `api.tokens`. The configuration was validated at load; this names the entry
    /// anyway should a hash not decode.
    pub fn from_config(tokens: &[ApiToken]) -> Result<Self, BadTokenHash> {
        let entries = tokens
            .iter()
            .map(|token| {
                let mut digest = [0u8; 32];
                hex::decode_to_slice(token.token_sha256.trim(), &mut digest).map_err(|_| {
                    BadTokenHash {
                        account_id: token.account_id.clone(),
                    }
                })?;
                Ok((digest, token.account_id.clone()))
            })
            .collect::<Result<_, BadTokenHash>>()?;
        Ok(Self { entries })
    }

    /// The account of `token`, if it is a configured token.
    pub fn account_of(&self, token: &str) -> Option<&str> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (digest, account) in &self.entries {
            // No early exit: every configured hash is compared.
            if bool::from(digest.ct_eq(&presented)) {
                found = Some(account.as_str());
            }
        }
        found
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized(
            "the Authorization header is missing",
        ))?;
    let text = value
        .to_str()
        .map_err(|_| ApiError::Unauthorized("the Authorization header is malformed"))?;
    let (scheme, token) = text.split_once(' ').ok_or(ApiError::Unauthorized(
        "the Authorization header is malformed",
    ))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::Unauthorized(
            "the Authorization header must use the Bearer scheme",
        ));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(ApiError::Unauthorized("the bearer token is empty"));
    }
    Ok(token)
}

/// Middleware of the `/v1` routes: answers 401 unless the request carries a configured token.
pub async fn require_token(
    State(state): State<ApiState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let token = bearer_token(request.headers())?;
    let account = state
        .tokens
        .account_of(token)
        .ok_or(ApiError::Unauthorized("the bearer token is not valid"))?
        .to_string();
    request.extensions_mut().insert(Account(account));
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn tokens() -> ApiTokens {
        let entry = |token: &str, account: &str| ApiToken {
            account_id: account.into(),
            token_sha256: hex::encode(Sha256::digest(token.as_bytes())),
        };
        ApiTokens::from_config(&[entry("tok-a", "a"), entry("tok-b", "b")]).unwrap()
    }

    #[test]
    fn each_token_maps_to_its_account() {
        let tokens = tokens();
        assert_eq!(tokens.account_of("tok-a"), Some("a"));
        assert_eq!(tokens.account_of("tok-b"), Some("b"));
        assert_eq!(tokens.account_of("tok-c"), None);
        assert_eq!(tokens.account_of(""), None);
    }

    #[test]
    fn a_bad_hash_in_the_configuration_is_named() {
        let bad = ApiToken {
            account_id: "acct".into(),
            token_sha256: "zz".into(),
        };
        let error = ApiTokens::from_config(&[bad]).unwrap_err().to_string();
        assert!(
            error.contains("api.tokens") && error.contains("acct"),
            "{error}"
        );
    }

    #[test]
    fn only_a_bearer_header_yields_a_token() {
        let header = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            headers
        };
        assert_eq!(bearer_token(&header("Bearer abc")).unwrap(), "abc");
        assert_eq!(bearer_token(&header("bearer abc")).unwrap(), "abc");
        assert!(bearer_token(&header("Basic abc")).is_err());
        assert!(bearer_token(&header("Bearer")).is_err());
        assert!(bearer_token(&header("Bearer  ")).is_err());
        assert!(bearer_token(&HeaderMap::new()).is_err());
    }
}
