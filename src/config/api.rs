//! `[api]`: where the Webhooks API listens, its tokens, and its limits per client and account.

use std::net::SocketAddr;

use serde::Deserialize;

use super::{HumanDuration, Invalid, InvalidValue};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    /// Where `/metrics` (and `/healthz`) are served instead of `listen`; empty: on `listen`.
    pub metrics_listen: String,
    pub max_body_bytes: usize,
    pub header_read_timeout: HumanDuration,
    /// A response the client takes no bytes of for this long closes its connection.
    pub write_timeout: HumanDuration,
    pub max_connections: usize,
    pub max_connections_per_peer: usize,
    /// Writes (create, update, delete, rotate, redrive) per account per minute, sustained.
    pub write_rate_limit: u32,
    /// Writes an account may make at once before `write_rate_limit` paces it.
    pub write_burst: u32,
    pub tokens: Vec<ApiToken>,
    /// Where customers reach the API (`https://hooks.example.com`), for absolute `jwks_uri`s;
    /// empty: the JWKS URL is given as a path.
    pub public_base_url: String,
    pub max_webhooks_per_account: u32,
}

impl ApiConfig {
    /// Checks what the types alone cannot (the fairness keys: `fairness.rs`); the error names
    /// the key.
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        for token in &self.tokens {
            if token.account_id.is_empty() {
                return Err(("api.tokens", "account_id must not be empty".into()));
            }
            let hash = &token.token_sha256;
            if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err((
                    "api.tokens",
                    format!(
                        "token_sha256 of account {:?} must be 64 hex characters (the SHA-256 of the token)",
                        token.account_id
                    ),
                ));
            }
        }
        let mut hashes = std::collections::HashSet::new();
        if let Some(twice) = self
            .tokens
            .iter()
            .find(|t| !hashes.insert(t.token_sha256.to_ascii_lowercase()))
        {
            return Err((
                "api.tokens",
                format!(
                    "the same token_sha256 is listed twice (again for account {:?}); a token belongs to one account",
                    twice.account_id
                ),
            ));
        }
        if !self.public_base_url.is_empty() {
            match url::Url::parse(&self.public_base_url) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
                _ => {
                    return Err((
                        "api.public_base_url",
                        "must be an http(s) URL such as \"https://hooks.example.com\"".into(),
                    ))
                }
            }
        }
        if let Err(problem) = self.metrics_address() {
            return Err(("api.metrics_listen", problem.0));
        }
        if self.max_webhooks_per_account == 0 {
            return Err(("api.max_webhooks_per_account", "must be at least 1".into()));
        }
        if self.max_body_bytes == 0 {
            return Err(("api.max_body_bytes", "must be at least 1".into()));
        }
        if self.header_read_timeout.0.is_zero() {
            return Err(("api.header_read_timeout", "must be more than 0".into()));
        }
        if self.max_connections == 0 {
            return Err(("api.max_connections", "must be at least 1".into()));
        }
        Ok(())
    }

    /// `metrics_listen` as an address, or `None` when empty (metrics stay on `listen`).
    pub fn metrics_address(&self) -> Result<Option<SocketAddr>, InvalidValue> {
        let text = self.metrics_listen.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let address: SocketAddr = text.parse().map_err(|_| {
            InvalidValue(format!(
                "{text:?} is not an address: expected ip:port, e.g. 0.0.0.0:9090"
            ))
        })?;
        if address == self.listen && address.port() != 0 {
            return Err(InvalidValue("must differ from api.listen".into()));
        }
        Ok(Some(address))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    pub account_id: String,
    pub token_sha256: String,
}
