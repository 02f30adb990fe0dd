//! Upkeep of the dead letters recorded by webhook: what the operator's `dead-letters replay`
//! tells the table (a letter sent again from the broker's queue is marked redriven, and one the
//! tenant already redrove is not sent again), and retention (`dead_letters.retention`).

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::{Store, StoreError};
use crate::webhook::timestamp;

impl Store {
    /// Whether the webhook has recorded letters of this event and every one of them was
    /// redriven already (so the broker's copy must not be sent again).
    pub async fn event_letters_redriven(
        &self,
        webhook_id: Uuid,
        event_id: &str,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS total, COUNT(redriven_at) AS redriven FROM dead_letters \
             WHERE webhook_id = $1 AND event_id = $2",
        )
        .bind(webhook_id.to_string())
        .bind(event_id)
        .fetch_one(&self.pool)
        .await?;
        let total: i64 = row.try_get("total")?;
        let redriven: i64 = row.try_get("redriven")?;
        Ok(total > 0 && total == redriven)
    }

    /// Marks the webhook's letters of one event not yet redriven as redriven at `at`: the event
    /// was sent again another way (a replay of the broker's dead letters). Returns how many.
    pub async fn mark_event_redriven(
        &self,
        webhook_id: Uuid,
        event_id: &str,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let result = sqlx::query(
            "UPDATE dead_letters SET redriven_at = $1 \
             WHERE webhook_id = $2 AND event_id = $3 AND redriven_at IS NULL",
        )
        .bind(timestamp(at))
        .bind(webhook_id.to_string())
        .bind(event_id)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }

    /// Deletes up to `batch` dead letters recorded before `before`; returns how many went.
    pub async fn prune_dead_letters(
        &self,
        before: DateTime<Utc>,
        batch: i64,
    ) -> Result<u64, StoreError> {
        self.prune_older("dead_letters", before, batch).await
    }

    /// Deletes up to `batch` rows of `table` (one of ours, with `id` and a text `created_at`)
    /// created before `before`; returns how many went.
    pub(super) async fn prune_older(
        &self,
        table: &'static str,
        before: DateTime<Utc>,
        batch: i64,
    ) -> Result<u64, StoreError> {
        let sql = format!(
            "DELETE FROM {table} WHERE id IN \
             (SELECT id FROM {table} WHERE created_at < $1 LIMIT $2)"
        );
        let result = sqlx::query(&sql)
            .bind(timestamp(before))
            .bind(batch)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }
}
