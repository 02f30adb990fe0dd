//! `[amqp]`: the broker, the names of the worker's exchange and queues, and the limits of what
//! the worker takes from the broker at once.

use serde::Deserialize;

use super::{HumanDuration, Invalid};
use crate::secret::Secret;

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

impl AmqpConfig {
    /// Checks what the types alone cannot; the error names the key.
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        let amqp_url = self.url.expose();
        if !(amqp_url.starts_with("amqp://") || amqp_url.starts_with("amqps://")) {
            return Err((
                "amqp.url",
                "must start with amqp:// or amqps://, e.g. amqp://guest:guest@127.0.0.1:5672/%2f"
                    .into(),
            ));
        }
        if self.prefix.is_empty()
            || !self
                .prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err((
                "amqp.prefix",
                "must be non-empty: letters, digits, '.', '_', '-'".into(),
            ));
        }
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
