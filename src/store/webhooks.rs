//! Webhook rows: reading and writing the `webhooks` table, and the one conversion between a
//! [`Webhook`] and its stored row (secrets encrypted, times as RFC 3339 text, events as JSON).

use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::{any::AnyRow, Row};
use uuid::Uuid;

use super::{
    page::PageQuery,
    secrets::{origin_of, webhook_context},
    Store, StoreError,
};
use crate::{
    secret::Secret,
    signing::SignatureFormat,
    webhook::{timestamp, FlatWebhook, OidcAuthMethod, PreviousSecret, Webhook},
};

pub(super) const COLUMNS: &str =
    "id, account_id, url, secret_enc, enabled_events, include, disabled_at, \
    created_at, updated_at, oidc_auth_method, oidc_client_id, oidc_client_secret_enc, \
    oidc_token_endpoint, oidc_resource_uri, oidc_scope, oidc_access_token_ttl_seconds, \
    signature_format, previous_secret_enc, previous_secret_until";

impl Store {
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
        let id = row.id.clone();
        let mut transaction = self.pool.begin().await?;
        if self.postgres_url.is_some() {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(&row.account_id)
                .execute(&mut *transaction)
                .await?;
        }
        let result = sqlx::query(&format!(
            "INSERT INTO webhooks ({COLUMNS}) SELECT \
             $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19 \
             WHERE (SELECT COUNT(*) FROM webhooks WHERE account_id = $2) < $20"
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
        .bind(row.signature_format)
        .bind(row.previous_secret_enc)
        .bind(row.previous_secret_until)
        .bind(max)
        .execute(&mut *transaction)
        .await?;
        let inserted = result.rows_affected() > 0;
        if inserted {
            self.record_changes(&mut transaction, &[id]).await?;
        }
        transaction.commit().await?;
        Ok(inserted)
    }

    /// Inserts many webhooks in one transaction, many rows a statement, with no limit per
    /// account: for imports and the bench (`--registered-webhooks`), not for the API.
    pub async fn insert_bulk(&self, webhooks: &[Webhook]) -> Result<(), StoreError> {
        // 19 values a row: 500 rows stay under SQLite's 32,766 and PostgreSQL's 65,535 binds.
        const ROWS: usize = 500;
        let mut transaction = self.pool.begin().await?;
        for chunk in webhooks.chunks(ROWS) {
            let rows = chunk
                .iter()
                .map(|webhook| self.encode(webhook))
                .collect::<Result<Vec<_>, _>>()?;
            let values = (0..rows.len())
                .map(|r| {
                    let first = r * 19;
                    let binds: Vec<String> =
                        (first + 1..=first + 19).map(|n| format!("${n}")).collect();
                    format!("({})", binds.join(", "))
                })
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!("INSERT INTO webhooks ({COLUMNS}) VALUES {values}");
            let mut query = sqlx::query(&sql);
            for row in rows {
                query = row.bind_all(query);
            }
            query.execute(&mut *transaction).await?;
        }
        let ids: Vec<String> = webhooks.iter().map(|w| w.id.to_string()).collect();
        self.record_changes(&mut transaction, &ids).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Replaces a webhook of the account. Returns false when it does not exist.
    pub async fn update(&self, webhook: &Webhook) -> Result<bool, StoreError> {
        let row = self.encode(webhook)?;
        let id = row.id.clone();
        let mut transaction = self.pool.begin().await?;
        let result = sqlx::query(
            "UPDATE webhooks SET url = $3, secret_enc = $4, enabled_events = $5, include = $6, \
             disabled_at = $7, updated_at = $8, oidc_auth_method = $9, oidc_client_id = $10, \
             oidc_client_secret_enc = $11, oidc_token_endpoint = $12, oidc_resource_uri = $13, \
             oidc_scope = $14, oidc_access_token_ttl_seconds = $15, signature_format = $16, \
             previous_secret_enc = $17, previous_secret_until = $18 \
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
        .bind(row.signature_format)
        .bind(row.previous_secret_enc)
        .bind(row.previous_secret_until)
        .execute(&mut *transaction)
        .await?;
        let updated = result.rows_affected() > 0;
        if updated {
            self.record_changes(&mut transaction, &[id]).await?;
        }
        transaction.commit().await?;
        if webhook.disabled_at.is_none() {
            // Enabled (or re-enabled): its failures so far no longer count toward disabling it.
            self.clear_failing(webhook.id).await?;
        }
        Ok(updated)
    }

    /// Deletes a webhook of the account and returns it, or `None` when it does not exist.
    pub async fn delete(&self, account_id: &str, id: Uuid) -> Result<Option<Webhook>, StoreError> {
        // One statement (SQLite 3.35+ and PostgreSQL both RETURNING): no window between reading
        // the row and deleting it.
        let mut transaction = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "DELETE FROM webhooks WHERE id = $1 AND account_id = $2 RETURNING {COLUMNS}"
        ))
        .bind(id.to_string())
        .bind(account_id.to_string())
        .fetch_optional(&mut *transaction)
        .await?;
        if row.is_some() {
            self.record_changes(&mut transaction, &[id.to_string()])
                .await?;
        }
        transaction.commit().await?;
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
        PageQuery {
            table: "webhooks",
            columns: COLUMNS,
            condition: "account_id = $1",
            values: &[account_id.to_string()],
            order_by: "created_at DESC, id DESC",
        }
        .fetch(&self.pool, offset, limit, |row| self.decode(row))
        .await
    }

    /// Every webhook of every account: what the registry snapshot is built from.
    pub async fn all(&self) -> Result<Vec<Webhook>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM webhooks"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| self.decode(row)).collect()
    }

    fn encode(&self, webhook: &Webhook) -> Result<EncodedRow, StoreError> {
        let webhook = FlatWebhook::from(webhook);
        let id = webhook.id.to_string();
        let account = &webhook.account_id;
        let origin = origin_of(webhook.oidc_token_endpoint.as_deref().unwrap_or_default());
        let previous = webhook.previous_secret.as_ref();
        Ok(EncodedRow {
            secret_enc: self.encrypt(webhook.secret.as_ref(), account, &id, "secret_enc", "")?,
            // Its own column in the associated data: it never opens as the current secret.
            previous_secret_enc: self.encrypt(
                previous.map(|p| &p.secret),
                account,
                &id,
                "previous_secret_enc",
                "",
            )?,
            previous_secret_until: previous.map(|p| timestamp(p.until)),
            signature_format: webhook.signature_format.as_str().to_string(),
            oidc_client_secret_enc: self.encrypt(
                webhook.oidc_client_secret.as_ref(),
                account,
                &id,
                "oidc_client_secret_enc",
                &origin,
            )?,
            id,
            enabled_events: serde_json::to_string(&webhook.enabled_events)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            disabled_at: webhook.disabled_at.map(timestamp),
            created_at: timestamp(webhook.created_at),
            updated_at: timestamp(webhook.updated_at),
            oidc_auth_method: webhook.oidc_auth_method.map(|m| m.as_str().to_string()),
            account_id: webhook.account_id,
            url: webhook.url,
            include: webhook.include,
            oidc_client_id: webhook.oidc_client_id,
            oidc_token_endpoint: webhook.oidc_token_endpoint,
            oidc_resource_uri: webhook.oidc_resource_uri,
            oidc_scope: webhook.oidc_scope,
            oidc_access_token_ttl_seconds: webhook.oidc_access_token_ttl_seconds,
        })
    }

    pub(super) fn decode(&self, row: &AnyRow) -> Result<Webhook, StoreError> {
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
        let format: String = row.try_get("signature_format")?;
        let previous_secret = match decrypt("previous_secret_enc", "")? {
            None => None,
            Some(secret) => Some(PreviousSecret {
                secret,
                until: required_time("previous_secret_until")?,
            }),
        };
        let flat = FlatWebhook {
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
            signature_format: SignatureFormat::parse(&format)
                .ok_or_else(|| StoreError::Corrupt(format!("signature_format of webhook {id}")))?,
            previous_secret,
        };
        Webhook::try_from(flat)
            .map_err(|e| StoreError::Corrupt(format!("{} of webhook {id}", e.field)))
    }
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

impl EncodedRow {
    /// Binds the row's values in [`COLUMNS`]' order.
    fn bind_all(self, query: AnyQuery<'_>) -> AnyQuery<'_> {
        query
            .bind(self.id)
            .bind(self.account_id)
            .bind(self.url)
            .bind(self.secret_enc)
            .bind(self.enabled_events)
            .bind(self.include)
            .bind(self.disabled_at)
            .bind(self.created_at)
            .bind(self.updated_at)
            .bind(self.oidc_auth_method)
            .bind(self.oidc_client_id)
            .bind(self.oidc_client_secret_enc)
            .bind(self.oidc_token_endpoint)
            .bind(self.oidc_resource_uri)
            .bind(self.oidc_scope)
            .bind(self.oidc_access_token_ttl_seconds)
            .bind(self.signature_format)
            .bind(self.previous_secret_enc)
            .bind(self.previous_secret_until)
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
    signature_format: String,
    previous_secret_enc: Option<String>,
    previous_secret_until: Option<String>,
}
