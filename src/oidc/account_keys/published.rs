//! The accounts' public JWKS as served (`GET /jwks/{jwks_id}`, `GET /v1/webhooks/oidc_keys`):
//! built from the public JWKs stored beside the keys, never by decrypting a private key, and
//! kept ready in a cache, serialized, with its `ETag`.
//!
//! Freshness: a rotation on this process replaces the account's entry at once. Other processes
//! (replicas, or a CLI rotation) are seen when an entry expires: after
//! [`AccountKeys::published_ttl`] (a quarter of `oidc.key_rotation_delay`, between 100 ms and
//! 5 s), or sooner, when a key of the set starts signing or stops being published (the set's
//! next change is known from its keys' times). A rotated-in key signs only after
//! `oidc.key_rotation_delay`, so every replica publishes it before it signs.
//!
//! A key stored before public JWKs were kept (no `public_jwk`) is decrypted once, off the async
//! threads, and its public JWK written back; from then on it is read like the others.

use std::{sync::Arc, time::Duration};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use moka::Expiry;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::{
    key_set::{decode_key, file_key_set},
    AccountKeys, KeysError,
};
use crate::oidc::keys::SigningKey;
use crate::store::public_keys::{PublicKeyRow, PublicKeySet};

/// The members of a public RSA JWK; anything else in a stored JWK is left out.
const PUBLIC_MEMBERS: [&str; 8] = ["kty", "use", "alg", "kid", "n", "e", "x5c", "x5t"];

/// What the public JWKS cache is keyed by: the API's account, or the public URL's id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PublishedKey {
    Account(String),
    JwksId(String),
}

/// An account's public JWKS, ready to serve.
#[derive(Debug)]
pub struct PublishedJwks {
    /// The id of the public JWKS URL.
    pub jwks_id: String,
    /// `{"keys": [...]}`: the signing key first, then the others in rotation order.
    pub jwks: Value,
    /// `jwks` as compact JSON: the public route's body.
    pub body: Bytes,
    /// A strong `ETag` of `body` (quoted).
    pub etag: String,
    /// When the set next changes by itself (a key starts signing or is no longer published).
    changes_at: Option<DateTime<Utc>>,
}

impl PublishedJwks {
    /// The JWKS of `jwks` (the signer first), which stays as it is until `changes_at`.
    pub fn new(jwks_id: String, jwks: Value, changes_at: Option<DateTime<Utc>>) -> Self {
        let body = Bytes::from(jwks.to_string());
        Self {
            etag: etag_of(&body),
            jwks_id,
            jwks,
            body,
            changes_at,
        }
    }

    /// The number of keys published.
    pub fn len(&self) -> usize {
        self.jwks["keys"].as_array().map_or(0, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A strong entity tag: the quoted base64url of the first 128 bits of the body's SHA-256.
pub fn etag_of(body: &[u8]) -> String {
    format!(
        "\"{}\"",
        URL_SAFE_NO_PAD.encode(&Sha256::digest(body)[..16])
    )
}

/// Whether an `If-None-Match` header value matches `etag` (RFC 9110 §13.1.2: weak comparison,
/// a list, or `*`).
pub fn if_none_match(header: &str, etag: &str) -> bool {
    let bare = |tag: &str| tag.trim().trim_start_matches("W/").to_string();
    header
        .split(',')
        .any(|tag| tag.trim() == "*" || bare(tag) == bare(etag))
}

/// Entries expire when the set next changes by itself; `time_to_live` bounds them otherwise.
pub(super) struct UntilChange;

impl UntilChange {
    fn left(value: &Option<Arc<PublishedJwks>>) -> Option<Duration> {
        let at = value.as_ref()?.changes_at?;
        Some((at - Utc::now()).to_std().unwrap_or(Duration::ZERO))
    }
}

impl Expiry<PublishedKey, Option<Arc<PublishedJwks>>> for UntilChange {
    fn expire_after_create(
        &self,
        _key: &PublishedKey,
        value: &Option<Arc<PublishedJwks>>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Self::left(value)
    }

    fn expire_after_update(
        &self,
        _key: &PublishedKey,
        value: &Option<Arc<PublishedJwks>>,
        _updated_at: std::time::Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Self::left(value)
    }
}

impl AccountKeys {
    /// The account's public JWKS (keys made on first need).
    pub async fn published_for_account(
        &self,
        account: &str,
    ) -> Result<Arc<PublishedJwks>, KeysError> {
        let key = PublishedKey::Account(account.to_string());
        let found = self
            .published
            .try_get_with_by_ref(&key, async {
                self.load_published_for_account(account).await.map(Some)
            })
            .await
            .map_err(|e| (*e).clone())?;
        found.ok_or_else(|| KeysError::Store("the account's key set vanished".into()))
    }

    /// The public JWKS behind a public id, or `None` for an unknown id.
    pub async fn published_by_jwks_id(
        &self,
        jwks_id: &str,
    ) -> Result<Option<Arc<PublishedJwks>>, KeysError> {
        let key = PublishedKey::JwksId(jwks_id.to_string());
        self.published
            .try_get_with_by_ref(&key, self.load_published_by_jwks_id(jwks_id))
            .await
            .map_err(|e| (*e).clone())
    }

    /// Forgets the account's cached JWKS and caches it afresh (after a rotation here).
    pub(super) async fn republish(&self, account: &str) -> Result<(), KeysError> {
        self.published
            .invalidate(&PublishedKey::Account(account.to_string()))
            .await;
        let fresh = self.published_for_account(account).await?;
        self.published
            .insert(PublishedKey::JwksId(fresh.jwks_id.clone()), Some(fresh))
            .await;
        Ok(())
    }

    async fn load_published_for_account(
        &self,
        account: &str,
    ) -> Result<Arc<PublishedJwks>, KeysError> {
        let set = self.public_set(account).await?;
        self.publish(set).await
    }

    async fn load_published_by_jwks_id(
        &self,
        jwks_id: &str,
    ) -> Result<Option<Arc<PublishedJwks>>, KeysError> {
        let store = self.store.as_ref().ok_or(KeysError::NoStore)?;
        let Some(set) = store.public_key_set_by_jwks_id(jwks_id, Utc::now()).await? else {
            return Ok(None);
        };
        self.publish(set).await.map(Some)
    }

    /// The JWKS of a stored set: from the file keys for their account, else from the stored
    /// public JWKs (filled first for keys stored without one).
    async fn publish(&self, set: PublicKeySet) -> Result<Arc<PublishedJwks>, KeysError> {
        let now = Utc::now();
        if let Some(keys) = self.file_keys(&set.account_id) {
            let file_set = file_key_set(set.jwks_id, &keys);
            let jwks = file_set.jwks(now);
            return Ok(Arc::new(PublishedJwks::new(file_set.jwks_id, jwks, None)));
        }
        let mut listed = Vec::with_capacity(set.keys.len());
        for row in &set.keys {
            let jwk = match &row.public_jwk {
                Some(text) => public_members(text, &row.kid)?,
                None => self.fill_public_jwk(&set.account_id, &row.kid).await?,
            };
            listed.push((row, jwk));
        }
        let changes_at = next_change(&set.keys, now);
        // The signer first (the newest key whose time has come), then rotation order.
        let signer = listed.iter().rposition(|(row, _)| row.signs_from <= now);
        if let Some(signer) = signer {
            let signing = listed.remove(signer);
            listed.insert(0, signing);
        }
        let keys: Vec<Value> = listed.into_iter().map(|(_, jwk)| jwk).collect();
        let jwks = json!({ "keys": keys });
        Ok(Arc::new(PublishedJwks::new(set.jwks_id, jwks, changes_at)))
    }

    /// Decrypts a key stored without its public JWK (off the async threads), and stores the JWK.
    async fn fill_public_jwk(&self, account: &str, kid: &str) -> Result<Value, KeysError> {
        let store = self.store.as_ref().ok_or(KeysError::NoStore)?;
        let stored = store
            .private_key(account, kid)
            .await?
            .ok_or_else(|| KeysError::Store(format!("stored key {kid} vanished")))?;
        let key: SigningKey = decode_key(stored).await?;
        let jwk = key.jwk();
        store.set_public_jwk(account, kid, &jwk.to_string()).await?;
        tracing::info!(account_id = %account, kid, "public JWK of a stored signing key recorded");
        Ok(jwk)
    }
}

/// The public members of a stored JWK, checked to be the key it is stored for.
fn public_members(text: &str, kid: &str) -> Result<Value, KeysError> {
    let unreadable = || KeysError::Store(format!("stored key {kid} has an unreadable public JWK"));
    let Ok(Value::Object(stored)) = serde_json::from_str::<Value>(text) else {
        return Err(unreadable());
    };
    if stored.get("kid").and_then(Value::as_str) != Some(kid) {
        return Err(unreadable());
    }
    let members: Map<String, Value> = stored
        .into_iter()
        .filter(|(name, _)| PUBLIC_MEMBERS.contains(&name.as_str()))
        .collect();
    Ok(Value::Object(members))
}

/// The first time after `now` at which a key starts signing or stops being published.
pub(super) fn next_change(keys: &[PublicKeyRow], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    keys.iter()
        .flat_map(|k| [Some(k.signs_from), k.retire_at])
        .flatten()
        .filter(|at| *at > now)
        .min()
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    #[test]
    fn the_etag_follows_the_body_and_if_none_match_reads_lists_weak_tags_and_a_star() {
        let etag = etag_of(br#"{"keys":[]}"#);
        assert!(
            etag.starts_with('"') && etag.ends_with('"') && etag.len() == 24,
            "{etag}"
        );
        assert_ne!(etag, etag_of(br#"{"keys":[{}]}"#));
        assert!(if_none_match(&etag, &etag));
        assert!(if_none_match(&format!("\"x\", W/{etag}"), &etag));
        assert!(if_none_match("*", &etag));
        assert!(!if_none_match("\"x\"", &etag));
        assert!(!if_none_match("", &etag));
    }

    #[test]
    fn a_stored_jwk_keeps_its_public_members_only_and_must_be_its_keys() {
        let text = r#"{"kty":"RSA","kid":"k1","n":"AQ","e":"AQAB","d":"secret","use":"sig"}"#;
        let jwk = public_members(text, "k1").unwrap();
        assert!(jwk.get("d").is_none());
        assert_eq!(jwk["n"], "AQ");
        assert!(public_members(text, "k2").is_err());
        assert!(public_members("not json", "k1").is_err());
    }

    #[test]
    fn the_next_change_is_the_next_start_or_end() {
        let now = Utc::now();
        let row = |from: i64, until: Option<i64>| PublicKeyRow {
            kid: "k".into(),
            public_jwk: None,
            signs_from: now + TimeDelta::seconds(from),
            retire_at: until.map(|s| now + TimeDelta::seconds(s)),
        };
        let keys = [row(-100, Some(50)), row(30, None)];
        assert_eq!(next_change(&keys, now), Some(now + TimeDelta::seconds(30)));
        assert_eq!(next_change(&[row(-100, None)], now), None);
    }
}
