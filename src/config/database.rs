//! `[database]`: where webhooks are stored, and the keys that encrypt their secrets at rest.
//! The keys check themselves as they are read (base64 of 32 bytes), so a value that is not one
//! stops the start naming its key, and nothing later decodes them again.

use std::fmt;

use base64::Engine;
use serde::{de::Error as _, Deserialize, Deserializer};

use super::{Invalid, InvalidValue};
use crate::secret::Secret;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: Secret,
    pub encryption_key: EncryptionKey,
    /// Other keys stored secrets may be encrypted with (a rotation's old key, or its new one
    /// before every replica has it): tried after `encryption_key` when reading, never used to
    /// encrypt; at start what one of them opened is encrypted again with `encryption_key`.
    pub decryption_keys: DecryptionKeys,
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
        if !self.decryption_keys.0.is_empty() && self.encryption_key.0.is_none() {
            return Err((
                "database.decryption_keys",
                "needs database.encryption_key: secrets read with them are encrypted again \
                 with it"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// `database.encryption_key`: the 32 bytes that encrypt secrets at rest, or none (an empty
/// value). Read from base64; never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EncryptionKey(Option<[u8; 32]>);

impl EncryptionKey {
    pub fn bytes(&self) -> Option<[u8; 32]> {
        self.0
    }
}

/// `database.decryption_keys`: the keys tried after `encryption_key` when reading, in order.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct DecryptionKeys(Vec<[u8; 32]>);

impl DecryptionKeys {
    pub fn bytes(&self) -> &[[u8; 32]] {
        &self.0
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "[redacted]"
        } else {
            "none"
        })
    }
}

impl fmt::Debug for DecryptionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{} redacted]", self.0.len())
    }
}

impl<'de> Deserialize<'de> for EncryptionKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Secret::deserialize(deserializer)?;
        let text = text.expose().trim();
        if text.is_empty() {
            return Ok(Self(None));
        }
        decode_key(text)
            .map(|key| Self(Some(key)))
            .map_err(|problem| D::Error::custom(format!("must {problem}")))
    }
}

impl<'de> Deserialize<'de> for DecryptionKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<Secret>::deserialize(deserializer)?
            .iter()
            .enumerate()
            .map(|(i, key)| {
                decode_key(key.expose().trim())
                    .map_err(|problem| D::Error::custom(format!("entry {}: must {problem}", i + 1)))
            })
            .collect::<Result<_, _>>()
            .map(Self)
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
