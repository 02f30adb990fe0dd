//! Each account's signing keys: the tenant boundary of `private_key_jwt`.
//!
//! An account's client assertions are signed only with that account's own RSA keys, so a
//! customer's identity provider, which trusts that account's public keys, can never be made to
//! issue a token to a webhook of another account that names the same client. Keys are made on
//! first need (the first `GET /v1/webhooks/oidc_keys` or the first token request), kept in the
//! database encrypted with `database.encryption_key`, and published as the account's JWKS, both
//! behind the account's API token and at a public URL named by an unguessable id of its own.
//!
//! Rotation adds a key that is published at once and signs only after
//! `oidc.key_rotation_delay` (identity providers that cache the JWKS pick it up first); the
//! keys it replaces stay published for `oidc.key_retirement_grace` after that, then go.
//!
//! `oidc.signing_keys` (PEM files) remains for a deployment that serves one account: with
//! `oidc.signing_keys_account` naming it, that account's keys are the files (the first signs),
//! and it cannot be rotated through the API. Every other account has its own keys as above.
//!
//! Invariants: the signing key for account A is chosen from A's set only; no private key leaves
//! this module except as the signer handed to the assertion; errors name no key material.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use moka::future::Cache;
use serde_json::{json, Value};

use super::{
    keygen::{generate_key, self_signed_certificate, CERTIFICATE_VALIDITY},
    keys::{SigningKey, SigningKeys},
};
use crate::{
    config::OidcConfig,
    secret::Secret,
    store::{
        keys::{StoredKey, StoredKeySet},
        Store, StoreError,
    },
};

/// Size of the keys made for accounts.
const ACCOUNT_KEY_BITS: usize = 2048;
/// The common name of the self-signed certificate each key gets (for Microsoft Entra, which
/// takes certificates rather than a JWKS). It says nothing about the account.
const CERTIFICATE_NAME: &str = "webhook-worker client assertions";

#[derive(Debug, Clone, thiserror::Error)]
pub enum KeysError {
    #[error("account signing keys need database.encryption_key, which is not configured")]
    NoEncryptionKey,
    #[error("this account's signing keys come from oidc.signing_keys; rotate them by editing those files")]
    FileManaged,
    #[error("account signing keys are kept in the database, which this process does not use")]
    NoStore,
    #[error("cannot read or store the account's signing keys: {0}")]
    Store(String),
    #[error("cannot make a signing key: {0}")]
    Generate(String),
}

impl From<StoreError> for KeysError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NoKeyForSecret | StoreError::MissingKey => KeysError::NoEncryptionKey,
            other => KeysError::Store(other.to_string()),
        }
    }
}

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

/// What a rotation did.
#[derive(Debug, Clone)]
pub struct Rotation {
    pub kid: String,
    pub signs_from: DateTime<Utc>,
    /// When the keys it replaces stop being published.
    pub previous_retire_at: DateTime<Utc>,
}

/// The accounts' signing keys. Cheap to clone.
#[derive(Clone)]
pub struct AccountKeys {
    store: Option<Store>,
    /// The single account whose keys are `oidc.signing_keys`, and those keys.
    files: Option<(String, Arc<SigningKeys>)>,
    /// Key sets for signing, re-read after a short while so a rotation made by another replica
    /// is seen well within the grace period.
    signing_cache: Cache<String, Arc<KeySet>>,
    rotation_delay: Duration,
    retirement_grace: Duration,
}

impl std::fmt::Debug for AccountKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountKeys")
            .field("file_account", &self.files.as_ref().map(|(a, _)| a))
            .field("cached_sets", &self.signing_cache.entry_count())
            .finish_non_exhaustive()
    }
}

impl AccountKeys {
    /// Keys per account in `store`, and the file keys of `config` for their one account.
    pub fn new(store: Option<Store>, config: &OidcConfig) -> Result<Self, super::KeyError> {
        let account = &config.signing_keys_account;
        let files = match config.signing_keys.is_empty() || account.is_empty() {
            true => None,
            false => Some((
                account.clone(),
                Arc::new(SigningKeys::load(&config.signing_keys)?),
            )),
        };
        let grace = config.key_retirement_grace.0;
        // Re-read sets for signing well within the grace, so no replica signs with a key
        // after it stopped being published.
        let cache_for = (grace / 4).clamp(Duration::from_millis(100), Duration::from_secs(10));
        Ok(Self {
            store,
            files,
            signing_cache: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(cache_for)
                .build(),
            rotation_delay: config.key_rotation_delay.0,
            retirement_grace: grace,
        })
    }

    /// The file keys only, for one account and no database (tests, and tools that sign).
    pub fn from_files(account: &str, keys: Arc<SigningKeys>) -> Self {
        Self {
            store: None,
            files: Some((account.to_string(), keys)),
            signing_cache: Cache::builder().max_capacity(1).build(),
            rotation_delay: Duration::ZERO,
            retirement_grace: Duration::ZERO,
        }
    }

    /// How long a rotated-in key is published before it signs (`oidc.key_rotation_delay`).
    pub fn rotation_delay(&self) -> Duration {
        self.rotation_delay
    }

    /// The key that signs `account`'s client assertions now (made on first need).
    pub async fn signing_key(&self, account: &str) -> Result<SigningKey, KeysError> {
        if let Some(keys) = self.file_keys(account) {
            return keys.signing().cloned().ok_or(KeysError::FileManaged);
        }
        let set = self
            .signing_cache
            .try_get_with_by_ref(account, async { self.current(account).await.map(Arc::new) })
            .await
            .map_err(|e| (*e).clone())?;
        set.signing_at(Utc::now())
            .cloned()
            .ok_or_else(|| KeysError::Store("the account's key set is empty".into()))
    }

    /// The account's key set as stored now (made on first need).
    pub async fn current(&self, account: &str) -> Result<KeySet, KeysError> {
        let store = self.store.as_ref().ok_or(KeysError::NoStore)?;
        if let Some(keys) = self.file_keys(account) {
            let jwks_id = self.jwks_id_for_file_account(store, account).await?;
            return Ok(file_key_set(jwks_id, &keys));
        }
        let now = Utc::now();
        if let Some(set) = store.key_set(account, now).await? {
            if !set.keys.is_empty() {
                return decode_set(set);
            }
        }
        let first = new_key(now, None).await?;
        store
            .create_key_set(account, &new_jwks_id(), &first)
            .await?;
        // Whoever won the race, the stored set is the account's.
        let set = store
            .key_set(account, Utc::now())
            .await?
            .ok_or_else(|| KeysError::Store("the key set vanished after it was made".into()))?;
        decode_set(set)
    }

    /// The set behind a public JWKS id, or `None` for an unknown id.
    pub async fn by_jwks_id(&self, jwks_id: &str) -> Result<Option<KeySet>, KeysError> {
        let store = self.store.as_ref().ok_or(KeysError::NoStore)?;
        let Some(set) = store.key_set_by_jwks_id(jwks_id, Utc::now()).await? else {
            return Ok(None);
        };
        if let Some(keys) = self.file_keys(&set.account_id) {
            return Ok(Some(file_key_set(set.jwks_id, &keys)));
        }
        decode_set(set).map(Some)
    }

    /// Adds a key that is published now and signs after `oidc.key_rotation_delay`; the keys
    /// it replaces stay published `oidc.key_retirement_grace` longer.
    pub async fn rotate(&self, account: &str) -> Result<Rotation, KeysError> {
        if self.file_keys(account).is_some() {
            return Err(KeysError::FileManaged);
        }
        let store = self.store.as_ref().ok_or(KeysError::NoStore)?;
        // Make sure the set exists, so the new key is an addition and not the first key.
        self.current(account).await?;
        let now = Utc::now();
        let signs_from = now + chrono_duration(self.rotation_delay);
        let previous_retire_at = signs_from + chrono_duration(self.retirement_grace);
        let key = new_key(signs_from, None).await?;
        store
            .add_key(account, &key, previous_retire_at, now)
            .await?;
        self.signing_cache.invalidate(account).await;
        tracing::info!(account_id = %account, kid = %key.kid, %signs_from, "signing key added");
        Ok(Rotation {
            kid: key.kid,
            signs_from,
            previous_retire_at,
        })
    }

    /// Whether `oidc.signing_keys` (files, not the database) hold `account`'s keys.
    pub fn has_file_keys(&self, account: &str) -> bool {
        self.file_keys(account).is_some()
    }

    fn file_keys(&self, account: &str) -> Option<Arc<SigningKeys>> {
        self.files
            .as_ref()
            .filter(|(file_account, _)| file_account == account)
            .map(|(_, keys)| keys.clone())
    }

    /// The file account's public JWKS id, kept in the database like any other account's.
    async fn jwks_id_for_file_account(
        &self,
        store: &Store,
        account: &str,
    ) -> Result<String, KeysError> {
        if let Some(set) = store.key_set(account, Utc::now()).await? {
            return Ok(set.jwks_id);
        }
        // A set row without keys: the keys are the files.
        store.create_empty_key_set(account, &new_jwks_id()).await?;
        store
            .key_set(account, Utc::now())
            .await?
            .map(|set| set.jwks_id)
            .ok_or_else(|| KeysError::Store("the key set vanished after it was made".into()))
    }
}

fn file_key_set(jwks_id: String, keys: &SigningKeys) -> KeySet {
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

fn decode_set(set: StoredKeySet) -> Result<KeySet, KeysError> {
    let keys = set
        .keys
        .into_iter()
        .map(|stored| {
            let pem = match &stored.certificate_pem {
                Some(certificate) => format!("{}{certificate}", stored.private_pem.expose()),
                None => stored.private_pem.expose().to_string(),
            };
            let origin = std::path::Path::new("(stored key)");
            let key = SigningKey::from_pem(origin, &pem).map_err(|_| {
                KeysError::Store(format!("stored key {} is not usable", stored.kid))
            })?;
            Ok(AccountKey {
                key,
                signs_from: stored.signs_from,
                retire_at: stored.retire_at,
            })
        })
        .collect::<Result<_, KeysError>>()?;
    Ok(KeySet {
        jwks_id: set.jwks_id,
        keys,
    })
}

/// A fresh key with its self-signed certificate. RSA generation takes a while: off the
/// async threads.
async fn new_key(
    signs_from: DateTime<Utc>,
    retire_at: Option<DateTime<Utc>>,
) -> Result<StoredKey, KeysError> {
    tokio::task::spawn_blocking(move || {
        let private =
            generate_key(ACCOUNT_KEY_BITS).map_err(|e| KeysError::Generate(e.to_string()))?;
        let certificate = self_signed_certificate(&private, CERTIFICATE_NAME, CERTIFICATE_VALIDITY)
            .map_err(|e| KeysError::Generate(e.to_string()))?;
        let pem = format!("{private}{certificate}");
        let kid = SigningKey::from_pem(std::path::Path::new("(new key)"), &pem)
            .map_err(|e| KeysError::Generate(e.to_string()))?
            .kid()
            .to_string();
        Ok(StoredKey {
            kid,
            private_pem: Secret::new(private),
            certificate_pem: Some(certificate),
            signs_from,
            retire_at,
        })
    })
    .await
    .map_err(|_| KeysError::Generate("the key generator stopped".into()))?
}

/// 128 random bits, base64url: unguessable, and unrelated to the account id.
fn new_jwks_id() -> String {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>())
}

fn chrono_duration(duration: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(duration).unwrap_or(chrono::TimeDelta::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        let pem = generate_key(2048).unwrap();
        SigningKey::from_pem(std::path::Path::new("k"), &pem).unwrap()
    }

    #[test]
    fn the_newest_key_whose_time_has_come_signs_and_is_listed_first() {
        let now = Utc::now();
        let (old, new) = (key(), key());
        let set = KeySet {
            jwks_id: "x".into(),
            keys: vec![
                AccountKey {
                    key: old.clone(),
                    signs_from: now - chrono::TimeDelta::hours(1),
                    retire_at: Some(now + chrono::TimeDelta::hours(2)),
                },
                AccountKey {
                    key: new.clone(),
                    signs_from: now + chrono::TimeDelta::hours(1),
                    retire_at: None,
                },
            ],
        };
        assert_eq!(set.signing_at(now).unwrap().kid(), old.kid());
        let later = now + chrono::TimeDelta::minutes(61);
        assert_eq!(set.signing_at(later).unwrap().kid(), new.kid());
        let jwks = set.jwks(now);
        assert_eq!(jwks["keys"][0]["kid"], old.kid(), "the signer first");
        assert_eq!(
            jwks["keys"][1]["kid"],
            new.kid(),
            "the next key is published already"
        );
        assert_eq!(set.jwks(later)["keys"][0]["kid"], new.kid());
    }

    #[test]
    fn jwks_ids_are_long_random_and_url_safe() {
        let (a, b) = (new_jwks_id(), new_jwks_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 22);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }

    #[tokio::test]
    async fn an_account_not_served_by_the_files_gets_no_file_key() {
        let keys = AccountKeys::from_files("acct-a", Arc::new(SigningKeys::new(vec![key()])));
        assert!(keys.signing_key("acct-a").await.is_ok());
        assert!(matches!(
            keys.signing_key("acct-b").await,
            Err(KeysError::NoStore)
        ));
    }
}
