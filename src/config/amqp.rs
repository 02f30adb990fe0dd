//! `[amqp]`: the broker, the names of the worker's exchange and queues, and the limits of what
//! the worker takes from the broker at once.

use std::{fmt, ops::Deref};

use serde::{de::Error as _, Deserialize, Deserializer};

use super::{AmqpUrls, HumanDuration, Invalid};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpConfig {
    /// One node, or a cluster's nodes: each connection goes to one of them.
    pub url: AmqpUrls,
    pub prefix: QueuePrefix,
    pub prefetch: u16,
    pub max_message_bytes: usize,
    pub reconnect_max_backoff: HumanDuration,
    pub delivery_limit: u32,
    pub confirm_timeout: HumanDuration,
    pub settle_timeout: HumanDuration,
}

impl AmqpConfig {
    /// Checks what the types alone cannot; the error names the key.
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        self.url.validate()?;
        if self.prefetch == 0 {
            return Err(("amqp.prefetch", "must be at least 1".into()));
        }
        if self.max_message_bytes == 0 {
            return Err(("amqp.max_message_bytes", "must be at least 1".into()));
        }
        if self.delivery_limit == 0 {
            return Err(("amqp.delivery_limit", "must be at least 1".into()));
        }
        if self.confirm_timeout.0.is_zero() {
            return Err(("amqp.confirm_timeout", "must be more than 0".into()));
        }
        if self.settle_timeout.0 < self.confirm_timeout.0 {
            return Err((
                "amqp.settle_timeout",
                "must be at least amqp.confirm_timeout".into(),
            ));
        }
        Ok(())
    }
}

/// `amqp.prefix`: the start of every exchange and queue name the worker declares. Letters,
/// digits, '.', '_' and '-', checked as it is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuePrefix(String);

impl QueuePrefix {
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
        if text.is_empty() || !text.chars().all(allowed) {
            return Err("must be non-empty: letters, digits, '.', '_', '-'");
        }
        Ok(Self(text.to_string()))
    }
}

impl Deref for QueuePrefix {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for QueuePrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for QueuePrefix {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(D::Error::custom)
    }
}

impl PartialEq<&str> for QueuePrefix {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}
