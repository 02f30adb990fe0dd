//! Recording dead letters by webhook in the database, beside the delivery log and in the same
//! way: [`DeadLetterLog::record`] hands the letter to a bounded channel (never waiting on the
//! database), and one writer task inserts what arrived in batches.
//!
//! Unlike attempt rows, a dead letter is not given up at the first failure: a batch whose insert
//! fails is tried again with backoff for [`RETRY_FOR`] (a database restart, a failover), while
//! new letters wait in the channel. Only then, or when the channel is full, is a letter counted
//! in `dead_letters_unrecorded_total` and named in an error line (webhook and event ids). It is
//! not lost: every dead letter was published with a confirm to `<prefix>.dead` before it was
//! handed here (the broker copy is the durable record), and the operator can replay it from
//! there (`webhook-worker dead-letters replay --webhook-id ID`).

use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    config::DeliveryLogConfig,
    queue::job::DeadLetter,
    store::{
        dead_letters::{time_ordered_id, NewDeadLetter},
        Store,
    },
    telemetry::Metrics,
};

/// Letters waiting for the writer; beyond this they are counted unrecorded (the broker has them).
const CHANNEL_CAPACITY: usize = 20_000;
const BATCH_ROWS: usize = 512;
/// Longest a letter waits for its batch to fill.
const FLUSH_EVERY: Duration = super::FLUSH_EVERY;
/// One insert that takes longer counts as failed (and is tried again).
const INSERT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a failing batch is tried again before its letters count as unrecorded.
pub const RETRY_FOR: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Event ids named in the error line of an unrecorded batch, at most.
const NAMED: usize = 20;

/// The recording handle. Cheap to clone.
#[derive(Clone)]
pub struct DeadLetterLog {
    sender: Option<mpsc::Sender<NewDeadLetter>>,
    metrics: Metrics,
}

impl DeadLetterLog {
    /// Records nothing (pipelines built without a database writer, in unit tests).
    pub fn off(metrics: Metrics) -> Self {
        Self {
            sender: None,
            metrics,
        }
    }

    /// Starts the writer and the pruner (letters older than `delivery_log.dead_letter_retention`
    /// go); the writer stops once every handle is dropped (after its last flush), or a while
    /// after `cancel` fires.
    pub fn start(
        store: Store,
        config: &DeliveryLogConfig,
        metrics: Metrics,
        cancel: CancellationToken,
        tasks: &tokio_util::task::TaskTracker,
    ) -> Self {
        let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
        tasks.spawn(super::prune(
            store.clone(),
            super::Kept::DeadLetters,
            config.dead_letter_retention.0,
            config.prune_interval.0,
            cancel.clone(),
        ));
        tasks.spawn(write(store, receiver, metrics.clone(), cancel));
        Self {
            sender: Some(sender),
            metrics,
        }
    }

    /// Records `letter` of event `event_id` (its body `body`, as published) for the webhook it
    /// names. Call it once the letter is in `<prefix>.dead` (published with a confirm). A letter
    /// that names no webhook or account (poison) is not recorded by webhook: returns false.
    pub fn record(&self, letter: &DeadLetter, event_id: &str, body: &[u8]) -> bool {
        let (Some(webhook_id), Some(account_id)) = (letter.webhook_id, &letter.account_id) else {
            return false;
        };
        let Some(sender) = &self.sender else {
            return false;
        };
        let row = NewDeadLetter {
            id: time_ordered_id(),
            account_id: account_id.clone(),
            webhook_id,
            event_id: event_id.to_string(),
            event_type: letter.event_type.clone().unwrap_or_default(),
            reason: letter.reason.clone(),
            detail: letter.detail.clone(),
            attempts: letter.attempts.unwrap_or(0),
            last_status: letter.last_status,
            // A letter owed to a webhook is an event that parsed as JSON, so this is UTF-8.
            body: String::from_utf8_lossy(body).into_owned(),
            created_at: Utc::now(),
        };
        if let Err(error) = sender.try_send(row) {
            let row = match error {
                mpsc::error::TrySendError::Full(row) | mpsc::error::TrySendError::Closed(row) => {
                    row
                }
            };
            self.metrics.dead_letters_unrecorded.inc();
            tracing::error!(webhook_id = %row.webhook_id, event_id = %row.event_id,
                reason = %row.reason, "dead letter not recorded by webhook (writer behind); \
                it stays in the dead-letter queue, replay it from there");
            return false;
        }
        true
    }
}

/// Batches letters and inserts them, trying a failed batch again for [`RETRY_FOR`].
async fn write(
    store: Store,
    mut receiver: mpsc::Receiver<NewDeadLetter>,
    metrics: Metrics,
    cancel: CancellationToken,
) {
    let mut batch = Vec::with_capacity(BATCH_ROWS);
    let shutdown_over = || async {
        cancel.cancelled().await;
        tokio::time::sleep(Duration::from_secs(10)).await;
    };
    loop {
        let first = tokio::select! {
            row = receiver.recv() => row,
            _ = shutdown_over() => None,
        };
        let Some(first) = first else { return };
        batch.push(first);
        let deadline = tokio::time::Instant::now() + FLUSH_EVERY;
        while batch.len() < BATCH_ROWS {
            match tokio::time::timeout_at(deadline, receiver.recv()).await {
                Ok(Some(row)) => batch.push(row),
                Ok(None) | Err(_) => break,
            }
        }
        insert_with_retries(&store, &batch, &metrics, &cancel).await;
        batch.clear();
    }
}

async fn insert_with_retries(
    store: &Store,
    batch: &[NewDeadLetter],
    metrics: &Metrics,
    cancel: &CancellationToken,
) {
    let rows = batch.len() as u64;
    let give_up = tokio::time::Instant::now() + RETRY_FOR;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let error =
            match tokio::time::timeout(INSERT_TIMEOUT, store.insert_dead_letters(batch)).await {
                Ok(Ok(())) => {
                    metrics.dead_letters_recorded.inc_by(rows);
                    return;
                }
                Ok(Err(error)) => error.to_string(),
                Err(_) => "the insert took too long".to_string(),
            };
        // Shutting down: a few more tries at most, then what is left stays with the broker.
        let out_of_time = tokio::time::Instant::now() + backoff >= give_up
            || (cancel.is_cancelled() && backoff >= MAX_BACKOFF);
        if out_of_time {
            metrics.dead_letters_unrecorded.inc_by(rows);
            let events: Vec<String> = batch
                .iter()
                .take(NAMED)
                .map(|row| format!("{}/{}", row.webhook_id, row.event_id))
                .collect();
            tracing::error!(rows, %error, ?events,
                "dead letters could not be recorded by webhook; they stay in the dead-letter \
                 queue: replay them from there (dead-letters replay --webhook-id)");
            return;
        }
        tracing::warn!(rows, %error, retry_in = ?backoff, "cannot record dead letters yet; trying again");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
