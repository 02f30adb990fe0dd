//! What the worker writes about a webhook's health: since when its deliveries fail (table
//! `webhook_failing`, a row only while they do), and disabling it.

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::{webhooks::COLUMNS, Store, StoreError};
use crate::webhook::{timestamp, Webhook};

impl Store {
    /// Disables a webhook at `at` unless it already is; returns it as stored now, or `None`
    /// when it is gone or was disabled already.
    pub async fn disable(
        &self,
        account_id: &str,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<Option<Webhook>, StoreError> {
        let at = timestamp(at);
        let mut transaction = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "UPDATE webhooks SET disabled_at = $3, updated_at = $3 \
             WHERE id = $1 AND account_id = $2 AND (disabled_at IS NULL OR disabled_at > $3) \
             RETURNING {COLUMNS}"
        ))
        .bind(id.to_string())
        .bind(account_id.to_string())
        .bind(at)
        .fetch_optional(&mut *transaction)
        .await?;
        if row.is_some() {
            self.record_changes(&mut transaction, &[id.to_string()])
                .await?;
        }
        transaction.commit().await?;
        row.map(|row| self.decode(&row)).transpose()
    }

    /// Records that a webhook's deliveries fail since `since`, unless they already did: returns
    /// the time recorded (the earlier one).
    pub async fn mark_failing(
        &self,
        account_id: &str,
        id: Uuid,
        since: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, StoreError> {
        sqlx::query(
            "INSERT INTO webhook_failing (webhook_id, account_id, failing_since) \
             VALUES ($1, $2, $3) ON CONFLICT (webhook_id) DO NOTHING",
        )
        .bind(id.to_string())
        .bind(account_id.to_string())
        .bind(timestamp(since))
        .execute(&self.pool)
        .await?;
        Ok(self.failing_since(id).await?.unwrap_or(since))
    }

    /// Since when a webhook's deliveries fail, if they do.
    pub async fn failing_since(&self, id: Uuid) -> Result<Option<DateTime<Utc>>, StoreError> {
        let stored: Option<String> =
            sqlx::query("SELECT failing_since FROM webhook_failing WHERE webhook_id = $1")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?
                .map(|row| row.try_get("failing_since"))
                .transpose()?;
        stored
            .map(|text| {
                DateTime::parse_from_rfc3339(&text)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| StoreError::Corrupt(format!("failing_since of webhook {id}")))
            })
            .transpose()
    }

    /// A delivery succeeded (or the webhook was re-enabled or deleted): it is not failing.
    pub async fn clear_failing(&self, id: Uuid) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM webhook_failing WHERE webhook_id = $1")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
