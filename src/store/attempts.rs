//! Storage of the delivery log: attempts inserted many rows per statement, read newest first per
//! webhook or per event (always within one account), and pruned in small batches.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use super::{page::PageQuery, Store, StoreError};
use crate::webhook::timestamp;

/// One attempt as the log keeps it and the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = DeliveryAttempt)]
pub struct AttemptRow {
    /// Always `delivery_attempt`.
    #[schema(value_type = String)]
    pub object: &'static str,
    pub id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    pub attempt: i64,
    /// `delivered`, `failed`, `parked`, `dead_lettered`, `disabled`.
    pub outcome: String,
    /// The HTTP status, when the endpoint answered.
    pub status: Option<i64>,
    /// A short code (`timeout`, `http_503`, `token: invalid_client`), or null.
    pub error: Option<String>,
    pub duration_ms: i64,
    pub created_at: String,
    /// When the delivery is due again: set on a `failed` attempt whose retry is scheduled and
    /// on a `parked` one; null otherwise.
    pub next_attempt_at: Option<String>,
    #[serde(skip)]
    pub account_id: String,
}

/// What to list: one webhook's attempts (optionally one outcome or status), or one event's.
#[derive(Debug, Clone)]
pub enum AttemptFilter {
    Webhook {
        webhook_id: Uuid,
        outcome: Option<String>,
        status: Option<i64>,
    },
    Event {
        event_id: String,
    },
}

/// Columns of one row, in insert order.
const COLUMNS: &str = "id, account_id, webhook_id, event_id, event_type, attempt, outcome, \
    status, error, duration_ms, created_at, next_attempt_at";
const PER_ROW: usize = 12;

/// One attempt to record, as the delivery path hands it over: ids and time not yet formatted
/// (the writer does that, off the delivery path). The API reads it back as an [`AttemptRow`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAttempt {
    pub id: Uuid,
    pub account_id: String,
    pub webhook_id: Uuid,
    pub event_id: String,
    pub event_type: String,
    pub attempt: u32,
    /// `delivered`, `failed`, `parked`, `dead_lettered`, `disabled`.
    pub outcome: &'static str,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: i64,
    pub created_at: DateTime<Utc>,
    /// When the delivery is due again (a retry scheduled, a park).
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// Most rows one insert statement takes. Statements are of 1, 2, 4, … this many rows, so each
/// connection's statement cache holds at most ten insert statements: with one per batch size
/// seen (1 to 500 rows, ~160 KB each prepared on SQLite) the cache held 16 MiB of the bench's
/// heap peak. 512 rows are 6,144 parameters, far below PostgreSQL's 65,535 and SQLite's 32,766.
pub const MAX_INSERT_ROWS: usize = 512;

impl Store {
    /// Inserts `rows` in one transaction, with one statement per power of two in their count
    /// (a full batch of [`MAX_INSERT_ROWS`] is one).
    pub async fn insert_attempts(&self, rows: &[NewAttempt]) -> Result<(), StoreError> {
        let numbered = self.postgres_url.is_some();
        let mut transaction = self.pool.begin().await?;
        let mut rest = rows;
        while !rest.is_empty() {
            let size = 1 << rest.len().min(MAX_INSERT_ROWS).ilog2();
            let (chunk, after) = rest.split_at(size);
            rest = after;
            // Formatted here, then bound by reference with the other text columns: no copies.
            let text: Vec<([String; 3], Option<String>)> = chunk
                .iter()
                .map(|row| {
                    let id = row.id.hyphenated().to_string();
                    let webhook_id = row.webhook_id.hyphenated().to_string();
                    let due = row.next_attempt_at.map(timestamp);
                    ([id, webhook_id, timestamp(row.created_at)], due)
                })
                .collect();
            let mut query = sqlx::query(insert_sql(size, numbered));
            for (row, ([id, webhook_id, created_at], due)) in chunk.iter().zip(&text) {
                query = query
                    .bind(id.as_str())
                    .bind(row.account_id.as_str())
                    .bind(webhook_id.as_str())
                    .bind(row.event_id.as_str())
                    .bind(row.event_type.as_str())
                    .bind(i64::from(row.attempt))
                    .bind(row.outcome)
                    .bind(row.status.map(i64::from))
                    .bind(row.error.as_deref())
                    .bind(row.duration_ms)
                    .bind(created_at.as_str())
                    .bind(due.as_deref());
            }
            query.execute(&mut *transaction).await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// One page of the account's attempts that match `filter`, newest first, and the total.
    pub async fn list_attempts(
        &self,
        account_id: &str,
        filter: &AttemptFilter,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<AttemptRow>, i64), StoreError> {
        let (condition, values): (String, Vec<String>) = match filter {
            AttemptFilter::Webhook {
                webhook_id,
                outcome,
                status,
            } => {
                let mut values = vec![webhook_id.to_string()];
                let mut condition = String::from("webhook_id = $2");
                if let Some(outcome) = outcome {
                    values.push(outcome.clone());
                    condition.push_str(&format!(" AND outcome = ${}", values.len() + 1));
                }
                if let Some(status) = status {
                    values.push(status.to_string());
                    condition.push_str(&format!(
                        " AND CAST(status AS TEXT) = ${}",
                        values.len() + 1
                    ));
                }
                (condition, values)
            }
            AttemptFilter::Event { event_id } => ("event_id = $2".into(), vec![event_id.clone()]),
        };
        let mut bound = vec![account_id.to_string()];
        bound.extend(values);
        let condition = format!("account_id = $1 AND {condition}");
        PageQuery {
            table: "delivery_attempts",
            columns: COLUMNS,
            condition: &condition,
            values: &bound,
            order_by: "created_at DESC, attempt DESC, id DESC",
        }
        .fetch(&self.pool, offset, limit, |row| {
            Ok(AttemptRow {
                object: "delivery_attempt",
                id: row.try_get("id")?,
                account_id: row.try_get("account_id")?,
                webhook_id: row.try_get("webhook_id")?,
                event_id: row.try_get("event_id")?,
                event_type: row.try_get("event_type")?,
                attempt: row.try_get("attempt")?,
                outcome: row.try_get("outcome")?,
                status: row.try_get("status")?,
                error: row.try_get("error")?,
                duration_ms: row.try_get("duration_ms")?,
                created_at: row.try_get("created_at")?,
                next_attempt_at: row.try_get("next_attempt_at")?,
            })
        })
        .await
    }

    /// Deletes up to `batch` attempts older than `before`; returns how many went.
    pub async fn prune_attempts(
        &self,
        before: DateTime<Utc>,
        batch: i64,
    ) -> Result<u64, StoreError> {
        self.prune_older("delivery_attempts", before, batch).await
    }
}

/// The insert statement for `rows` rows (a power of two up to [`MAX_INSERT_ROWS`]), built once
/// per size. SQLite looks numbered parameters up by name in a list, once per parameter bound:
/// quadratic in a full batch, which profiled at a third of the worker's CPU. Anonymous `?` are
/// bound by position; PostgreSQL needs `$n`.
fn insert_sql(rows: usize, numbered: bool) -> &'static str {
    static SQLITE: OnceLock<Vec<String>> = OnceLock::new();
    static POSTGRES: OnceLock<Vec<String>> = OnceLock::new();
    let sizes = if numbered { &POSTGRES } else { &SQLITE };
    let sizes = sizes.get_or_init(|| {
        (0..=MAX_INSERT_ROWS.ilog2())
            .map(|power| build_insert_sql(1 << power, numbered))
            .collect()
    });
    &sizes[rows.ilog2() as usize]
}

fn build_insert_sql(rows: usize, numbered: bool) -> String {
    let placeholders: Vec<String> = (0..rows)
        .map(|r| {
            let first = r * PER_ROW + 1;
            let list: Vec<String> = (first..first + PER_ROW)
                .map(|n| {
                    if numbered {
                        format!("${n}")
                    } else {
                        "?".into()
                    }
                })
                .collect();
            format!("({})", list.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO delivery_attempts ({COLUMNS}) VALUES {}",
        placeholders.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_insert_size_has_its_statement_with_a_placeholder_per_value() {
        for power in 0..=MAX_INSERT_ROWS.ilog2() {
            let rows = 1 << power;
            assert_eq!(insert_sql(rows, false).matches('?').count(), rows * PER_ROW);
            let numbered = insert_sql(rows, true);
            assert!(
                numbered.ends_with(&format!("${})", rows * PER_ROW)),
                "{rows}"
            );
        }
    }
}
