//! The delivery log: a record of every attempt (which webhook, event, attempt, outcome, HTTP
//! status or error, duration, time, and when a failed or parked delivery is due again), so an
//! on-call engineer can answer "did you send it?" and "when will you try again?".
//!
//! Recording never slows or endangers a delivery: [`DeliveryLog::record`] only hands the row to
//! a bounded channel (`try_send`); a writer task inserts what arrived in batches (up to 512 rows
//! in one transaction, at most every [`FLUSH_EVERY`]). When the database is slow, down or full,
//! rows are dropped, not deliveries: a full channel or a failed insert counts the rows in
//! `delivery_log_dropped_total`. A pruner deletes rows older than `delivery_log.retention` in
//! small batches.
//!
//! Dead letters by webhook are written the same way, with retries instead of drops
//! ([`dead_letters`]).

pub mod dead_letters;

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    config::{DeliveryLogConfig, RecordMode},
    store::{
        attempts::{NewAttempt, MAX_INSERT_ROWS},
        Store,
    },
    telemetry::Metrics,
};

/// Rows waiting for the writer; beyond this, new rows are dropped (and counted).
const CHANNEL_CAPACITY: usize = 20_000;
/// Most rows per insert: one statement when the log is busy.
const BATCH_ROWS: usize = MAX_INSERT_ROWS;
/// Longest a row waits for its batch to fill.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// An insert that takes longer is given up (its rows counted as dropped).
const INSERT_TIMEOUT: Duration = Duration::from_secs(5);
/// Rows deleted per pruning statement, so pruning never holds a long lock.
const PRUNE_BATCH: i64 = 1_000;

/// What became of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOutcome {
    Delivered,
    Failed,
    Parked,
    DeadLettered,
    Disabled,
}

impl LogOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            LogOutcome::Delivered => "delivered",
            LogOutcome::Failed => "failed",
            LogOutcome::Parked => "parked",
            LogOutcome::DeadLettered => "dead_lettered",
            LogOutcome::Disabled => "disabled",
        }
    }

    pub const ALL: [&'static str; 5] =
        ["delivered", "failed", "parked", "dead_lettered", "disabled"];
}

/// One attempt to record.
#[derive(Debug, Clone)]
pub struct LogEntry<'a> {
    pub account_id: &'a str,
    pub webhook_id: Uuid,
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub attempt: u32,
    pub outcome: LogOutcome,
    pub status: Option<u16>,
    pub error: Option<&'a str>,
    pub duration: Duration,
    /// When the delivery is due again (a failed attempt with a retry scheduled, a park).
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// The recording handle. Cheap to clone.
#[derive(Clone)]
pub struct DeliveryLog {
    sender: Option<mpsc::Sender<NewAttempt>>,
    mode: RecordMode,
    metrics: Metrics,
}

impl DeliveryLog {
    /// A log that records nothing (`delivery_log.record = "off"`, and tests).
    pub fn off(metrics: Metrics) -> Self {
        Self {
            sender: None,
            mode: RecordMode::Off,
            metrics,
        }
    }

    /// Starts the writer and the pruner; both stop when `cancel` fires (the writer after one
    /// last flush).
    pub fn start(
        store: Store,
        config: &DeliveryLogConfig,
        metrics: Metrics,
        cancel: CancellationToken,
        tasks: &tokio_util::task::TaskTracker,
    ) -> Self {
        if config.record == RecordMode::Off {
            return Self::off(metrics);
        }
        let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
        tasks.spawn(write(
            store.clone(),
            receiver,
            metrics.clone(),
            cancel.clone(),
        ));
        tasks.spawn(prune(
            store,
            Kept::Attempts,
            config.retention.0,
            config.prune_interval.0,
            cancel,
        ));
        Self {
            sender: Some(sender),
            mode: config.record,
            metrics,
        }
    }

    /// Hands the attempt to the writer, or drops it (counted) when the writer is behind.
    pub fn record(&self, entry: LogEntry<'_>) {
        let Some(sender) = &self.sender else { return };
        if self.mode == RecordMode::Failures && entry.outcome == LogOutcome::Delivered {
            return;
        }
        let now = Utc::now();
        let millis = u64::try_from(now.timestamp_millis()).unwrap_or(0);
        let row = NewAttempt {
            // Time-ordered (UUIDv7), so that the primary key's inserts land at the end of its
            // b-tree instead of all over it; random bits from the thread's generator rather than
            // a getrandom system call per row.
            id: uuid::Builder::from_unix_timestamp_millis(millis, &rand::random()).into_uuid(),
            account_id: entry.account_id.to_string(),
            webhook_id: entry.webhook_id,
            event_id: entry.event_id.to_string(),
            event_type: entry.event_type.to_string(),
            attempt: entry.attempt,
            outcome: entry.outcome.as_str(),
            status: entry.status,
            error: entry.error.map(str::to_string),
            duration_ms: i64::try_from(entry.duration.as_millis()).unwrap_or(i64::MAX),
            created_at: now,
            next_attempt_at: entry.next_attempt_at,
        };
        if sender.try_send(row).is_err() {
            self.metrics.delivery_log_dropped.inc();
        }
    }

    /// Closes the channel: the writer flushes what it holds and ends.
    pub fn close(self) {
        drop(self.sender);
    }
}

/// Batches rows and inserts them until every sender is gone (the pipeline has drained), or,
/// should a handle outlive it, a while after shutdown began.
async fn write(
    store: Store,
    mut receiver: mpsc::Receiver<NewAttempt>,
    metrics: Metrics,
    cancel: CancellationToken,
) {
    let mut batch = Vec::with_capacity(BATCH_ROWS);
    let mut last_warning: Option<tokio::time::Instant> = None;
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
        // The rows gather for FLUSH_EVERY and are then taken all at once. Taken as each one
        // came, they woke this task once per delivery: a wake-up of another thread, since
        // deliveries run on threads of their own.
        tokio::time::sleep(FLUSH_EVERY).await;
        loop {
            let closed = take_waiting(&mut receiver, &mut batch);
            let full = batch.len() == BATCH_ROWS;
            if !batch.is_empty() {
                insert(&store, &batch, &metrics, &mut last_warning).await;
                batch.clear();
            }
            if closed {
                return;
            }
            if !full {
                break;
            }
        }
    }
}

/// Moves rows already waiting into `batch` until it holds [`BATCH_ROWS`]; true once every
/// sender is gone and nothing is left.
fn take_waiting(receiver: &mut mpsc::Receiver<NewAttempt>, batch: &mut Vec<NewAttempt>) -> bool {
    while batch.len() < BATCH_ROWS {
        match receiver.try_recv() {
            Ok(row) => batch.push(row),
            Err(mpsc::error::TryRecvError::Empty) => return false,
            Err(mpsc::error::TryRecvError::Disconnected) => return true,
        }
    }
    false
}

/// Inserts one batch within [`INSERT_TIMEOUT`]; what fails is counted as dropped.
async fn insert(
    store: &Store,
    batch: &[NewAttempt],
    metrics: &Metrics,
    last_warning: &mut Option<tokio::time::Instant>,
) {
    let rows = batch.len() as u64;
    match tokio::time::timeout(INSERT_TIMEOUT, store.insert_attempts(batch)).await {
        Ok(Ok(())) => {
            metrics.delivery_log_rows.inc_by(rows);
        }
        outcome => {
            metrics.delivery_log_dropped.inc_by(rows);
            // One line every ten seconds at most: a database outage must not flood the log.
            if last_warning.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                let why = match outcome {
                    Ok(Err(error)) => error.to_string(),
                    _ => "the insert took too long".to_string(),
                };
                tracing::warn!(rows, error = %why, "delivery log rows dropped; deliveries go on");
                *last_warning = Some(tokio::time::Instant::now());
            }
        }
    }
}

/// Which table a pruner keeps within its retention.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kept {
    /// `delivery_attempts`, for `delivery_log.retention`.
    Attempts,
    /// `dead_letters`, for `delivery_log.dead_letter_retention`.
    DeadLetters,
}

impl Kept {
    async fn prune_batch(
        self,
        store: &Store,
        before: chrono::DateTime<Utc>,
    ) -> Result<u64, crate::store::StoreError> {
        match self {
            Kept::Attempts => store.prune_attempts(before, PRUNE_BATCH).await,
            Kept::DeadLetters => store.prune_dead_letters(before, PRUNE_BATCH).await,
        }
    }
}

/// Deletes rows of `kept` older than `retention`, in batches, every `interval`.
pub(crate) async fn prune(
    store: Store,
    kept: Kept,
    retention: Duration,
    interval: Duration,
    cancel: CancellationToken,
) {
    let retention = chrono::TimeDelta::from_std(retention).unwrap_or(chrono::TimeDelta::MAX);
    loop {
        let before = Utc::now()
            .checked_sub_signed(retention)
            .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
        loop {
            match kept.prune_batch(&store, before).await {
                Ok(deleted) if deleted as i64 >= PRUNE_BATCH && !cancel.is_cancelled() => continue,
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%error, table = ?kept, "could not prune old rows; will try again");
                    break;
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
