//! Storage of each account's signing keys for `private_key_jwt` (see [`crate::oidc::account_keys`]
//! for what they are used for).
//!
//! An account's key set is one `account_key_sets` row (its public, unguessable `jwks_id`) and its
//! `account_signing_keys` rows. Private keys are stored as PKCS#8 PEM encrypted with
//! `database.encryption_key`, bound to the account and the kid, so a key copied to another
//! account's set does not decrypt. Each key's public JWK is stored in clear beside it (see
//! [`super::public_keys`]), so publishing never decrypts. Keys whose `retire_at` has passed are
//! never read and are deleted at the next rotation, which also applies the rotation's plan
//! (replaced and capped keys, see [`crate::oidc::rotation`]) in one transaction per account.

use chrono::{DateTime, Utc};
use sqlx::{any::AnyRow, Row};

use super::{
    public_keys::{public_row, PublicKeyRow},
    Store, StoreError,
};
use crate::{secret::Secret, webhook::timestamp};

/// One stored key, decrypted.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub kid: String,
    /// PKCS#8 PEM of the private key.
    pub private_pem: Secret,
    pub certificate_pem: Option<String>,
    /// The public JWK as compact JSON (`None`: a key stored before it was kept).
    pub public_jwk: Option<String>,
    /// Signs from this time on (publication starts at creation).
    pub signs_from: DateTime<Utc>,
    /// Published until this time, when set.
    pub retire_at: Option<DateTime<Utc>>,
}

/// An account's published keys and the id of its public JWKS URL.
#[derive(Debug, Clone)]
pub struct StoredKeySet {
    pub account_id: String,
    pub jwks_id: String,
    pub keys: Vec<StoredKey>,
}

/// What [`Store::stored_key`] reads.
const KEY_COLUMNS: &str =
    "kid, private_key_enc, certificate_pem, public_jwk, signs_from, retire_at";

fn key_context(account: &str, kid: &str) -> String {
    format!("account_signing_keys|{}:{account}|{kid}", account.len())
}

/// What a rotation does to an account's existing keys, besides adding the new one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyChanges {
    /// Kids to delete (retired, replaced pending keys, beyond the cap).
    pub delete: Vec<String>,
    /// New ends of publication.
    pub retire: Vec<(String, DateTime<Utc>)>,
}

impl Store {
    /// The account's key set with the keys still published at `now`, or `None` when the account
    /// has none yet.
    pub async fn key_set(
        &self,
        account: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredKeySet>, StoreError> {
        let Some(jwks_id) = self.jwks_id_of(account).await? else {
            return Ok(None);
        };
        let keys = self.published_keys(account, now).await?;
        Ok(Some(StoredKeySet {
            account_id: account.to_string(),
            jwks_id,
            keys,
        }))
    }

    /// The key set whose public JWKS id is `jwks_id`.
    pub async fn key_set_by_jwks_id(
        &self,
        jwks_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredKeySet>, StoreError> {
        match self.account_of_jwks_id(jwks_id).await? {
            Some(account) => self.key_set(&account, now).await,
            None => Ok(None),
        }
    }

    async fn published_keys(
        &self,
        account: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<StoredKey>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM account_signing_keys WHERE account_id = $1 \
             AND (retire_at IS NULL OR retire_at > $2) ORDER BY signs_from, kid"
        ))
        .bind(account.to_string())
        .bind(timestamp(now))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| self.stored_key(account, row))
            .collect()
    }

    /// A row of [`KEY_COLUMNS`]: its public part as [`public_row`] reads it, the private key
    /// decrypted.
    fn stored_key(&self, account: &str, row: &AnyRow) -> Result<StoredKey, StoreError> {
        let cipher = self.cipher.as_ref().ok_or(StoreError::MissingKey)?;
        let public = public_row(row)?;
        let stored: String = row.try_get("private_key_enc")?;
        Ok(StoredKey {
            private_pem: cipher.decrypt(&stored, &key_context(account, &public.kid))?,
            certificate_pem: row.try_get("certificate_pem")?,
            public_jwk: public.public_jwk,
            signs_from: public.signs_from,
            retire_at: public.retire_at,
            kid: public.kid,
        })
    }

    /// One of the account's keys, decrypted (`None` when it is not stored).
    pub async fn private_key(
        &self,
        account: &str,
        kid: &str,
    ) -> Result<Option<StoredKey>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM account_signing_keys WHERE account_id = $1 AND kid = $2"
        ))
        .bind(account.to_string())
        .bind(kid.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| self.stored_key(account, &row)).transpose()
    }

    /// Creates the account's key set with its first key, unless another process created the
    /// set first; false then (the caller reads the set that won).
    pub async fn create_key_set(
        &self,
        account: &str,
        jwks_id: &str,
        first: &StoredKey,
    ) -> Result<bool, StoreError> {
        let encrypted = self.encrypt_key(account, first)?;
        let mut tx = self.pool.begin().await?;
        let created = sqlx::query(
            "INSERT INTO account_key_sets (account_id, jwks_id, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (account_id) DO NOTHING",
        )
        .bind(account.to_string())
        .bind(jwks_id.to_string())
        .bind(timestamp(Utc::now()))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if created {
            insert_key(&mut tx, account, first, encrypted).await?;
        }
        tx.commit().await?;
        Ok(created)
    }

    /// Creates an account's key set without keys (its keys are configured files), unless it
    /// exists.
    pub async fn create_empty_key_set(
        &self,
        account: &str,
        jwks_id: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO account_key_sets (account_id, jwks_id, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (account_id) DO NOTHING",
        )
        .bind(account.to_string())
        .bind(jwks_id.to_string())
        .bind(timestamp(Utc::now()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Adds `key` to an existing set, with the changes `plan` decides from the set's keys as
    /// they are (all of them, retired ones included). Rotations of one account are serialized:
    /// the transaction first writes the set's row, which holds a row lock on PostgreSQL and the
    /// write lock on SQLite until it ends, so two rotations never plan from the same keys.
    pub async fn add_key(
        &self,
        account: &str,
        key: &StoredKey,
        plan: impl FnOnce(&[PublicKeyRow]) -> KeyChanges,
    ) -> Result<(), StoreError> {
        let encrypted = self.encrypt_key(account, key)?;
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE account_key_sets SET jwks_id = jwks_id WHERE account_id = $1")
            .bind(account.to_string())
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query(
            "SELECT kid, public_jwk, signs_from, retire_at FROM account_signing_keys \
             WHERE account_id = $1 ORDER BY signs_from, kid",
        )
        .bind(account.to_string())
        .fetch_all(&mut *tx)
        .await?;
        let keys = rows.iter().map(public_row).collect::<Result<Vec<_>, _>>()?;
        let changes = plan(&keys);
        for kid in &changes.delete {
            sqlx::query("DELETE FROM account_signing_keys WHERE account_id = $1 AND kid = $2")
                .bind(account.to_string())
                .bind(kid.clone())
                .execute(&mut *tx)
                .await?;
        }
        for (kid, at) in &changes.retire {
            sqlx::query(
                "UPDATE account_signing_keys SET retire_at = $3 WHERE account_id = $1 AND kid = $2",
            )
            .bind(account.to_string())
            .bind(kid.clone())
            .bind(timestamp(*at))
            .execute(&mut *tx)
            .await?;
        }
        insert_key(&mut tx, account, key, encrypted).await?;
        tx.commit().await?;
        Ok(())
    }

    fn encrypt_key(&self, account: &str, key: &StoredKey) -> Result<String, StoreError> {
        let cipher = self.cipher.as_ref().ok_or(StoreError::NoKeyForSecret)?;
        Ok(cipher.encrypt(&key.private_pem, &key_context(account, &key.kid)))
    }

    /// Encrypts again with `database.encryption_key` every signing key that one of
    /// `database.decryption_keys` opened (a rotation of the encryption key); how many.
    pub(super) async fn reencrypt_stale_signing_keys(&self) -> Result<usize, StoreError> {
        let Some(cipher) = self.cipher.as_ref() else {
            return Ok(0);
        };
        let rows = sqlx::query("SELECT kid, account_id, private_key_enc FROM account_signing_keys")
            .fetch_all(&self.pool)
            .await?;
        let mut reencrypted = 0;
        for row in &rows {
            let kid: String = row.try_get("kid")?;
            let account: String = row.try_get("account_id")?;
            let stored: String = row.try_get("private_key_enc")?;
            let context = key_context(&account, &kid);
            let opened = cipher.open_noting(&stored, &context, &context)?;
            if !opened.stale {
                continue;
            }
            sqlx::query(
                "UPDATE account_signing_keys SET private_key_enc = $3 \
                 WHERE kid = $1 AND account_id = $2 AND private_key_enc = $4",
            )
            .bind(kid)
            .bind(account)
            .bind(cipher.encrypt(&opened.secret, &context))
            .bind(stored)
            .execute(&self.pool)
            .await?;
            reencrypted += 1;
        }
        Ok(reencrypted)
    }

    /// Start-up check when no webhook holds a secret: a stored signing key must decrypt.
    pub(super) async fn check_key_of_signing_keys(&self) -> Result<(), StoreError> {
        let row = sqlx::query(
            "SELECT kid, account_id, private_key_enc FROM account_signing_keys LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(()) };
        let cipher = self.cipher.as_ref().ok_or(StoreError::MissingKey)?;
        let kid: String = row.try_get("kid")?;
        let account: String = row.try_get("account_id")?;
        let stored: String = row.try_get("private_key_enc")?;
        cipher.decrypt(&stored, &key_context(&account, &kid))?;
        Ok(())
    }
}

async fn insert_key(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    account: &str,
    key: &StoredKey,
    encrypted: String,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO account_signing_keys \
         (kid, account_id, private_key_enc, certificate_pem, created_at, signs_from, retire_at, \
         public_jwk) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(key.kid.clone())
    .bind(account.to_string())
    .bind(encrypted)
    .bind(key.certificate_pem.clone())
    .bind(timestamp(Utc::now()))
    .bind(timestamp(key.signs_from))
    .bind(key.retire_at.map(timestamp))
    .bind(key.public_jwk.clone())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
