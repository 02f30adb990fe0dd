//! Storage of redrive jobs, so that any API replica can report a job another one runs (see
//! [`crate::redrive`]). At most one job runs per webhook: the partial unique index
//! `redrive_jobs_one_running` settles a race between replicas.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use super::{dead_letters::time_ordered_id, Store, StoreError};
use crate::webhook::timestamp;

/// A redrive job as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = RedriveJob)]
pub struct RedriveJobRow {
    /// Always `redrive`.
    #[schema(value_type = String)]
    pub object: &'static str,
    pub id: String,
    pub webhook_id: String,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    /// The webhook's letters not yet redriven when the job started.
    pub total: i64,
    /// Letters published again so far.
    pub redriven: i64,
    pub created_at: String,
    pub updated_at: String,
}

const JOB_COLUMNS: &str = "id, webhook_id, status, total, redriven, created_at, updated_at";

impl Store {
    /// Starts a redrive job for the webhook, or returns the one already running there
    /// (`false`: not started by this call). A running job not refreshed since `stale_before`
    /// (its replica died) is marked failed first.
    pub async fn start_redrive_job(
        &self,
        account_id: &str,
        webhook_id: Uuid,
        total: i64,
        stale_before: DateTime<Utc>,
    ) -> Result<(RedriveJobRow, bool), StoreError> {
        let webhook = webhook_id.to_string();
        sqlx::query(
            "UPDATE redrive_jobs SET status = 'failed', error = 'abandoned' \
             WHERE webhook_id = $1 AND status = 'running' AND updated_at < $2",
        )
        .bind(webhook.as_str())
        .bind(timestamp(stale_before))
        .execute(&self.pool)
        .await?;
        if let Some(running) = self.running_redrive_job(&webhook).await? {
            return Ok((running, false));
        }
        let now = timestamp(Utc::now());
        let id = time_ordered_id().to_string();
        let inserted = sqlx::query(
            "INSERT INTO redrive_jobs (id, account_id, webhook_id, status, total, redriven, \
             created_at, updated_at) VALUES ($1, $2, $3, 'running', $4, 0, $5, $5)",
        )
        .bind(id.as_str())
        .bind(account_id.to_string())
        .bind(webhook.as_str())
        .bind(total)
        .bind(now.as_str())
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok((
                RedriveJobRow {
                    object: "redrive",
                    id,
                    webhook_id: webhook,
                    status: "running".into(),
                    total,
                    redriven: 0,
                    created_at: now.clone(),
                    updated_at: now,
                },
                true,
            )),
            // Another replica started one between the read and the insert (the unique index).
            Err(error) => match self.running_redrive_job(&webhook).await? {
                Some(running) => Ok((running, false)),
                None => Err(error.into()),
            },
        }
    }

    async fn running_redrive_job(
        &self,
        webhook: &str,
    ) -> Result<Option<RedriveJobRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM redrive_jobs WHERE webhook_id = $1 AND status = 'running'"
        ))
        .bind(webhook.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| job_row(&row)).transpose()
    }

    /// Records a job's progress (and refreshes it, so it does not count as abandoned).
    pub async fn update_redrive_job(
        &self,
        id: &str,
        status: &str,
        redriven: i64,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE redrive_jobs SET status = $2, redriven = $3, error = $4, updated_at = $5 \
             WHERE id = $1",
        )
        .bind(id.to_string())
        .bind(status.to_string())
        .bind(redriven)
        .bind(error.map(str::to_string))
        .bind(timestamp(Utc::now()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The job, when it belongs to this account's webhook.
    pub async fn get_redrive_job(
        &self,
        account_id: &str,
        webhook_id: Uuid,
        id: Uuid,
    ) -> Result<Option<RedriveJobRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM redrive_jobs \
             WHERE id = $1 AND webhook_id = $2 AND account_id = $3"
        ))
        .bind(id.to_string())
        .bind(webhook_id.to_string())
        .bind(account_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| job_row(&row)).transpose()
    }
}

fn job_row(row: &sqlx::any::AnyRow) -> Result<RedriveJobRow, StoreError> {
    Ok(RedriveJobRow {
        object: "redrive",
        id: row.try_get("id")?,
        webhook_id: row.try_get("webhook_id")?,
        status: row.try_get("status")?,
        total: row.try_get("total")?,
        redriven: row.try_get("redriven")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}
