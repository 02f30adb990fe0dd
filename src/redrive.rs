//! Redrive as a job: a webhook's dead letters (as recorded by webhook in the database) are
//! published again to the deliveries queue as fresh first attempts, each with a confirm, and
//! then marked redriven, so that no later redrive sends them again.
//!
//! Every read names the webhook and walks its letters not yet redriven by a keyset cursor over
//! an index that starts with the webhook id: the cost is that webhook's letters, whatever other
//! tenants have. Jobs live in the `redrive_jobs` table, not in memory, because the API may run
//! as several replicas behind a load balancer: the replica that answers `GET …/redrive/{job}`
//! is not always the one running it. At most one job runs per webhook (a second `POST` while one
//! runs answers that one). A job refreshes its row after every batch; one not refreshed for
//! [`STALE_AFTER`] (its replica died) counts as failed and no longer blocks a new one.
//!
//! A letter is marked only after its publish was confirmed: a crash in between sends it again
//! with the next redrive (at least once, as every delivery), never loses it.

use std::time::Duration;

use chrono::Utc;
use futures_util::future::join_all;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use uuid::Uuid;

use crate::{
    config::Config,
    queue::{job::Job, Names, Publisher},
    store::{redrive_jobs::RedriveJobRow, Store, StoreError},
};

/// Letters read and published per batch (their confirms awaited together).
const BATCH: i64 = 200;
/// A running job not refreshed for this long is taken as abandoned.
pub const STALE_AFTER: Duration = Duration::from_secs(120);

/// Where jobs run: the process's tasks, which shutdown waits for, and its shutdown signal, which
/// stops a job between batches (what it has not sent stays for the next redrive).
#[derive(Clone, Default)]
pub struct Background {
    pub tasks: TaskTracker,
    pub cancel: CancellationToken,
}

/// Starts a redrive of the webhook's letters not yet redriven, on this process, or returns the
/// job already running for it.
pub async fn start(
    store: &Store,
    config: &Config,
    background: &Background,
    account_id: &str,
    webhook_id: Uuid,
) -> Result<RedriveJobRow, StoreError> {
    let total = store
        .count_pending_dead_letters(account_id, webhook_id)
        .await?;
    let stale = chrono::TimeDelta::from_std(STALE_AFTER).unwrap_or(chrono::TimeDelta::MAX);
    let stale_before = Utc::now()
        .checked_sub_signed(stale)
        .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
    let (job, started) = store
        .start_redrive_job(account_id, webhook_id, total, stale_before)
        .await?;
    if started {
        let run = Run {
            store: store.clone(),
            names: Names::new(&config.amqp.prefix),
            amqp_url: config.amqp.url.clone(),
            account_id: account_id.to_string(),
            webhook_id,
            job_id: job.id.clone(),
            total,
            cancel: background.cancel.clone(),
        };
        background.tasks.spawn(run.run());
    }
    Ok(job)
}

/// Why a job stopped before its end; the letters it did not send stay for the next.
#[derive(Debug, thiserror::Error)]
enum RedriveError {
    #[error("the process is shutting down")]
    ShuttingDown,
    #[error("the broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("a publish: {0}")]
    Publish(#[from] crate::queue::PublishError),
    #[error("the database: {0}")]
    Store(#[from] StoreError),
}

/// One job's work.
struct Run {
    store: Store,
    names: Names,
    amqp_url: crate::config::AmqpUrls,
    account_id: String,
    webhook_id: Uuid,
    job_id: String,
    /// Letters pending when it started: the job stops there (later ones wait for the next).
    total: i64,
    cancel: CancellationToken,
}

impl Run {
    async fn run(self) {
        let mut redriven = 0;
        let outcome = self.redrive(&mut redriven).await;
        let (status, error) = match &outcome {
            Ok(()) => ("succeeded", None),
            Err(error) => {
                // The cause (hosts, IO details) is the operator's; the job says only "failed".
                tracing::warn!(error = format!("{error:#}"), webhook_id = %self.webhook_id,
                    job_id = %self.job_id, redriven, "redrive failed; the rest stay for another");
                (
                    "failed",
                    Some("the redrive stopped; the letters not sent stay for another"),
                )
            }
        };
        if let Err(error) = self
            .store
            .update_redrive_job(&self.job_id, status, redriven, error)
            .await
        {
            tracing::warn!(%error, job_id = %self.job_id, "cannot record the end of a redrive");
        }
        tracing::info!(webhook_id = %self.webhook_id, account_id = %self.account_id,
            job_id = %self.job_id, redriven, total = self.total, status, "redrive ended");
    }

    async fn redrive(&self, redriven: &mut i64) -> Result<(), RedriveError> {
        if self.total == 0 {
            return Ok(());
        }
        let connection = crate::queue::connect(&self.amqp_url).await?;
        let result = self.publish_all(&connection, redriven).await;
        let _ = connection.close(200, "redriven").await;
        result
    }

    async fn publish_all(
        &self,
        connection: &lapin::Connection,
        redriven: &mut i64,
    ) -> Result<(), RedriveError> {
        let publisher = Publisher::open(connection).await?;
        let headers = Job {
            webhook_id: self.webhook_id,
            account_id: self.account_id.clone(),
            attempt: 1,
            last_error: Some("redriven from the dead letters".into()),
            parks: 0,
            parked_since: None,
        }
        .headers();
        let mut cursor = String::new();
        let mut looked_at = 0;
        while looked_at < self.total {
            if self.cancel.is_cancelled() {
                return Err(RedriveError::ShuttingDown);
            }
            let limit = BATCH.min(self.total - looked_at);
            let letters = self
                .store
                .pending_dead_letters(&self.account_id, self.webhook_id, &cursor, limit)
                .await?;
            let Some(last) = letters.last() else { break };
            cursor = last.id.clone();
            looked_at += letters.len() as i64;
            let publishes = letters.iter().map(|letter| {
                let queue = &self.names.deliveries;
                let body = letter.body.as_bytes();
                publisher.publish("", queue, body, headers.clone(), &letter.event_id)
            });
            let results = join_all(publishes).await;
            let mut failure = None;
            let mut sent = Vec::with_capacity(letters.len());
            for (letter, result) in letters.iter().zip(results) {
                match result {
                    Ok(()) => sent.push(letter.id.clone()),
                    Err(error) => failure = Some(error),
                }
            }
            self.store.mark_redriven(&sent, Utc::now()).await?;
            *redriven += sent.len() as i64;
            self.store
                .update_redrive_job(&self.job_id, "running", *redriven, None)
                .await?;
            if let Some(error) = failure {
                return Err(error.into());
            }
        }
        Ok(())
    }
}
