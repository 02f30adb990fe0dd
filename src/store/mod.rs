//! The webhook registry's storage: SQLite (embedded default, one replica) or PostgreSQL (several
//! replicas), through one portable SQL dialect on sqlx's `Any` driver. Migrations run at connect.
//! Secrets are encrypted here on the way in and decrypted on the way out; nothing above this
//! module sees ciphertext, and nothing below it sees plain text.

mod cipher;
mod failing;

use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::{any::AnyRow, AnyPool, Row};
use uuid::Uuid;

pub use cipher::{Cipher, DecryptError};

use crate::{
    secret::Secret,
    webhook::{timestamp, OidcAuthMethod, Webhook},
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Decrypt(#[from] DecryptError),
    #[error("the database holds encrypted secrets, but database.encryption_key is not set")]
    MissingKey,
    #[error("cannot store a secret: database.encryption_key is not set")]
    NoKeyForSecret,
    #[error("a stored row is corrupt: {0}")]
    Corrupt(String),
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    cipher: Option<Cipher>,
}

const COLUMNS: &str = "id, account_id, url, secret_enc, enabled_events, include, disabled_at, \
    created_at, updated_at, oidc_auth_method, oidc_client_id, oidc_client_secret_enc, \
    oidc_token_endpoint, oidc_resource_uri, oidc_scope, oidc_access_token_ttl_seconds";

impl Store {
    /// Connects, runs migrations, and checks that the key can read the stored secrets.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        key: Option<[u8; 32]>,
    ) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let url = prepare_sqlite(url)?;
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(&url)
            .await?;
        if url.starts_with("sqlite:") {
            // WAL lets the API write while the registry reloads.
            sqlx::query("PRAGMA journal_mode=WAL")
                .execute(&pool)
                .await?;
        }
        sqlx::migrate!("./migrations").run(&pool).await?;
        let store = Store {
            pool,
            cipher: key.map(Cipher::new),
        };
        store.check_key().await?;
        Ok(store)
    }

    async fn check_key(&self) -> Result<(), StoreError> {
        let row = sqlx::query(
            "SELECT id, secret_enc, oidc_client_secret_enc FROM webhooks \
             WHERE secret_enc IS NOT NULL OR oidc_client_secret_enc IS NOT NULL LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(()) };
        let Some(cipher) = &self.cipher else {
            return Err(StoreError::MissingKey);
        };
        let id: String = row.try_get("id")?;
        for column in ["secret_enc", "oidc_client_secret_enc"] {
            if let Some(stored) = row.try_get::<Option<String>, _>(column)? {
                cipher.decrypt(&stored, &context(&id, column))?;
            }
        }
        Ok(())
    }

    /// Whether secrets can be stored (an encryption key is configured).
    pub fn can_store_secrets(&self) -> bool {
        self.cipher.is_some()
    }

    pub async fn insert(&self, webhook: &Webhook) -> Result<(), StoreError> {
        let row = self.encode(webhook)?;
        sqlx::query(&format!(
            "INSERT INTO webhooks ({COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
        ))
        .bind(row.id)
        .bind(row.account_id)
        .bind(row.url)
        .bind(row.secret_enc)
        .bind(row.enabled_events)
        .bind(row.include)
        .bind(row.disabled_at)
        .bind(row.created_at)
        .bind(row.updated_at)
        .bind(row.oidc_auth_method)
        .bind(row.oidc_client_id)
        .bind(row.oidc_client_secret_enc)
        .bind(row.oidc_token_endpoint)
        .bind(row.oidc_resource_uri)
        .bind(row.oidc_scope)
        .bind(row.oidc_access_token_ttl_seconds)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Replaces a webhook of the account. Returns false when it does not exist.
    pub async fn update(&self, webhook: &Webhook) -> Result<bool, StoreError> {
        let row = self.encode(webhook)?;
        let result = sqlx::query(
            "UPDATE webhooks SET url = $3, secret_enc = $4, enabled_events = $5, include = $6, \
             disabled_at = $7, updated_at = $8, oidc_auth_method = $9, oidc_client_id = $10, \
             oidc_client_secret_enc = $11, oidc_token_endpoint = $12, oidc_resource_uri = $13, \
             oidc_scope = $14, oidc_access_token_ttl_seconds = $15 \
             WHERE id = $1 AND account_id = $2",
        )
        .bind(row.id)
        .bind(row.account_id)
        .bind(row.url)
        .bind(row.secret_enc)
        .bind(row.enabled_events)
        .bind(row.include)
        .bind(row.disabled_at)
        .bind(row.updated_at)
        .bind(row.oidc_auth_method)
        .bind(row.oidc_client_id)
        .bind(row.oidc_client_secret_enc)
        .bind(row.oidc_token_endpoint)
        .bind(row.oidc_resource_uri)
        .bind(row.oidc_scope)
        .bind(row.oidc_access_token_ttl_seconds)
        .execute(&self.pool)
        .await?;
        if webhook.disabled_at.is_none() {
            // Enabled (or re-enabled): its failures so far no longer count toward disabling it.
            self.clear_failing(webhook.id).await?;
        }
        Ok(result.rows_affected() > 0)
    }

    /// Deletes a webhook of the account and returns it, or `None` when it does not exist.
    pub async fn delete(&self, account_id: &str, id: Uuid) -> Result<Option<Webhook>, StoreError> {
        // One statement (SQLite 3.35+ and PostgreSQL both RETURNING): no window between reading
        // the row and deleting it.
        let row = sqlx::query(&format!(
            "DELETE FROM webhooks WHERE id = $1 AND account_id = $2 RETURNING {COLUMNS}"
        ))
        .bind(id.to_string())
        .bind(account_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        if row.is_some() {
            self.clear_failing(id).await?;
        }
        row.map(|row| self.decode(&row)).transpose()
    }

    pub async fn get(&self, account_id: &str, id: Uuid) -> Result<Option<Webhook>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM webhooks WHERE id = $1 AND account_id = $2"
        ))
        .bind(id.to_string())
        .bind(account_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| self.decode(&row)).transpose()
    }

    /// One page of the account's webhooks, newest first, and the account's total.
    pub async fn list(
        &self,
        account_id: &str,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<Webhook>, i64), StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM webhooks WHERE account_id = $1 \
             ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
        ))
        .bind(account_id.to_string())
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query("SELECT COUNT(*) AS n FROM webhooks WHERE account_id = $1")
            .bind(account_id.to_string())
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        let webhooks = rows
            .iter()
            .map(|row| self.decode(row))
            .collect::<Result<_, _>>()?;
        Ok((webhooks, total))
    }

    /// Every webhook of every account: what the registry snapshot is built from.
    pub async fn all(&self) -> Result<Vec<Webhook>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM webhooks"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| self.decode(row)).collect()
    }

    /// Whether the database answers; for `/readyz`.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn encrypt(
        &self,
        secret: Option<&Secret>,
        id: &str,
        column: &str,
    ) -> Result<Option<String>, StoreError> {
        match (secret, &self.cipher) {
            (None, _) => Ok(None),
            (Some(_), None) => Err(StoreError::NoKeyForSecret),
            (Some(secret), Some(cipher)) => Ok(Some(cipher.encrypt(secret, &context(id, column)))),
        }
    }

    fn encode(&self, webhook: &Webhook) -> Result<EncodedRow, StoreError> {
        let id = webhook.id.to_string();
        Ok(EncodedRow {
            secret_enc: self.encrypt(webhook.secret.as_ref(), &id, "secret_enc")?,
            oidc_client_secret_enc: self.encrypt(
                webhook.oidc_client_secret.as_ref(),
                &id,
                "oidc_client_secret_enc",
            )?,
            id,
            account_id: webhook.account_id.clone(),
            url: webhook.url.clone(),
            enabled_events: serde_json::to_string(&webhook.enabled_events)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            include: webhook.include.clone(),
            disabled_at: webhook.disabled_at.map(timestamp),
            created_at: timestamp(webhook.created_at),
            updated_at: timestamp(webhook.updated_at),
            oidc_auth_method: webhook.oidc_auth_method.map(|m| m.as_str().to_string()),
            oidc_client_id: webhook.oidc_client_id.clone(),
            oidc_token_endpoint: webhook.oidc_token_endpoint.clone(),
            oidc_resource_uri: webhook.oidc_resource_uri.clone(),
            oidc_scope: webhook.oidc_scope.clone(),
            oidc_access_token_ttl_seconds: webhook.oidc_access_token_ttl_seconds,
        })
    }

    fn decode(&self, row: &AnyRow) -> Result<Webhook, StoreError> {
        let id: String = row.try_get("id")?;
        let decrypt = |column: &str| -> Result<Option<Secret>, StoreError> {
            match row.try_get::<Option<String>, _>(column)? {
                None => Ok(None),
                Some(stored) => {
                    let cipher = self.cipher.as_ref().ok_or(StoreError::MissingKey)?;
                    Ok(Some(cipher.decrypt(&stored, &context(&id, column))?))
                }
            }
        };
        let time = |column: &str| -> Result<Option<DateTime<Utc>>, StoreError> {
            row.try_get::<Option<String>, _>(column)?
                .map(|text| {
                    DateTime::parse_from_rfc3339(&text)
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(|_| StoreError::Corrupt(format!("{column} of webhook {id}")))
                })
                .transpose()
        };
        let required_time = |column: &str| {
            time(column)?.ok_or_else(|| StoreError::Corrupt(format!("{column} of webhook {id}")))
        };
        let method = row
            .try_get::<Option<String>, _>("oidc_auth_method")?
            .map(|m| {
                OidcAuthMethod::parse(&m)
                    .ok_or_else(|| StoreError::Corrupt(format!("oidc_auth_method of webhook {id}")))
            })
            .transpose()?;
        let events: String = row.try_get("enabled_events")?;
        Ok(Webhook {
            id: Uuid::from_str(&id).map_err(|_| StoreError::Corrupt(format!("id {id}")))?,
            account_id: row.try_get("account_id")?,
            url: row.try_get("url")?,
            secret: decrypt("secret_enc")?,
            enabled_events: serde_json::from_str(&events)
                .map_err(|_| StoreError::Corrupt(format!("enabled_events of webhook {id}")))?,
            include: row.try_get("include")?,
            disabled_at: time("disabled_at")?,
            created_at: required_time("created_at")?,
            updated_at: required_time("updated_at")?,
            oidc_auth_method: method,
            oidc_client_id: row.try_get("oidc_client_id")?,
            oidc_client_secret: decrypt("oidc_client_secret_enc")?,
            oidc_token_endpoint: row.try_get("oidc_token_endpoint")?,
            oidc_resource_uri: row.try_get("oidc_resource_uri")?,
            oidc_scope: row.try_get("oidc_scope")?,
            oidc_access_token_ttl_seconds: row.try_get("oidc_access_token_ttl_seconds")?,
        })
    }
}

struct EncodedRow {
    id: String,
    account_id: String,
    url: String,
    secret_enc: Option<String>,
    enabled_events: String,
    include: Option<String>,
    disabled_at: Option<String>,
    created_at: String,
    updated_at: String,
    oidc_auth_method: Option<String>,
    oidc_client_id: Option<String>,
    oidc_client_secret_enc: Option<String>,
    oidc_token_endpoint: Option<String>,
    oidc_resource_uri: Option<String>,
    oidc_scope: Option<String>,
    oidc_access_token_ttl_seconds: Option<i64>,
}

fn context(id: &str, column: &str) -> String {
    format!("{id}/{column}")
}

/// SQLite: create the file (and its folder) when missing.
fn prepare_sqlite(url: &str) -> Result<String, StoreError> {
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return Ok(url.to_string());
    };
    let path = rest.split('?').next().unwrap_or_default();
    if !path.is_empty() && path != ":memory:" {
        if let Some(parent) = std::path::Path::new(path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Corrupt(format!(
                    "cannot create the folder {}: {e}",
                    parent.display()
                ))
            })?;
        }
    }
    Ok(if url.contains("mode=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    })
}
