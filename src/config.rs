//! Configuration: the compiled-in `config/default.toml`, then the file given by `--config`, then
//! `WEBHOOK_WORKER__SECTION__KEY` environment variables. Loaded and validated once, before
//! anything connects; every error names the key and where its value came from.

use std::{net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

use base64::Engine;
use figment::{
    providers::{Env, Format, Toml},
    Figment,
};
use ipnet::IpNet;
use serde::Deserialize;

use crate::secret::Secret;

mod describe;
mod fairness;
use describe::describe;

/// The documented defaults; also the base layer of every configuration.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");
pub const ENV_PREFIX: &str = "WEBHOOK_WORKER__";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub amqp: AmqpConfig,
    pub database: DatabaseConfig,
    pub api: ApiConfig,
    pub delivery: DeliveryConfig,
    pub signature: SignatureConfig,
    pub oidc: OidcConfig,
    pub registry: RegistryConfig,
    pub shutdown: ShutdownConfig,
    pub delivery_log: DeliveryLogConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpConfig {
    pub url: Secret,
    pub prefix: String,
    pub prefetch: u16,
    pub max_message_bytes: usize,
    pub reconnect_max_backoff: HumanDuration,
    pub delivery_limit: u32,
    pub confirm_timeout: HumanDuration,
    pub settle_timeout: HumanDuration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: Secret,
    pub encryption_key: Secret,
    /// Other keys stored secrets may be encrypted with (a rotation's old key, or its new one
    /// before every replica has it): tried after `encryption_key` when reading, never used to
    /// encrypt; at start what one of them opened is encrypted again with `encryption_key`.
    pub decryption_keys: Vec<Secret>,
    pub max_connections: u32,
}

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
    /// `metrics_listen` as an address, or `None` when empty (metrics stay on `listen`).
    pub fn metrics_address(&self) -> Result<Option<SocketAddr>, String> {
        let text = self.metrics_listen.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let address: SocketAddr = text.parse().map_err(|_| {
            format!("{text:?} is not an address: expected ip:port, e.g. 0.0.0.0:9090")
        })?;
        if address == self.listen && address.port() != 0 {
            return Err("must differ from api.listen".into());
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    pub timeout: HumanDuration,
    /// Unset: `timeout` plus [`ATTEMPT_DEADLINE_SLACK`]; see [`DeliveryConfig::attempt_deadline`].
    #[serde(default)]
    pub attempt_deadline: Option<HumanDuration>,
    pub retry_schedule: Vec<HumanDuration>,
    pub allow_http: bool,
    #[serde(deserialize_with = "describe::cidrs")]
    pub allow_networks: Vec<IpNet>,
    pub max_response_bytes: usize,
    pub max_in_flight: usize,
    /// Requests in flight at once for one account, over all its webhooks: its share of
    /// `max_in_flight` (and of the consumers' prefetch windows).
    pub max_in_flight_per_account: usize,
    /// Longest a delivery waits in the worker for its endpoint's or its account's turn; one that
    /// would wait longer is parked instead, so it does not hold a place in the prefetch window.
    pub max_wait: HumanDuration,
    /// Each webhook's adaptive limit on requests in flight: where it starts, its floor and cap.
    pub concurrency_initial: u32,
    pub concurrency_min: u32,
    pub concurrency_max: u32,
    /// Consecutive timeouts or connection failures that open a webhook's circuit.
    pub circuit_failures: u32,
    /// The first park's delay; each further park of the same attempt doubles it.
    pub park_delay: HumanDuration,
    /// A webhook whose deliveries all failed this long is disabled; zero means never.
    pub disable_after: HumanDuration,
    pub default_account: String,
    pub fan_out_threshold: usize,
    pub max_in_flight_per_event: usize,
    /// Removed keys, kept only to refuse them with a message that says what replaced them.
    #[serde(default)]
    pub max_in_flight_per_webhook: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub park_after: Option<serde::de::IgnoredAny>,
}

/// How much longer than one request a whole attempt may take when `delivery.attempt_deadline`
/// is not set: room for a token request and the retry after a 401 that do not hang.
pub const ATTEMPT_DEADLINE_SLACK: Duration = Duration::from_secs(15);

impl Config {
    /// Requests in flight one account may have: `delivery.max_in_flight_per_account`, and never
    /// more than half a consumer's prefetch window, so that one account's requests can never
    /// hold all the messages the worker has taken from the broker.
    pub fn account_share(&self) -> usize {
        self.delivery
            .max_in_flight_per_account
            .min(usize::from(self.amqp.prefetch / 2))
            .max(1)
    }
}

impl DeliveryConfig {
    /// The deadline of a whole attempt: `attempt_deadline`, or `timeout` plus 15 s.
    pub fn attempt_deadline(&self) -> Duration {
        self.attempt_deadline
            .map_or(self.timeout.0 + ATTEMPT_DEADLINE_SLACK, |deadline| {
                deadline.0
            })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureConfig {
    pub header: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// Key files for the one account named by `signing_keys_account` (a single-account
    /// deployment); every other account has keys of its own in the database.
    pub signing_keys: Vec<PathBuf>,
    pub signing_keys_account: String,
    pub key_rotation_delay: HumanDuration,
    pub key_retirement_grace: HumanDuration,
    pub assertion_lifetime: HumanDuration,
    pub token_expiry_margin: HumanDuration,
    /// Key rotations per account per hour (and at once) through the API.
    pub rotation_rate_limit: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    pub refresh: HumanDuration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryLogConfig {
    pub record: RecordMode,
    pub retention: HumanDuration,
    /// How long dead letters recorded by webhook are kept (redriven or not).
    pub dead_letter_retention: HumanDuration,
    pub prune_interval: HumanDuration,
}

/// Which attempts the delivery log keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordMode {
    All,
    Failures,
    Off,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    pub grace: HumanDuration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

/// A duration written the human way in configuration: `"500ms"`, `"30s"`, `"5m"`, `"3h"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

/// The longest duration any setting takes. Far beyond every sensible value (a retention of years,
/// a retry days away), and short enough that adding it to a clock or a timestamp cannot overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let duration = humantime::parse_duration(text.trim()).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {text:?} ({e}); write e.g. \"500ms\", \"30s\", \"5m\""
            ))
        })?;
        if duration > MAX_DURATION {
            return Err(serde::de::Error::custom(format!(
                "duration {text:?} is longer than the longest a setting takes, 10 years"
            )));
        }
        Ok(HumanDuration(duration))
    }
}

impl From<HumanDuration> for Duration {
    fn from(value: HumanDuration) -> Self {
        value.0
    }
}

/// A configuration problem, naming the key and where its value came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Parse(String),
    #[error("invalid configuration: key `{key}` (from {source_name}): {message}")]
    Invalid {
        key: String,
        source_name: String,
        message: String,
    },
}

impl Config {
    /// Loads defaults, then `file` (if any), then the environment, and validates the result.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(file, Env::prefixed(ENV_PREFIX).split("__"))
    }

    /// Loads defaults and then `overrides` (a TOML document): no file, no environment. For tests.
    pub fn from_toml(overrides: &str) -> Result<Self, ConfigError> {
        let figment = Figment::from(Toml::string(DEFAULT_TOML)).merge(Toml::string(overrides));
        Self::extract(figment)
    }

    fn load_with_env(file: Option<&std::path::Path>, env: Env) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::Parse(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        Self::extract(figment.merge(env))
    }

    fn extract(figment: Figment) -> Result<Self, ConfigError> {
        let config: Config = figment.extract().map_err(|e| {
            let all: Vec<String> = e.into_iter().map(describe).collect();
            ConfigError::Parse(all.join("; "))
        })?;
        config.validate().map_err(|(key, message)| {
            let path: Vec<String> = key.split('.').map(str::to_string).collect();
            let source_name = describe::source_name(figment.find_metadata(key), &path);
            ConfigError::Invalid {
                key: key.to_string(),
                source_name,
                message,
            }
        })?;
        Ok(config)
    }

    /// Checks what types alone cannot. Returns the first offending key and why.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        let amqp_url = self.amqp.url.expose();
        if !(amqp_url.starts_with("amqp://") || amqp_url.starts_with("amqps://")) {
            return Err((
                "amqp.url",
                "must start with amqp:// or amqps://, e.g. amqp://guest:guest@127.0.0.1:5672/%2f"
                    .into(),
            ));
        }
        if self.amqp.prefix.is_empty()
            || !self
                .amqp
                .prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err((
                "amqp.prefix",
                "must be non-empty: letters, digits, '.', '_', '-'".into(),
            ));
        }
        if self.amqp.prefetch == 0 {
            return Err(("amqp.prefetch", "must be at least 1".into()));
        }
        if self.amqp.max_message_bytes == 0 {
            return Err(("amqp.max_message_bytes", "must be at least 1".into()));
        }
        if self.amqp.delivery_limit == 0 {
            return Err(("amqp.delivery_limit", "must be at least 1".into()));
        }
        if self.amqp.confirm_timeout.0.is_zero() {
            return Err(("amqp.confirm_timeout", "must be more than 0".into()));
        }
        if self.amqp.settle_timeout.0 < self.amqp.confirm_timeout.0 {
            return Err((
                "amqp.settle_timeout",
                "must be at least amqp.confirm_timeout".into(),
            ));
        }
        let db = self.database.url.expose();
        if !(db.starts_with("sqlite:")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            return Err((
                "database.url",
                "must start with sqlite:, postgres:// or postgresql://, e.g. \
                 sqlite://data/webhook-worker.db or postgres://user@127.0.0.1:5432/webhooks"
                    .into(),
            ));
        }
        if self.database.max_connections == 0 {
            return Err(("database.max_connections", "must be at least 1".into()));
        }
        if let Err(message) = self.encryption_key() {
            return Err(("database.encryption_key", message));
        }
        if let Err(message) = self.decryption_keys() {
            return Err(("database.decryption_keys", message));
        }
        for token in &self.api.tokens {
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
            .api
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
        if !self.api.public_base_url.is_empty() {
            match url::Url::parse(&self.api.public_base_url) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
                _ => {
                    return Err((
                        "api.public_base_url",
                        "must be an http(s) URL such as \"https://hooks.example.com\"".into(),
                    ))
                }
            }
        }
        if let Err(message) = self.api.metrics_address() {
            return Err(("api.metrics_listen", message));
        }
        if self.api.max_webhooks_per_account == 0 {
            return Err(("api.max_webhooks_per_account", "must be at least 1".into()));
        }
        if self.api.max_body_bytes == 0 {
            return Err(("api.max_body_bytes", "must be at least 1".into()));
        }
        if self.api.header_read_timeout.0.is_zero() {
            return Err(("api.header_read_timeout", "must be more than 0".into()));
        }
        if self.api.max_connections == 0 {
            return Err(("api.max_connections", "must be at least 1".into()));
        }
        self.validate_api_fairness()?;
        if self.delivery.timeout.0.is_zero() {
            return Err(("delivery.timeout", "must be more than 0".into()));
        }
        if self
            .delivery
            .attempt_deadline
            .is_some_and(|deadline| deadline.0 < self.delivery.timeout.0)
        {
            return Err((
                "delivery.attempt_deadline",
                format!(
                    "must be at least delivery.timeout ({})",
                    humantime::format_duration(self.delivery.timeout.0)
                ),
            ));
        }
        if self.delivery.max_in_flight == 0 {
            return Err(("delivery.max_in_flight", "must be at least 1".into()));
        }
        self.validate_endpoint_health()?;
        if self.delivery.max_response_bytes == 0 {
            return Err(("delivery.max_response_bytes", "must be at least 1".into()));
        }
        if self.delivery.max_in_flight_per_event == 0 {
            return Err((
                "delivery.max_in_flight_per_event",
                "must be at least 1".into(),
            ));
        }
        if self.delivery.default_account.is_empty() {
            return Err(("delivery.default_account", "must not be empty".into()));
        }
        if self.delivery.retry_schedule.iter().any(|d| d.0.is_zero()) {
            return Err((
                "delivery.retry_schedule",
                "every delay must be more than 0".into(),
            ));
        }
        if reqwest::header::HeaderName::from_str(&self.signature.header).is_err() {
            return Err(("signature.header", "is not a valid HTTP header name".into()));
        }
        if self.oidc.assertion_lifetime.0.is_zero() {
            return Err(("oidc.assertion_lifetime", "must be more than 0".into()));
        }
        if !self.oidc.signing_keys.is_empty() && self.oidc.signing_keys_account.is_empty() {
            return Err((
                "oidc.signing_keys_account",
                "must name the one account that oidc.signing_keys serve; every other account \
                 signs with keys of its own"
                    .into(),
            ));
        }
        for path in &self.oidc.signing_keys {
            if !path.is_file() {
                return Err((
                    "oidc.signing_keys",
                    format!("{} is not a readable file", path.display()),
                ));
            }
        }
        if self.delivery_log.prune_interval.0.is_zero() {
            return Err(("delivery_log.prune_interval", "must be more than 0".into()));
        }
        if self.registry.refresh.0.is_zero() {
            return Err(("registry.refresh", "must be more than 0".into()));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err((
                "log.level",
                format!("{:?} is not a valid filter", self.log.level),
            ));
        }
        Ok(())
    }

    /// The `delivery` keys of endpoint health: adaptive concurrency, circuit breaker, parking.
    fn validate_endpoint_health(&self) -> Result<(), (&'static str, String)> {
        let delivery = &self.delivery;
        if delivery.max_in_flight_per_webhook.is_some() {
            return Err((
                "delivery.max_in_flight_per_webhook",
                "was removed: each webhook's limit now adapts; set delivery.concurrency_initial, \
                 delivery.concurrency_min and delivery.concurrency_max instead"
                    .into(),
            ));
        }
        if delivery.park_after.is_some() {
            return Err((
                "delivery.park_after",
                "was removed: a delivery now waits while its endpoint makes progress and is \
                 parked at once when it does not; delete the key"
                    .into(),
            ));
        }
        if delivery.concurrency_min == 0 {
            return Err(("delivery.concurrency_min", "must be at least 1".into()));
        }
        if delivery.concurrency_max < delivery.concurrency_min {
            return Err((
                "delivery.concurrency_max",
                "must be at least delivery.concurrency_min".into(),
            ));
        }
        if !(delivery.concurrency_min..=delivery.concurrency_max)
            .contains(&delivery.concurrency_initial)
        {
            return Err((
                "delivery.concurrency_initial",
                "must lie between delivery.concurrency_min and delivery.concurrency_max".into(),
            ));
        }
        if delivery.circuit_failures == 0 {
            return Err(("delivery.circuit_failures", "must be at least 1".into()));
        }
        if delivery.park_delay.0 < Duration::from_millis(100) {
            return Err(("delivery.park_delay", "must be at least 100ms".into()));
        }
        if !(1..=delivery.max_in_flight).contains(&delivery.max_in_flight_per_account) {
            return Err((
                "delivery.max_in_flight_per_account",
                "must lie between 1 and delivery.max_in_flight".into(),
            ));
        }
        if delivery.max_wait.0 < Duration::from_millis(10) {
            return Err(("delivery.max_wait", "must be at least 10ms".into()));
        }
        Ok(())
    }

    /// The 32-byte key that encrypts secrets at rest, or `None` when none is configured.
    pub fn encryption_key(&self) -> Result<Option<[u8; 32]>, String> {
        let text = self.database.encryption_key.expose().trim();
        if text.is_empty() {
            return Ok(None);
        }
        decode_key(text).map(Some).map_err(|e| format!("must {e}"))
    }

    /// The keys of `database.decryption_keys`, in order; refused when there are some but no
    /// `database.encryption_key` to encrypt again with.
    pub fn decryption_keys(&self) -> Result<Vec<[u8; 32]>, String> {
        let keys = &self.database.decryption_keys;
        if !keys.is_empty() && self.database.encryption_key.expose().trim().is_empty() {
            return Err(
                "needs database.encryption_key: secrets read with them are encrypted \
                        again with it"
                    .into(),
            );
        }
        keys.iter()
            .enumerate()
            .map(|(i, key)| {
                decode_key(key.expose().trim()).map_err(|e| format!("entry {}: must {e}", i + 1))
            })
            .collect()
    }
}

/// base64 of 32 bytes; the error completes "must …" and never repeats the value.
fn decode_key(text: &str) -> Result<[u8; 32], String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| "be base64 (of 32 random bytes)".to_string())?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("decode to 32 bytes, not {}", bytes.len()))
}

/// A figment error as "key `amqp.prefetch` (from WEBHOOK_WORKER__AMQP__PREFETCH): ...".
#[cfg(test)]
#[path = "config/tests.rs"]
mod tests;
