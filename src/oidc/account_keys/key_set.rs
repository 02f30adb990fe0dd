//! An account's key set decoded for signing: its keys with their times, which one signs at a
//! given time, and its JWKS in that order. Decoding a stored key parses and checks it (and signs
//! once), so it runs off the async threads.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::KeysError;
use crate::oidc::keys::{SigningKey, SigningKeys};
use crate::store::keys::{StoredKey, StoredKeySet};

/// One key of a set and when it is in use.
#[derive(Debug, Clone)]
pub struct AccountKey {
    pub key: SigningKey,
    pub signs_from: DateTime<Utc>,
    pub retire_at: Option<DateTime<Utc>>,
}

/// An account's published keys.
#[derive(Debug, Clone)]
pub struct KeySet {
    /// The id of the public JWKS URL.
    pub jwks_id: String,
    /// Ordered by `signs_from`.
    pub keys: Vec<AccountKey>,
}

impl KeySet {
    /// The key that signs at `now`: of the keys whose time has come, the newest; before any has
    /// (it cannot happen for a set made here), the oldest.
    pub fn signing_at(&self, now: DateTime<Utc>) -> Option<&SigningKey> {
        self.keys
            .iter()
            .rev()
            .find(|k| k.signs_from <= now)
            .or_else(|| self.keys.first())
            .map(|k| &k.key)
    }

    /// The public JWKS: the signing key first, then the others in rotation order.
    pub fn jwks(&self, now: DateTime<Utc>) -> Value {
        let signing = self.signing_at(now).map(|k| k.kid().to_string());
        let mut keys: Vec<&SigningKey> = self.keys.iter().map(|k| &k.key).collect();
        keys.sort_by_key(|k| Some(k.kid()) != signing.as_deref());
        json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
    }
}

pub fn file_key_set(jwks_id: String, keys: &SigningKeys) -> KeySet {
    // The first file signs: the others are listed before it, as keys whose time came earlier.
    let at = |days| DateTime::<Utc>::MIN_UTC + chrono::TimeDelta::days(days);
    let mut set: Vec<AccountKey> = keys
        .all()
        .iter()
        .skip(1)
        .map(|key| AccountKey {
            key: key.clone(),
            signs_from: at(0),
            retire_at: None,
        })
        .collect();
    if let Some(first) = keys.all().first() {
        set.push(AccountKey {
            key: first.clone(),
            signs_from: at(1),
            retire_at: None,
        });
    }
    KeySet { jwks_id, keys: set }
}

/// Every key of a stored set, decoded (off the async threads).
pub(super) async fn decode_set(set: StoredKeySet) -> Result<KeySet, KeysError> {
    let mut keys = Vec::with_capacity(set.keys.len());
    for stored in set.keys {
        let (signs_from, retire_at) = (stored.signs_from, stored.retire_at);
        keys.push(AccountKey {
            key: decode_key(stored).await?,
            signs_from,
            retire_at,
        });
    }
    Ok(KeySet {
        jwks_id: set.jwks_id,
        keys,
    })
}

/// A stored key as a signing key. Parsing checks the key and signs once: CPU work, so it runs
/// off the async threads.
pub(super) async fn decode_key(stored: StoredKey) -> Result<SigningKey, KeysError> {
    let kid = stored.kid.clone();
    let unusable = move || KeysError::Store(format!("stored key {kid} is not usable"));
    tokio::task::spawn_blocking(move || {
        let pem = match &stored.certificate_pem {
            Some(certificate) => format!("{}{certificate}", stored.private_pem.expose()),
            None => stored.private_pem.expose().to_string(),
        };
        SigningKey::from_pem(std::path::Path::new("(stored key)"), &pem).ok()
    })
    .await
    .ok()
    .flatten()
    .ok_or_else(unusable)
}
