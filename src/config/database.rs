//! `[database]`: where webhooks are stored, and the keys that encrypt their secrets at rest.

use base64::Engine;
use serde::Deserialize;

use super::{Invalid, InvalidValue};
use crate::secret::Secret;

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

impl DatabaseConfig {
    /// Checks what the types alone cannot; the error names the key.
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        let db = self.url.expose();
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
        if self.max_connections == 0 {
            return Err(("database.max_connections", "must be at least 1".into()));
        }
        if let Err(problem) = self.encryption_key() {
            return Err(("database.encryption_key", problem.0));
        }
        if let Err(problem) = self.decryption_keys() {
            return Err(("database.decryption_keys", problem.0));
        }
        Ok(())
    }

    /// The 32-byte key that encrypts secrets at rest, or `None` when none is configured.
    pub fn encryption_key(&self) -> Result<Option<[u8; 32]>, InvalidValue> {
        let text = self.encryption_key.expose().trim();
        if text.is_empty() {
            return Ok(None);
        }
        decode_key(text)
            .map(Some)
            .map_err(|e| InvalidValue(format!("must {e}")))
    }

    /// The keys of `database.decryption_keys`, in order; refused when there are some but no
    /// `database.encryption_key` to encrypt again with.
    pub fn decryption_keys(&self) -> Result<Vec<[u8; 32]>, InvalidValue> {
        let keys = &self.decryption_keys;
        if !keys.is_empty() && self.encryption_key.expose().trim().is_empty() {
            return Err(InvalidValue(
                "needs database.encryption_key: secrets read with them are encrypted again \
                 with it"
                    .into(),
            ));
        }
        keys.iter()
            .enumerate()
            .map(|(i, key)| {
                decode_key(key.expose().trim())
                    .map_err(|e| InvalidValue(format!("entry {}: must {e}", i + 1)))
            })
            .collect()
    }
}

/// base64 of 32 bytes; the error completes "must …" and never repeats the value.
fn decode_key(text: &str) -> Result<[u8; 32], InvalidValue> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| InvalidValue("be base64 (of 32 random bytes)".into()))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| InvalidValue(format!("decode to 32 bytes, not {}", bytes.len())))
}
