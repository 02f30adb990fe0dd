//! Storage of dead letters by webhook (redrive jobs: `redrive_jobs`).
//!
//! Dead letters are inserted in batches (the writer in `delivery_log::dead_letters`), listed per
//! webhook newest first, and read for a redrive by a keyset cursor over the webhook's letters not
//! yet redriven: every query names one webhook and is served by an index that starts with it, so
//! no tenant's redrive or listing costs more because another tenant has many letters.
//! Inserts ignore an id already stored, so a batch retried after a commit whose answer was lost
//! records nothing twice.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use super::{page::PageQuery, Store, StoreError};
use crate::{dead_reason::DeadReason, webhook::timestamp};

/// One dead letter to record, as the pipeline hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeadLetter {
    pub id: Uuid,
    pub account_id: String,
    pub webhook_id: Uuid,
    pub event_id: String,
    pub event_type: String,
    pub reason: DeadReason,
    pub detail: String,
    pub attempts: u32,
    pub last_status: Option<u16>,
    /// The event as published (JSON, so UTF-8).
    pub body: String,
    pub created_at: DateTime<Utc>,
}

/// A dead letter as the API shows it (the DESIGN's dead-letter object). The event body is not
/// shown: it is the account's own event, and listing stays small.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = DeadLetter)]
pub struct DeadLetterRow {
    /// Always `dead_letter`.
    #[schema(value_type = String)]
    pub object: &'static str,
    pub id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    /// `retries_exhausted`, `endpoint_gone`, `webhook_disabled`, `webhook_unreadable`,
    /// `rejected`, `delivery_limit`.
    pub reason: String,
    /// A short code for the last failure (`http_500`, `timeout`, ...).
    pub detail: String,
    /// Attempts made before it died (0 when none could be made).
    pub attempts: i64,
    /// The last HTTP status, when the endpoint answered.
    pub last_status: Option<i64>,
    pub created_at: String,
    /// When a redrive sent it again (null: not yet); a redriven letter is never sent again.
    pub redriven_at: Option<String>,
}

/// A letter a redrive publishes: its id (the cursor), the event id and the event.
#[derive(Debug, Clone)]
pub struct PendingLetter {
    pub id: String,
    pub event_id: String,
    pub body: String,
}

const COLUMNS: &str = "id, account_id, webhook_id, event_id, event_type, reason, detail, \
    attempts, last_status, body, created_at";
const PER_ROW: usize = 11;
/// Rows per insert statement: 704 parameters, far below either database's limit.
const ROWS_PER_STATEMENT: usize = 64;

impl Store {
    /// Inserts `rows` in one transaction; ids already stored are left as they are.
    pub async fn insert_dead_letters(&self, rows: &[NewDeadLetter]) -> Result<(), StoreError> {
        let mut transaction = self.pool.begin().await?;
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let sql = insert_sql(chunk.len());
            let mut query = sqlx::query(&sql);
            for row in chunk {
                query = query
                    .bind(row.id.hyphenated().to_string())
                    .bind(row.account_id.as_str())
                    .bind(row.webhook_id.hyphenated().to_string())
                    .bind(row.event_id.as_str())
                    .bind(row.event_type.as_str())
                    .bind(row.reason.as_str())
                    .bind(row.detail.as_str())
                    .bind(i64::from(row.attempts))
                    .bind(row.last_status.map(i64::from))
                    .bind(row.body.as_str())
                    .bind(timestamp(row.created_at));
            }
            query.execute(&mut *transaction).await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// One page of the webhook's dead letters, newest first, and their total.
    pub async fn list_dead_letters(
        &self,
        account_id: &str,
        webhook_id: Uuid,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<DeadLetterRow>, i64), StoreError> {
        PageQuery {
            table: "dead_letters",
            columns: "id, webhook_id, event_id, event_type, reason, detail, attempts, \
                last_status, created_at, redriven_at",
            condition: "webhook_id = $1 AND account_id = $2",
            values: &[webhook_id.to_string(), account_id.to_string()],
            order_by: "created_at DESC, id DESC",
        }
        .fetch(&self.pool, offset, limit, |row| {
            Ok(DeadLetterRow {
                object: "dead_letter",
                id: row.try_get("id")?,
                webhook_id: row.try_get("webhook_id")?,
                event_id: row.try_get("event_id")?,
                event_type: row.try_get("event_type")?,
                reason: row.try_get("reason")?,
                detail: row.try_get("detail")?,
                attempts: row.try_get("attempts")?,
                last_status: row.try_get("last_status")?,
                created_at: row.try_get("created_at")?,
                redriven_at: row.try_get("redriven_at")?,
            })
        })
        .await
    }

    /// How many of the webhook's letters no redrive has sent yet.
    pub async fn count_pending_dead_letters(
        &self,
        account_id: &str,
        webhook_id: Uuid,
    ) -> Result<i64, StoreError> {
        Ok(sqlx::query(
            "SELECT COUNT(*) AS n FROM dead_letters \
             WHERE webhook_id = $1 AND redriven_at IS NULL AND account_id = $2",
        )
        .bind(webhook_id.to_string())
        .bind(account_id.to_string())
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?)
    }

    /// Up to `limit` of the webhook's letters not yet redriven, with ids after `after`, in id
    /// (creation) order.
    pub async fn pending_dead_letters(
        &self,
        account_id: &str,
        webhook_id: Uuid,
        after: &str,
        limit: i64,
    ) -> Result<Vec<PendingLetter>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, event_id, body FROM dead_letters \
             WHERE webhook_id = $1 AND redriven_at IS NULL AND id > $2 AND account_id = $3 \
             ORDER BY id LIMIT $4",
        )
        .bind(webhook_id.to_string())
        .bind(after.to_string())
        .bind(account_id.to_string())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(PendingLetter {
                    id: row.try_get("id")?,
                    event_id: row.try_get("event_id")?,
                    body: row.try_get("body")?,
                })
            })
            .collect()
    }

    /// Marks letters as redriven, so that no later redrive sends them again.
    pub async fn mark_redriven(&self, ids: &[String], at: DateTime<Utc>) -> Result<(), StoreError> {
        let at = timestamp(at);
        let mut transaction = self.pool.begin().await?;
        for id in ids {
            sqlx::query("UPDATE dead_letters SET redriven_at = $1 WHERE id = $2")
                .bind(at.as_str())
                .bind(id.as_str())
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Whether the account has this webhook, decodable or not (the dead-letter routes must
    /// answer for a webhook whose secret cannot be read).
    pub async fn webhook_exists(&self, account_id: &str, id: Uuid) -> Result<bool, StoreError> {
        Ok(
            sqlx::query("SELECT id FROM webhooks WHERE id = $1 AND account_id = $2")
                .bind(id.to_string())
                .bind(account_id.to_string())
                .fetch_optional(&self.pool)
                .await?
                .is_some(),
        )
    }
}

/// A UUIDv7: time-ordered, so ids sort by creation (as text too) and inserts land at the end of
/// the primary key's b-tree; random bits from the thread's generator.
pub fn time_ordered_id() -> Uuid {
    let millis = u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(millis, &rand::random()).into_uuid()
}

/// The insert statement for `rows` rows, numbered placeholders (both databases take them).
fn insert_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let first = r * PER_ROW + 1;
            let list: Vec<String> = (first..first + PER_ROW).map(|n| format!("${n}")).collect();
            format!("({})", list.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO dead_letters ({COLUMNS}) VALUES {} ON CONFLICT (id) DO NOTHING",
        values.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_insert_has_a_placeholder_per_value_and_ignores_known_ids() {
        let sql = insert_sql(3);
        assert!(sql.contains("($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"));
        assert!(sql.contains(&format!("${})", 3 * PER_ROW)));
        assert!(sql.ends_with("ON CONFLICT (id) DO NOTHING"));
    }
}
