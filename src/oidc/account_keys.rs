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
//! keys it replaces stay published for `oidc.key_retirement_grace` after that, then go. A
//! rotation replaces a key that is still pending, and an account publishes at most
//! [`super::rotation::MAX_PUBLISHED_KEYS`] keys (see [`super::rotation`]).
//!
//! The public JWKS is served from the public JWKs stored with the keys ([`published`]);
//! signing decrypts only the signing key, off the async threads, and keeps it until its set next
//! changes or a short while has passed.
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

pub mod key_set;
pub mod published;

use self::{
    key_set::{decode_key, decode_set, file_key_set},
    published::{next_change, PublishedJwks, PublishedKey},
};
use super::{
    keygen::{generate_key, self_signed_certificate, CERTIFICATE_VALIDITY},
    keys::{SigningKey, SigningKeys},
    rotation::{plan, RotationTimes},
};
use crate::{
    config::OidcConfig,
    secret::Secret,
    store::{keys::StoredKey, public_keys::PublicKeySet, Store, StoreError},
};
pub use key_set::{AccountKey, KeySet};

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

/// What a rotation did.
#[derive(Debug, Clone)]
pub struct Rotation {
    pub kid: String,
    pub signs_from: DateTime<Utc>,
    /// When the keys it replaces stop being published.
    pub previous_retire_at: DateTime<Utc>,
}

/// The key that signs for an account, and when its set next changes by itself.
struct Signer {
    key: SigningKey,
    changes_at: Option<DateTime<Utc>>,
}

/// A signer is kept until its set's next change (a pending key starts signing).
struct SignerExpiry;

impl moka::Expiry<String, Arc<Signer>> for SignerExpiry {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Arc<Signer>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        let at = value.changes_at?;
        Some((at - Utc::now()).to_std().unwrap_or(Duration::ZERO))
    }
}

/// The accounts' signing keys. Cheap to clone.
#[derive(Clone)]
pub struct AccountKeys {
    pub(super) store: Option<Store>,
    /// The single account whose keys are `oidc.signing_keys`, and those keys.
    files: Option<(String, Arc<SigningKeys>)>,
    /// The signing key of each account, re-read after a short while so a rotation made by
    /// another replica is seen well within the grace period.
    signing_cache: Cache<String, Arc<Signer>>,
    /// The public JWKS of each account, by account and by public id (see [`published`]).
    pub(super) published: Cache<PublishedKey, Option<Arc<PublishedJwks>>>,
    published_ttl: Duration,
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
        // Other replicas' rotations show in the public JWKS within this; a quarter of the
        // rotation delay, so a new key is published everywhere long before it signs.
        let published_ttl = (config.key_rotation_delay.0 / 4)
            .clamp(Duration::from_millis(100), Duration::from_secs(5));
        Ok(Self {
            store,
            files,
            signing_cache: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(cache_for)
                .expire_after(SignerExpiry)
                .build(),
            published: published_cache(published_ttl),
            published_ttl,
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
            published: published_cache(Duration::from_secs(5)),
            published_ttl: Duration::from_secs(5),
            rotation_delay: Duration::ZERO,
            retirement_grace: Duration::ZERO,
        }
    }

    /// How long a rotated-in key is published before it signs (`oidc.key_rotation_delay`).
    pub fn rotation_delay(&self) -> Duration {
        self.rotation_delay
    }

    /// How long this process may serve a public JWKS that another process changed.
    pub fn published_ttl(&self) -> Duration {
        self.published_ttl
    }

    /// The key that signs `account`'s client assertions now (made on first need).
    pub async fn signing_key(&self, account: &str) -> Result<SigningKey, KeysError> {
        if let Some(keys) = self.file_keys(account) {
            return keys.signing().cloned().ok_or(KeysError::FileManaged);
        }
        let signer = self
            .signing_cache
            .try_get_with_by_ref(account, async {
                self.load_signer(account).await.map(Arc::new)
            })
            .await
            .map_err(|e| (*e).clone())?;
        Ok(signer.key.clone())
    }

    /// Decrypts the one key that signs now: the newest whose time has come (before any has,
    /// which cannot happen for a set made here, the oldest).
    async fn load_signer(&self, account: &str) -> Result<Signer, KeysError> {
        let store = self.store.as_ref().ok_or(KeysError::NoStore)?;
        let set = self.public_set(account).await?;
        let now = Utc::now();
        let row = set
            .keys
            .iter()
            .rev()
            .find(|k| k.signs_from <= now)
            .or_else(|| set.keys.first())
            .ok_or_else(|| KeysError::Store("the account's key set is empty".into()))?;
        let stored = store
            .private_key(account, &row.kid)
            .await?
            .ok_or_else(|| KeysError::Store(format!("stored key {} vanished", row.kid)))?;
        Ok(Signer {
            key: decode_key(stored).await?,
            changes_at: next_change(&set.keys, now),
        })
    }

    /// The account's public key set as stored now, made with a first key when it has none.
    pub(super) async fn public_set(&self, account: &str) -> Result<PublicKeySet, KeysError> {
        let store = self.store.as_ref().ok_or(KeysError::NoStore)?;
        if self.file_keys(account).is_some() {
            let jwks_id = self.jwks_id_for_file_account(store, account).await?;
            return Ok(PublicKeySet {
                account_id: account.to_string(),
                jwks_id,
                keys: Vec::new(),
            });
        }
        if let Some(set) = store.public_key_set(account, Utc::now()).await? {
            if !set.keys.is_empty() {
                return Ok(set);
            }
        }
        let first = new_key(Utc::now(), None).await?;
        store
            .create_key_set(account, &new_jwks_id(), &first)
            .await?;
        // Whoever won the race, the stored set is the account's.
        store
            .public_key_set(account, Utc::now())
            .await?
            .filter(|set| !set.keys.is_empty())
            .ok_or_else(|| KeysError::Store("the key set vanished after it was made".into()))
    }

    /// The account's key set as stored now, decrypted (made on first need). For tools and
    /// tests: serving and signing never decrypt more than the signing key.
    pub async fn current(&self, account: &str) -> Result<KeySet, KeysError> {
        let store = self.store.as_ref().ok_or(KeysError::NoStore)?;
        if let Some(keys) = self.file_keys(account) {
            let jwks_id = self.jwks_id_for_file_account(store, account).await?;
            return Ok(file_key_set(jwks_id, &keys));
        }
        self.public_set(account).await?;
        let set = store
            .key_set(account, Utc::now())
            .await?
            .ok_or_else(|| KeysError::Store("the key set vanished after it was made".into()))?;
        decode_set(set).await
    }

    /// Adds a key that is published now and signs after `oidc.key_rotation_delay`; the keys
    /// it replaces stay published `oidc.key_retirement_grace` longer. A key still pending is
    /// replaced, and older keys beyond the cap go (see [`super::rotation`]).
    pub async fn rotate(&self, account: &str) -> Result<Rotation, KeysError> {
        if self.file_keys(account).is_some() {
            return Err(KeysError::FileManaged);
        }
        let store = self.store.as_ref().ok_or(KeysError::NoStore)?;
        // Make sure the set exists, so the new key is an addition and not the first key.
        self.public_set(account).await?;
        let signs_from = Utc::now() + chrono_duration(self.rotation_delay);
        let key = new_key(signs_from, None).await?;
        // Planned with the time the store reads the keys at, not the time generation began.
        let (grace, margin) = (self.retirement_grace, self.signing_cache_ttl());
        let mut previous_retire_at = signs_from;
        store
            .add_key(account, &key, |keys| {
                let times = RotationTimes {
                    now: Utc::now(),
                    signs_from,
                    grace,
                    margin,
                };
                previous_retire_at = times.previous_retire_at();
                plan(keys, times)
            })
            .await?;
        self.signing_cache.invalidate(account).await;
        self.republish(account).await?;
        tracing::info!(account_id = %account, kid = %key.kid, %signs_from, "signing key added");
        Ok(Rotation {
            kid: key.kid,
            signs_from,
            previous_retire_at,
        })
    }

    /// How long a replica may sign with a key it read (the signing cache's time to live).
    fn signing_cache_ttl(&self) -> Duration {
        self.signing_cache
            .policy()
            .time_to_live()
            .unwrap_or(Duration::ZERO)
    }

    /// Whether `oidc.signing_keys` (files, not the database) hold `account`'s keys.
    pub fn has_file_keys(&self, account: &str) -> bool {
        self.file_keys(account).is_some()
    }

    pub(super) fn file_keys(&self, account: &str) -> Option<Arc<SigningKeys>> {
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

fn published_cache(ttl: Duration) -> Cache<PublishedKey, Option<Arc<PublishedJwks>>> {
    Cache::builder()
        .max_capacity(100_000)
        .time_to_live(ttl)
        .expire_after(published::UntilChange)
        .build()
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
        let key = SigningKey::from_pem(std::path::Path::new("(new key)"), &pem)
            .map_err(|e| KeysError::Generate(e.to_string()))?;
        Ok(StoredKey {
            kid: key.kid().to_string(),
            private_pem: Secret::new(private),
            certificate_pem: Some(certificate),
            public_jwk: Some(key.jwk().to_string()),
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
mod tests;
