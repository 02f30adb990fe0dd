//! `[registry]`, `[delivery_log]`, `[shutdown]` and `[log]`: how the process keeps its
//! webhooks fresh, what it records, how it stops, and what it logs.

use serde::Deserialize;

use super::{Config, HumanDuration, Invalid};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// How often the change log is checked.
    pub refresh: HumanDuration,
    /// How often every webhook is read again (the safety net).
    pub full_reload: HumanDuration,
}

impl RegistryConfig {
    pub fn periods(&self) -> crate::registry::Refresh {
        crate::registry::Refresh {
            changes: self.refresh.0,
            full: self.full_reload.0,
        }
    }
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

impl Config {
    /// The keys of the sections in this file.
    pub(super) fn validate_operations(&self) -> Result<(), Invalid> {
        if self.delivery_log.prune_interval.0.is_zero() {
            return Err(("delivery_log.prune_interval", "must be more than 0".into()));
        }
        if self.registry.refresh.0.is_zero() {
            return Err(("registry.refresh", "must be more than 0".into()));
        }
        if self.registry.full_reload.0.is_zero() {
            return Err(("registry.full_reload", "must be more than 0".into()));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err((
                "log.level",
                format!("{:?} is not a valid filter", self.log.level),
            ));
        }
        Ok(())
    }
}
