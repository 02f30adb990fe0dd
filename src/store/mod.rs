//! The webhook registry's storage: SQLite (embedded default, one replica) or PostgreSQL (several
//! replicas), through one portable SQL dialect on sqlx's `Any` driver. Migrations run at connect.
//! Secrets are encrypted here on the way in and decrypted on the way out; nothing above this
//! module sees ciphertext, and nothing below it sees plain text.

pub mod attempts;
mod cipher;
mod dead_letter_upkeep;
pub mod dead_letters;
mod failing;
pub mod keys;
pub mod public_keys;
pub mod redrive_jobs;
mod unreadable;

use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::{any::AnyRow, AnyPool, Row};
use uuid::Uuid;

pub use cipher::{Cipher, DecryptError};
pub use unreadable::UnreadableWebhook;

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

/// A stored webhook row that could not be decoded. The error names the column, never a value.
#[derive(Debug, thiserror::Error)]
#[error("webhook {id}: {error}")]
pub struct BadRow {
    pub id: String,
    pub error: StoreError,
    /// What can still be read of it to match events, when that much can (boxed: rare, and
    /// it keeps the `Result` of every decodable row small).
    pub routing: Option<Box<UnreadableWebhook>>,
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    cipher: Option<Cipher>,
    /// PostgreSQL only: where a listener connects for change notifications.
    postgres_url: Option<Secret>,
}

/// The PostgreSQL notification channel on which a replica announces a changed webhook's id.
pub const CHANGES_CHANNEL: &str = "webhook_worker_changes";

const COLUMNS: &str = "id, account_id, url, secret_enc, enabled_events, include, disabled_at, \
    created_at, updated_at, oidc_auth_method, oidc_client_id, oidc_client_secret_enc, \
    oidc_token_endpoint, oidc_resource_uri, oidc_scope, oidc_access_token_ttl_seconds";

impl Store {
    /// [`Store::connect`] with `database.url`, `database.max_connections` and
    /// `database.encryption_key`.
    pub async fn from_config(config: &crate::config::Config) -> anyhow::Result<Self> {
        use anyhow::Context;
        let key = config.encryption_key().map_err(anyhow::Error::msg)?;
        let others = config.decryption_keys().map_err(anyhow::Error::msg)?;
        Store::connect_with(
            config.database.url.expose(),
            config.database.max_connections,
            key.map(|key| Cipher::with_decryption_keys(key, &others)),
        )
        .await
        .context("cannot open the database (database.url)")
    }

    /// Connects, runs migrations, and checks that the key can read the stored secrets.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        key: Option<[u8; 32]>,
    ) -> Result<Self, StoreError> {
        Self::connect_with(url, max_connections, key.map(Cipher::new)).await
    }

    /// [`Store::connect`] with a cipher that may also read with other keys; what they open is
    /// encrypted again with the cipher's own key before this returns.
    pub async fn connect_with(
        url: &str,
        max_connections: u32,
        cipher: Option<Cipher>,
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
        let postgres_url = url
            .starts_with("postgres")
            .then(|| Secret::new(url.as_str()));
        let store = Store {
            pool,
            cipher,
            postgres_url,
        };
        store.check_key().await?;
        store.reencrypt_stale_secrets().await?;
        Ok(store)
    }

    async fn check_key(&self) -> Result<(), StoreError> {
        let row = sqlx::query(
            "SELECT id, account_id, oidc_token_endpoint, secret_enc, oidc_client_secret_enc \
             FROM webhooks WHERE secret_enc IS NOT NULL OR oidc_client_secret_enc IS NOT NULL \
             LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return self.check_key_of_signing_keys().await;
        };
        if self.cipher.is_none() {
            return Err(StoreError::MissingKey);
        }
        self.read_secret_columns(&row)?;
        Ok(())
    }

    /// Both secret columns of a row, in either format: `(secret, client secret, stale)`, stale
    /// when a value is in the earlier format or was opened by one of `database.decryption_keys`.
    #[allow(clippy::type_complexity)]
    fn read_secret_columns(
        &self,
        row: &AnyRow,
    ) -> Result<(Option<Secret>, Option<Secret>, bool), StoreError> {
        let cipher = self.cipher.as_ref().ok_or(StoreError::MissingKey)?;
        let id: String = row.try_get("id")?;
        let account: String = row.try_get("account_id")?;
        let endpoint: Option<String> = row.try_get("oidc_token_endpoint")?;
        let mut stale = false;
        let mut read = |column: &str, origin: &str| -> Result<Option<Secret>, StoreError> {
            let Some(stored) = row.try_get::<Option<String>, _>(column)? else {
                return Ok(None);
            };
            let opened = cipher.open_noting(
                &stored,
                &webhook_context(&account, &id, column, origin),
                &format!("{id}/{column}"),
            )?;
            stale |= opened.stale;
            Ok(Some(opened.secret))
        };
        let secret = read("secret_enc", "")?;
        let client_secret = read(
            "oidc_client_secret_enc",
            &origin_of(endpoint.as_deref().unwrap_or_default()),
        )?;
        Ok((secret, client_secret, stale))
    }

    /// Encrypts again, with `database.encryption_key`, the secrets that are stale: stored by
    /// earlier versions (bound to the row only, now bound to their account and token endpoint
    /// too), or opened by one of `database.decryption_keys` (a rotation of the key). After
    /// this, the old key can leave the configuration.
    async fn reencrypt_stale_secrets(&self) -> Result<(), StoreError> {
        if self.cipher.is_none() {
            return Ok(());
        }
        let rows = sqlx::query(
            "SELECT id, account_id, oidc_token_endpoint, secret_enc, oidc_client_secret_enc \
             FROM webhooks WHERE secret_enc IS NOT NULL OR oidc_client_secret_enc IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut webhooks = 0;
        for row in &rows {
            let (secret, client_secret, stale) = self.read_secret_columns(row)?;
            if !stale {
                continue;
            }
            let id: String = row.try_get("id")?;
            let account: String = row.try_get("account_id")?;
            let endpoint: Option<String> = row.try_get("oidc_token_endpoint")?;
            let origin = origin_of(endpoint.as_deref().unwrap_or_default());
            // Only if unchanged since read: a replica's API write in between wins.
            sqlx::query(
                "UPDATE webhooks SET secret_enc = $3, oidc_client_secret_enc = $4 \
                 WHERE id = $1 AND account_id = $2 AND secret_enc IS NOT DISTINCT FROM $5 \
                 AND oidc_client_secret_enc IS NOT DISTINCT FROM $6",
            )
            .bind(id.clone())
            .bind(account.clone())
            .bind(self.encrypt(secret.as_ref(), &account, &id, "secret_enc", "")?)
            .bind(self.encrypt(
                client_secret.as_ref(),
                &account,
                &id,
                "oidc_client_secret_enc",
                &origin,
            )?)
            .bind(row.try_get::<Option<String>, _>("secret_enc")?)
            .bind(row.try_get::<Option<String>, _>("oidc_client_secret_enc")?)
            .execute(&self.pool)
            .await?;
            webhooks += 1;
        }
        let signing_keys = self.reencrypt_stale_signing_keys().await?;
        if webhooks + signing_keys > 0 {
            tracing::info!(
                webhooks,
                signing_keys,
                "re-encrypted stored secrets with database.encryption_key"
            );
        }
        Ok(())
    }

    /// Whether secrets can be stored (an encryption key is configured).
    pub fn can_store_secrets(&self) -> bool {
        self.cipher.is_some()
    }

    pub async fn insert(&self, webhook: &Webhook) -> Result<(), StoreError> {
        self.insert_limited(webhook, i64::MAX).await.map(|_| ())
    }

    /// Inserts `webhook` unless its account already has `max` webhooks; false when it has.
    /// Concurrent creates for one account are serialized: SQLite has one writer; on PostgreSQL a
    /// transaction-scoped advisory lock on the account does it (under READ COMMITTED, counting
    /// and inserting in one statement still let 8 of 40 concurrent creates in under a limit of
    /// 5).
    pub async fn insert_limited(&self, webhook: &Webhook, max: i64) -> Result<bool, StoreError> {
        let row = self.encode(webhook)?;
        let mut transaction = self.pool.begin().await?;
        if self.postgres_url.is_some() {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(&row.account_id)
                .execute(&mut *transaction)
                .await?;
        }
        let result = sqlx::query(&format!(
            "INSERT INTO webhooks ({COLUMNS}) SELECT \
             $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16 \
             WHERE (SELECT COUNT(*) FROM webhooks WHERE account_id = $2) < $17"
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
        .bind(max)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(result.rows_affected() > 0)
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

    /// Every webhook of every account, each row decoded on its own: a row that cannot be decoded
    /// (a value an older version cannot parse, a secret under another key) comes back as
    /// [`BadRow`] and the others still load.
    pub async fn all_decodable(&self) -> Result<Vec<Result<Webhook, BadRow>>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM webhooks"))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|row| {
                self.decode(row).map_err(|error| BadRow {
                    id: row.try_get("id").unwrap_or_default(),
                    error,
                    routing: UnreadableWebhook::read(row).map(Box::new),
                })
            })
            .collect())
    }

    /// A webhook by id alone, whatever its account: for applying another replica's change.
    pub async fn get_by_id(&self, id: Uuid) -> Result<Option<Webhook>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM webhooks WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| self.decode(&row)).transpose()
    }

    /// The database URL to LISTEN on, when the database is PostgreSQL.
    pub fn postgres_url(&self) -> Option<&Secret> {
        self.postgres_url.as_ref()
    }

    /// PostgreSQL: tells every listening replica that webhook `id` changed. Elsewhere, nothing.
    pub async fn announce_change(&self, id: Uuid) -> Result<(), StoreError> {
        if self.postgres_url.is_none() {
            return Ok(());
        }
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANGES_CHANNEL)
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
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
        account: &str,
        id: &str,
        column: &str,
        origin: &str,
    ) -> Result<Option<String>, StoreError> {
        match (secret, &self.cipher) {
            (None, _) => Ok(None),
            (Some(_), None) => Err(StoreError::NoKeyForSecret),
            (Some(secret), Some(cipher)) => Ok(Some(
                cipher.encrypt(secret, &webhook_context(account, id, column, origin)),
            )),
        }
    }

    fn encode(&self, webhook: &Webhook) -> Result<EncodedRow, StoreError> {
        let id = webhook.id.to_string();
        let account = &webhook.account_id;
        let origin = origin_of(webhook.oidc_token_endpoint.as_deref().unwrap_or_default());
        Ok(EncodedRow {
            secret_enc: self.encrypt(webhook.secret.as_ref(), account, &id, "secret_enc", "")?,
            oidc_client_secret_enc: self.encrypt(
                webhook.oidc_client_secret.as_ref(),
                account,
                &id,
                "oidc_client_secret_enc",
                &origin,
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
        let account: String = row.try_get("account_id")?;
        let endpoint: Option<String> = row.try_get("oidc_token_endpoint")?;
        let decrypt = |column: &str, origin: &str| -> Result<Option<Secret>, StoreError> {
            match row.try_get::<Option<String>, _>(column)? {
                None => Ok(None),
                Some(stored) => {
                    let cipher = self.cipher.as_ref().ok_or(StoreError::MissingKey)?;
                    let context = webhook_context(&account, &id, column, origin);
                    Ok(Some(cipher.decrypt(&stored, &context)?))
                }
            }
        };
        let origin = origin_of(endpoint.as_deref().unwrap_or_default());
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
            account_id: account.clone(),
            url: row.try_get("url")?,
            secret: decrypt("secret_enc", "")?,
            enabled_events: serde_json::from_str(&events)
                .map_err(|_| StoreError::Corrupt(format!("enabled_events of webhook {id}")))?,
            include: row.try_get("include")?,
            disabled_at: time("disabled_at")?,
            created_at: required_time("created_at")?,
            updated_at: required_time("updated_at")?,
            oidc_auth_method: method,
            oidc_client_id: row.try_get("oidc_client_id")?,
            oidc_client_secret: decrypt("oidc_client_secret_enc", &origin)?,
            oidc_token_endpoint: endpoint.clone(),
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

/// The associated data of a webhook's secret: its account, row and column, and for the OAuth
/// client secret the token endpoint's origin (empty for the signing secret), so a ciphertext
/// moved to another account, row, column or token endpoint does not decrypt.
pub(crate) fn webhook_context(account: &str, id: &str, column: &str, origin: &str) -> String {
    // Lengths first: no choice of account or origin can make two contexts read alike.
    format!(
        "webhooks|{}:{account}|{id}|{column}|{}:{origin}",
        account.len(),
        origin.len()
    )
}

/// `scheme://host[:port]` of a URL; empty for text that is not one.
pub fn origin_of(url: &str) -> String {
    url::Url::parse(url)
        .map(|url| url.origin().ascii_serialization())
        .unwrap_or_default()
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
