//! Configuration: the compiled-in `config/default.toml`, then the file given by `--config`, then
//! `WEBHOOK_WORKER__SECTION__KEY` environment variables. Loaded and validated once, before
//! anything connects; every error names the key and where its value came from.

use figment::{
    providers::{Env, Format, Toml},
    Figment,
};
use serde::Deserialize;

mod amqp;
mod amqp_urls;
mod api;
mod database;
mod delivery;
mod describe;
mod duration;
mod fairness;
mod oidc;
mod operations;

pub use amqp::{AmqpConfig, QueuePrefix};
pub use amqp_urls::AmqpUrls;
pub use api::{ApiConfig, ApiToken};
pub use database::{DatabaseConfig, DecryptionKeys, EncryptionKey};
pub use delivery::{DeliveryConfig, ATTEMPT_DEADLINE_SLACK};
use describe::describe;
pub use duration::{HumanDuration, MAX_DURATION};
pub use oidc::{OidcConfig, SignatureConfig};
pub use operations::{
    DeliveryLogConfig, LogConfig, LogFormat, RecordMode, RegistryConfig, ShutdownConfig,
};

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

    /// Checks what types alone cannot, section by section. Returns the first offending key and
    /// why.
    fn validate(&self) -> Result<(), Invalid> {
        self.amqp.validate()?;
        self.database.validate()?;
        self.api.validate()?;
        self.validate_api_fairness()?;
        self.delivery.validate()?;
        self.signature.validate()?;
        self.oidc.validate()?;
        self.validate_operations()
    }

    /// The 32-byte key that encrypts secrets at rest, or `None` when none is configured.
    pub fn encryption_key(&self) -> Option<[u8; 32]> {
        self.database.encryption_key.bytes()
    }

    /// The keys of `database.decryption_keys`, in order.
    pub fn decryption_keys(&self) -> &[[u8; 32]] {
        self.database.decryption_keys.bytes()
    }
}

/// A key and what is wrong with its value.
type Invalid = (&'static str, String);

/// What is wrong with one value; completes "key `…`: …" and never repeats a secret value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

#[cfg(test)]
#[path = "config/tests.rs"]
mod tests;
