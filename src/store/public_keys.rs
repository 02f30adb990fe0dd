//! The public side of the accounts' signing keys: what the public JWKS is built from, read
//! without the encryption key and without decrypting anything (`account_signing_keys.public_jwk`),
//! and each key's times, which the signing-key choice and rotation need.

use chrono::{DateTime, Utc};
use sqlx::{any::AnyRow, Row};

use super::{Store, StoreError};
use crate::webhook::timestamp;

/// One published key without its private part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeyRow {
    pub kid: String,
    /// The public JWK as compact JSON; `None` for a key stored before the column existed.
    pub public_jwk: Option<String>,
    pub signs_from: DateTime<Utc>,
    pub retire_at: Option<DateTime<Utc>>,
}

/// An account's published keys (ordered by `signs_from`) and its public JWKS id.
#[derive(Debug, Clone)]
pub struct PublicKeySet {
    pub account_id: String,
    pub jwks_id: String,
    pub keys: Vec<PublicKeyRow>,
}

pub(super) fn parse_time(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| StoreError::Corrupt("a signing key's time".into()))
}

pub(super) fn public_row(row: &AnyRow) -> Result<PublicKeyRow, StoreError> {
    let retire_at: Option<String> = row.try_get("retire_at")?;
    Ok(PublicKeyRow {
        kid: row.try_get("kid")?,
        public_jwk: row.try_get("public_jwk")?,
        signs_from: parse_time(&row.try_get::<String, _>("signs_from")?)?,
        retire_at: retire_at.as_deref().map(parse_time).transpose()?,
    })
}

impl Store {
    /// The id of the account's public JWKS, or `None` when the account has no key set yet.
    pub(super) async fn jwks_id_of(&self, account: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT jwks_id FROM account_key_sets WHERE account_id = $1")
            .bind(account.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| row.try_get("jwks_id")).transpose()?)
    }

    /// The account whose public JWKS id is `jwks_id`, or `None` for an unknown id.
    pub(super) async fn account_of_jwks_id(
        &self,
        jwks_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT account_id FROM account_key_sets WHERE jwks_id = $1")
            .bind(jwks_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| row.try_get("account_id")).transpose()?)
    }

    /// The account's public key set with the keys still published at `now`, or `None` when the
    /// account has no set yet.
    pub async fn public_key_set(
        &self,
        account: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<PublicKeySet>, StoreError> {
        let Some(jwks_id) = self.jwks_id_of(account).await? else {
            return Ok(None);
        };
        let rows = sqlx::query(
            "SELECT kid, public_jwk, signs_from, retire_at FROM account_signing_keys \
             WHERE account_id = $1 AND (retire_at IS NULL OR retire_at > $2) \
             ORDER BY signs_from, kid",
        )
        .bind(account.to_string())
        .bind(timestamp(now))
        .fetch_all(&self.pool)
        .await?;
        Ok(Some(PublicKeySet {
            account_id: account.to_string(),
            jwks_id,
            keys: rows.iter().map(public_row).collect::<Result<_, _>>()?,
        }))
    }

    /// The public key set whose JWKS id is `jwks_id`, or `None` for an unknown id.
    pub async fn public_key_set_by_jwks_id(
        &self,
        jwks_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<PublicKeySet>, StoreError> {
        match self.account_of_jwks_id(jwks_id).await? {
            Some(account) => self.public_key_set(&account, now).await,
            None => Ok(None),
        }
    }

    /// Records the public JWK of a key stored without one (a key made before the column).
    pub async fn set_public_jwk(
        &self,
        account: &str,
        kid: &str,
        public_jwk: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE account_signing_keys SET public_jwk = $3 \
             WHERE account_id = $1 AND kid = $2 AND public_jwk IS NULL",
        )
        .bind(account.to_string())
        .bind(kid.to_string())
        .bind(public_jwk.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
