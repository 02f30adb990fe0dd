//! The access-token cache: [`TokenProvider`] hands out a cached token per OIDC configuration and
//! fetches a new one through [`TokenClient`] when there is none.
//!
//! Invariants:
//! - entries are keyed by (account, token endpoint, client id, method, scope, resource, SHA-256
//!   of the client secret), so one account is never handed a token obtained for another, and a
//!   change of any of them, such as a rotated secret, misses the cache and takes effect at the
//!   next delivery (a `private_key_jwt` token stays valid across a key rotation: the account's
//!   keys are its credential);
//! - an entry lives min(`access_token_ttl`, `expires_in`) less `oidc.token_expiry_margin`; when
//!   that leaves nothing, the token is handed out but never served from the cache again;
//! - concurrent callers for one key share one request (moka's `try_get_with`); a failure is
//!   handed to all of them and not cached, so the next call tries again;
//! - every request is counted in `token_requests` by outcome; the cache holds only hashes of
//!   credentials and the tokens themselves (as [`Secret`]s).

use std::{fmt, time::Duration, time::Instant};

use moka::{future::Cache, ops::compute::Op, Expiry};
use sha2::{Digest, Sha256};

use super::{account_keys::AccountKeys, token::TokenClient, TokenError};
use crate::{
    config::OidcConfig,
    net::AddressPolicy,
    secret::Secret,
    telemetry::{Metrics, OutcomeLabels},
    webhook::{OidcAuthMethod, OidcSettings},
};

/// More distinct OIDC configurations than this and the least used tokens are dropped.
const MAX_ENTRIES: u64 = 10_000;

#[derive(Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    /// The tenant boundary: tokens are never shared across accounts.
    account_id: String,
    token_endpoint: String,
    client_id: String,
    method: OidcAuthMethod,
    scope: Option<String>,
    resource: Option<String>,
    /// SHA-256 of the credential, never the credential.
    credential: [u8; 32],
}

#[derive(Clone)]
struct CachedToken {
    token: Secret,
    /// How long the entry may be served, margin already taken off.
    lifetime: Duration,
}

/// Gives each entry its own lifetime (moka's per-entry expiry).
struct TokenExpiry;

impl Expiry<CacheKey, CachedToken> for TokenExpiry {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &CachedToken,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.lifetime)
    }
}

/// How long a token may be served from the cache: min(TTL, `expires_in`) less the margin.
pub fn cache_lifetime(ttl: Duration, expires_in: Option<Duration>, margin: Duration) -> Duration {
    let lifetime = expires_in.map_or(ttl, |expires_in| ttl.min(expires_in));
    // The margin never takes more than half: a 20 s token is still cached for 10 s rather than
    // fetched anew for every delivery.
    lifetime.saturating_sub(margin.min(lifetime / 2))
}

/// Cached access tokens. Cheap to clone: all clones share one cache.
#[derive(Clone)]
pub struct TokenProvider {
    client: TokenClient,
    cache: Cache<CacheKey, CachedToken>,
    margin: Duration,
    metrics: Metrics,
}

impl fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenProvider")
            .field("keys", self.client.keys())
            .field("cached_tokens", &self.cache.entry_count())
            .field("margin", &self.margin)
            .finish()
    }
}

impl TokenProvider {
    /// `http` must be the delivery client (safety rules, timeout, no redirects).
    pub fn new(
        http: reqwest::Client,
        keys: AccountKeys,
        config: &OidcConfig,
        max_response_bytes: usize,
        metrics: Metrics,
    ) -> Self {
        let cache = Cache::builder()
            .max_capacity(MAX_ENTRIES)
            .expire_after(TokenExpiry)
            .build();
        TokenProvider {
            client: TokenClient::new(http, keys, config.assertion_lifetime.0, max_response_bytes),
            cache,
            margin: config.token_expiry_margin.0,
            metrics,
        }
    }

    /// The address rules for token endpoints written as IP literals (default: the strict ones);
    /// pass the delivery client's, so that `delivery.allow_networks` applies to both.
    pub fn with_address_policy(mut self, policy: AddressPolicy) -> Self {
        self.client = self.client.with_address_policy(policy);
        self
    }

    /// An access token for `settings`: cached, or fetched (once for all concurrent callers).
    pub async fn token(&self, settings: &OidcSettings) -> Result<Secret, TokenError> {
        let key = match self.key(settings) {
            Ok(key) => key,
            Err(error) => {
                self.count(error.outcome());
                return Err(error);
            }
        };
        if let Some(cached) = self.cache.get(&key).await {
            self.lookup("hit");
            return Ok(cached.token);
        }
        // A miss; concurrent misses for one key still share one request.
        self.lookup("miss");
        self.cache
            .try_get_with(key, self.fetch(settings))
            .await
            .map(|cached| cached.token)
            .map_err(|error| (*error).clone())
    }

    fn lookup(&self, outcome: &'static str) {
        self.metrics
            .token_cache
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Drops the cached token for `settings`, so the next [`Self::token`] fetches a new one.
    pub async fn invalidate(&self, settings: &OidcSettings) {
        if let Ok(key) = self.key(settings) {
            self.cache.invalidate(&key).await;
        }
    }

    /// Drops the cached token for `settings` only if it is still `rejected` (the token a
    /// webhook endpoint just answered 401/403 to). Many deliveries failing with the same stale
    /// token then cause one new token request, not one each.
    pub async fn invalidate_token(&self, settings: &OidcSettings, rejected: &Secret) {
        let Ok(key) = self.key(settings) else { return };
        self.cache
            .entry(key)
            .and_compute_with(|entry| async move {
                match entry {
                    Some(entry) if entry.value().token == *rejected => Op::Remove,
                    _ => Op::Nop,
                }
            })
            .await;
    }

    async fn fetch(&self, settings: &OidcSettings) -> Result<CachedToken, TokenError> {
        let started = Instant::now();
        let result = self.client.request(settings).await;
        self.metrics
            .token_request_seconds
            .observe(started.elapsed().as_secs_f64());
        match &result {
            Ok(issued) => {
                self.count("issued");
                tracing::debug!(
                    client_id = %settings.client_id,
                    expires_in = ?issued.expires_in,
                    "access token issued"
                );
            }
            Err(error) => {
                self.count(error.outcome());
                tracing::debug!(
                    client_id = %settings.client_id,
                    reason = %error.reason(),
                    %error,
                    "token request failed"
                );
            }
        }
        let issued = result?;
        Ok(CachedToken {
            token: issued.access_token,
            lifetime: cache_lifetime(settings.access_token_ttl, issued.expires_in, self.margin),
        })
    }

    fn key(&self, settings: &OidcSettings) -> Result<CacheKey, TokenError> {
        let credential = match settings.method {
            OidcAuthMethod::ClientSecret => {
                let secret = settings
                    .client_secret
                    .as_ref()
                    .ok_or(TokenError::Settings("client_secret is missing"))?;
                credential_hash("client_secret", secret.expose())
            }
            OidcAuthMethod::PrivateKeyJwt => {
                credential_hash("private_key_jwt", &settings.account_id)
            }
        };
        Ok(CacheKey {
            account_id: settings.account_id.clone(),
            token_endpoint: settings.token_endpoint.as_str().to_string(),
            client_id: settings.client_id.clone(),
            method: settings.method,
            scope: settings.scope.clone(),
            resource: settings.resource.clone(),
            credential,
        })
    }

    fn count(&self, outcome: &'static str) {
        self.metrics
            .token_requests
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }
}

fn credential_hash(kind: &str, value: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(kind.as_bytes());
    hasher.update([0]);
    hasher.update(value.as_bytes());
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn the_lifetime_is_the_shorter_of_ttl_and_expires_in_less_the_margin() {
        assert_eq!(cache_lifetime(S(3600), Some(S(600)), S(30)), S(570));
        assert_eq!(cache_lifetime(S(300), Some(S(3600)), S(30)), S(270));
        assert_eq!(cache_lifetime(S(300), None, S(30)), S(270));
        assert_eq!(cache_lifetime(S(2), Some(S(600)), S(0)), S(2));
    }

    #[test]
    fn the_margin_takes_at_most_half_of_a_short_lifetime() {
        assert_eq!(cache_lifetime(S(20), Some(S(600)), S(30)), S(10));
        assert_eq!(
            cache_lifetime(S(3600), Some(S(1)), S(30)),
            Duration::from_millis(500)
        );
        assert_eq!(cache_lifetime(S(3600), Some(S(0)), S(30)), Duration::ZERO);
    }

    #[test]
    fn credential_hashes_differ_by_kind_and_value() {
        assert_ne!(
            credential_hash("client_secret", "a"),
            credential_hash("client_secret", "b")
        );
        assert_ne!(
            credential_hash("client_secret", "a"),
            credential_hash("private_key_jwt", "a")
        );
    }

    fn settings(secret: &str) -> OidcSettings {
        OidcSettings {
            account_id: "acct".into(),
            method: OidcAuthMethod::ClientSecret,
            client_id: "c".into(),
            client_secret: Some(Secret::new(secret)),
            token_endpoint: crate::webhook::EndpointUrl::parse("https://idp.example/token")
                .unwrap(),
            scope: None,
            resource: None,
            access_token_ttl: S(60),
        }
    }

    fn provider() -> TokenProvider {
        let config = crate::config::Config::from_toml("").unwrap();
        TokenProvider::new(
            reqwest::Client::new(),
            AccountKeys::from_files("acct", std::sync::Arc::default()),
            &config.oidc,
            1024,
            Metrics::new(),
        )
    }

    #[test]
    fn a_changed_secret_is_another_cache_entry_and_the_key_hides_it() {
        let provider = provider();
        let a = provider.key(&settings("secret-a")).unwrap();
        let b = provider.key(&settings("secret-b")).unwrap();
        assert!(a != b);
        assert!(!a.credential.windows(8).any(|w| w == b"secret-a"));
    }

    #[test]
    fn the_same_client_in_another_account_is_another_cache_entry() {
        let provider = provider();
        let a = settings("same-secret");
        let mut b = a.clone();
        b.account_id = "other".into();
        assert!(provider.key(&a).unwrap() != provider.key(&b).unwrap());
    }

    #[tokio::test]
    async fn private_key_jwt_without_a_signing_key_fails_before_any_request() {
        let provider = provider();
        let mut settings = settings("x");
        settings.method = OidcAuthMethod::PrivateKeyJwt;
        settings.client_secret = None;
        let err = provider.token(&settings).await.unwrap_err();
        assert!(matches!(err, TokenError::NoSigningKey(_)), "{err}");
        let metrics = provider.metrics.render();
        assert!(
            metrics.contains("webhook_worker_token_requests_total{outcome=\"not_sent\"} 1"),
            "{metrics}"
        );
    }
}
