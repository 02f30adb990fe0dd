//! OAuth 2.0 access tokens for webhooks with OIDC settings. Placeholder interface until the
//! token client lands (issue 4): every token request fails, so OIDC deliveries are retried.

use crate::{secret::Secret, webhook::OidcSettings};

#[derive(Clone, Default)]
pub struct TokenProvider;

#[derive(Debug, thiserror::Error)]
#[error("token acquisition is not available yet")]
pub struct TokenError;

impl TokenError {
    pub fn reason(&self) -> String {
        "unavailable".into()
    }
}

impl TokenProvider {
    pub async fn token(&self, _settings: &OidcSettings) -> Result<Secret, TokenError> {
        Err(TokenError)
    }

    pub async fn invalidate(&self, _settings: &OidcSettings) {}
}
