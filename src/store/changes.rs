//! The change log of webhook rows (`webhook_changes`): every write to `webhooks` records the
//! webhook's id under the next sequence number, in the same transaction, so that a replica
//! learns what changed since its mark with one indexed query instead of reading every row.
//!
//! Invariant: the sequence numbers a reader can see have no gap. A number is `MAX(seq) + 1`
//! taken while writers are serialized (SQLite has one writer; on PostgreSQL each writing
//! transaction takes the advisory lock [`CHANGE_LOCK`] before allocating, and holds it until it
//! commits), so a number never commits after a larger one has been read. Pruning removes the
//! oldest rows only and never the newest: a reader whose mark falls below what is left sees a
//! gap and loads everything again.

use chrono::{DateTime, Utc};
use sqlx::{Any, Row, Transaction};
use uuid::Uuid;

use super::{Store, StoreError};
use crate::webhook::timestamp;

/// The PostgreSQL advisory lock that serializes writers of the change log. Outside the range of
/// `hashtext` (32 bits), which the per-account locks use.
const CHANGE_LOCK: i64 = 0x7768_6b5f_6368_6773;

/// What changed after a mark.
#[derive(Debug, Default)]
pub struct Changes {
    /// The changed webhooks, each once, in the order of their first change.
    pub ids: Vec<Uuid>,
    /// The newest sequence number read: the next mark.
    pub last: i64,
    /// Changes after the mark were pruned before they were read: only a full load catches up.
    pub gap: bool,
}

/// How many changes one read of the log returns at most; the caller reads again from `last`.
pub const CHANGES_PER_READ: i64 = 5_000;

impl Store {
    /// Records that the webhooks `ids` changed, in the writing transaction `transaction`, after
    /// its write.
    pub(super) async fn record_changes(
        &self,
        transaction: &mut Transaction<'_, Any>,
        ids: &[String],
    ) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        if self.postgres_url.is_some() {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(CHANGE_LOCK)
                .execute(&mut **transaction)
                .await?;
        }
        let next: i64 =
            sqlx::query("SELECT COALESCE(MAX(seq), 0) + 1 AS next FROM webhook_changes")
                .fetch_one(&mut **transaction)
                .await?
                .try_get("next")?;
        let now = timestamp(Utc::now());
        // Three values a row: far under either database's limit of binds.
        for (chunk_at, chunk) in ids.chunks(1_000).enumerate() {
            let values = (0..chunk.len())
                .map(|r| format!("(${}, ${}, ${})", r * 3 + 1, r * 3 + 2, r * 3 + 3))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "INSERT INTO webhook_changes (seq, webhook_id, changed_at) VALUES {values}"
            );
            let mut query = sqlx::query(&sql);
            for (i, id) in chunk.iter().enumerate() {
                let seq = next + (chunk_at * 1_000 + i) as i64;
                query = query.bind(seq).bind(id.clone()).bind(now.clone());
            }
            query.execute(&mut **transaction).await?;
        }
        Ok(())
    }

    /// The newest sequence number (0: none yet): read before a full load, it is the mark from
    /// which the changes the load may have missed are read.
    pub async fn change_mark(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query("SELECT COALESCE(MAX(seq), 0) AS mark FROM webhook_changes")
                .fetch_one(&self.pool)
                .await?
                .try_get("mark")?,
        )
    }

    /// The webhooks changed after `mark` (at most [`CHANGES_PER_READ`] changes). One indexed
    /// query, also when nothing changed: the cheap check a replica makes every
    /// `registry.refresh`.
    pub async fn changes_since(&self, mark: i64) -> Result<Changes, StoreError> {
        // The oldest row comes along, so that a pruned range after the mark shows.
        let rows = sqlx::query(
            "SELECT seq, webhook_id FROM webhook_changes \
             WHERE seq > $1 OR seq = (SELECT MIN(seq) FROM webhook_changes) \
             ORDER BY seq LIMIT $2",
        )
        .bind(mark)
        .bind(CHANGES_PER_READ + 1)
        .fetch_all(&self.pool)
        .await?;
        let mut changes = Changes {
            last: mark,
            ..Changes::default()
        };
        let mut seen = std::collections::HashSet::new();
        for (i, row) in rows.iter().enumerate() {
            let seq: i64 = row.try_get("seq")?;
            if i == 0 && seq > mark + 1 {
                changes.gap = true;
            }
            if seq <= mark {
                continue;
            }
            changes.last = seq;
            let id: String = row.try_get("webhook_id")?;
            // An id that is not a UUID names no row the registry can hold.
            if let Ok(id) = id.parse::<Uuid>() {
                if seen.insert(id) {
                    changes.ids.push(id);
                }
            }
        }
        Ok(changes)
    }

    /// Deletes the changes recorded before `before`, except the newest. Returns how many.
    pub async fn prune_changes(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let result = sqlx::query(
            "DELETE FROM webhook_changes WHERE changed_at < $1 \
             AND seq < (SELECT MAX(seq) FROM webhook_changes)",
        )
        .bind(timestamp(before))
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }
}
