//! Operating on the dead-letter queue: list what is there and why, and replay deliveries whose
//! retries ran out (after the customer fixed their endpoint) as fresh first attempts. Both say
//! what they found: a listing counts the queue and its reasons, and a replay says why it left
//! each letter it skipped ([`SkipReason`]).
//!
//! Messages are taken with `basic.get` and left unacknowledged; closing the channel at the end
//! puts back everything that was not replayed, so listing changes nothing and a replay that
//! fails half-way loses nothing. RabbitMQ counts each such return as a delivery; the dead-letter
//! queue is declared with a delivery limit no listing reaches (see `queue::topology`), so
//! RabbitMQ 4.x's default limit of 20 never drops a dead letter.

use std::collections::BTreeMap;

use lapin::{
    options::{BasicAckOptions, BasicGetOptions},
    types::FieldTable,
    Connection,
};
use serde::Serialize;
use uuid::Uuid;

mod report;

pub use report::{Listing, SkipReason, SkippedLetter};

use crate::{
    config::Config,
    dead_reason::DeadReason,
    queue::{self, header_int, header_text, job, Names, Publisher},
    store::Store,
};

/// One dead letter, as `dead-letters list` prints it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeadLetterInfo {
    pub reason: Option<String>,
    pub detail: Option<String>,
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    pub webhook_id: Option<String>,
    pub account_id: Option<String>,
    pub attempts: Option<i64>,
    pub last_status: Option<i64>,
    pub dead_at: Option<String>,
}

impl DeadLetterInfo {
    fn of(message_id: Option<String>, headers: Option<&FieldTable>) -> Self {
        Self {
            // The worker's own reason, or the broker's for what it dead-lettered itself
            // (`delivery_limit` past amqp.delivery_limit, `rejected` after settle_timeout).
            reason: header_text(headers, job::DEAD_REASON)
                .or_else(|| header_text(headers, "x-first-death-reason")),
            detail: header_text(headers, job::DEAD_DETAIL).or_else(|| {
                header_text(headers, "x-first-death-queue")
                    .map(|queue| format!("dead-lettered by the broker from {queue}"))
            }),
            // A poison message has no event id (its message id only names what it is).
            event_id: message_id.filter(|id| !job::NO_EVENT_MESSAGE_IDS.contains(&id.as_str())),
            event_type: header_text(headers, job::EVENT_TYPE),
            webhook_id: header_text(headers, job::WEBHOOK_ID),
            account_id: header_text(headers, job::ACCOUNT_ID),
            attempts: header_int(headers, job::ATTEMPTS),
            last_status: header_int(headers, job::LAST_STATUS),
            dead_at: header_text(headers, job::DEAD_AT),
        }
    }
}

/// What a replay did.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Published to the deliveries queue as a first attempt, and removed from the dead letters.
    pub replayed: usize,
    /// Left in place: poison messages, or other webhooks than the one asked for.
    pub skipped: usize,
    /// `skipped`, by why. Not in the JSON summary scripts read; the progress lines show it.
    #[serde(skip)]
    pub skipped_by_reason: BTreeMap<SkipReason, usize>,
}

impl ReplaySummary {
    fn skip(&mut self, why: SkipReason) {
        self.skipped += 1;
        *self.skipped_by_reason.entry(why).or_default() += 1;
    }
}

/// A connection and channel on the dead-letter queue. Messages taken on the channel and not
/// acked go back to the queue when the connection closes.
struct DeadQueue {
    names: Names,
    connection: Connection,
    channel: lapin::Channel,
}

impl DeadQueue {
    async fn open(config: &Config) -> anyhow::Result<Self> {
        let connection = crate::queue::connect(&config.amqp.url).await?;
        let channel = connection.create_channel().await?;
        Ok(Self {
            names: Names::new(&config.amqp.prefix),
            connection,
            channel,
        })
    }

    /// The next dead letter, left unacknowledged; `None` when the queue has no more.
    async fn next(&self) -> anyhow::Result<Option<lapin::message::BasicGetMessage>> {
        Ok(self
            .channel
            .basic_get(&self.names.dead, BasicGetOptions { no_ack: false })
            .await?)
    }

    /// The messages ready in the queue now (those taken and not acked are not counted).
    async fn count(&self) -> anyhow::Result<u32> {
        Ok(queue::counts(&self.channel, &self.names.dead).await?.0)
    }

    async fn close(self, why: &str) {
        let _ = self.connection.close(200, why).await;
    }
}

fn message_id(message: &lapin::message::BasicGetMessage) -> Option<String> {
    message
        .properties
        .message_id()
        .as_ref()
        .map(|id| id.to_string())
}

/// Up to `limit` dead letters, oldest first. Nothing is removed.
pub async fn list(config: &Config, limit: usize) -> anyhow::Result<Vec<DeadLetterInfo>> {
    Ok(list_counted(config, limit).await?.letters)
}

/// [`list`], with the number of letters the queue held.
pub async fn list_counted(config: &Config, limit: usize) -> anyhow::Result<Listing> {
    let dead = DeadQueue::open(config).await?;
    let in_queue = dead.count().await?;
    let mut letters = Vec::new();
    while letters.len() < limit {
        let Some(message) = dead.next().await? else {
            break;
        };
        letters.push(DeadLetterInfo::of(
            message_id(&message),
            message.properties.headers().as_ref(),
        ));
    }
    // Closing returns every message taken to the queue.
    dead.close("listed").await;
    Ok(Listing { letters, in_queue })
}

/// Deliveries owed to a webhook (retries ran out, a 410, a webhook disabled or unreadable), and
/// delivery jobs the broker itself dead-lettered (past `amqp.delivery_limit`, or rejected after
/// `amqp.settle_timeout`): all name their webhook.
fn replayable_reason(headers: Option<&FieldTable>) -> bool {
    let reason = |name| header_text(headers, name)?.parse::<DeadReason>().ok();
    match header_text(headers, job::DEAD_REASON) {
        Some(_) => reason(job::DEAD_REASON).is_some_and(DeadReason::is_owed_to_webhook),
        None => matches!(
            reason("x-first-death-reason"),
            Some(DeadReason::DeliveryLimit | DeadReason::Rejected)
        ),
    }
}

/// Where a replay sends `headers`'s letter: its webhook and account, or why it stays. `wanted`
/// is the one webhook asked for, if any.
fn replay_target(
    headers: Option<&FieldTable>,
    wanted: Option<Uuid>,
) -> Result<(Uuid, String), SkipReason> {
    if !replayable_reason(headers) {
        return Err(SkipReason::NotReplayable);
    }
    let webhook_id = header_text(headers, job::WEBHOOK_ID)
        .and_then(|id| id.parse::<Uuid>().ok())
        .ok_or(SkipReason::NoWebhook)?;
    if wanted.is_some_and(|wanted| wanted != webhook_id) {
        return Err(SkipReason::OtherWebhook);
    }
    let account_id = header_text(headers, job::ACCOUNT_ID).ok_or(SkipReason::NoAccount)?;
    Ok((webhook_id, account_id))
}

/// Told how a replay goes, as it goes: the CLI shows it, the API's redrive has `()`.
pub trait ReplayProgress {
    /// The replay will look at up to `total` dead letters: the queue's count when it started,
    /// at most the limit. More may arrive meanwhile.
    fn started(&mut self, total: u64);
    /// `letter` stays in the queue; [`advanced`](Self::advanced) follows.
    fn skipped(&mut self, letter: &SkippedLetter);
    /// One more dead letter was looked at; `summary` counts them all so far.
    fn advanced(&mut self, summary: &ReplaySummary);
    /// The replay ended: `complete`, or stopped by an error after what `summary` says.
    fn finished(&mut self, summary: &ReplaySummary, complete: bool);
}

/// No progress to show.
impl ReplayProgress for () {
    fn started(&mut self, _: u64) {}
    fn skipped(&mut self, _: &SkippedLetter) {}
    fn advanced(&mut self, _: &ReplaySummary) {}
    fn finished(&mut self, _: &ReplaySummary, _: bool) {}
}

/// Replays up to `limit` deliveries that died with `retries_exhausted`, or as jobs the broker
/// dead-lettered (only those of `webhook`, when given): each is published to the deliveries
/// queue as attempt 1 of a fresh schedule, with a confirm, and only then removed from the dead
/// letters.
pub async fn replay(
    config: &Config,
    limit: usize,
    webhook: Option<Uuid>,
) -> anyhow::Result<ReplaySummary> {
    replay_with_progress(config, limit, webhook, &mut ()).await
}

/// [`replay`], telling `progress` of each dead letter looked at.
pub async fn replay_with_progress<P: ReplayProgress>(
    config: &Config,
    limit: usize,
    webhook: Option<Uuid>,
    progress: &mut P,
) -> anyhow::Result<ReplaySummary> {
    let dead = DeadQueue::open(config).await?;
    // The letters recorded by webhook are told what the replay sent, so that a tenant's redrive
    // does not send it again (and a letter the tenant redrove already is not sent twice). The
    // queue is the operator's record: without the database, the replay still goes on.
    let store = match Store::from_config(config).await {
        Ok(store) => Some(store),
        Err(error) => {
            tracing::warn!(error = %format!("{error:#}"),
                "the dead letters recorded by webhook cannot be read; replaying without marking them redriven");
            None
        }
    };
    let mut summary = ReplaySummary::default();
    let result = replay_messages(
        &dead,
        store.as_ref(),
        limit,
        webhook,
        &mut summary,
        progress,
    )
    .await;
    progress.finished(&summary, result.is_ok());
    dead.close("replayed").await;
    result.map(|()| summary)
}

async fn replay_messages<P: ReplayProgress>(
    dead: &DeadQueue,
    store: Option<&Store>,
    limit: usize,
    webhook: Option<Uuid>,
    summary: &mut ReplaySummary,
    progress: &mut P,
) -> anyhow::Result<()> {
    let publisher = Publisher::open(&dead.connection).await?;
    progress.started(u64::from(dead.count().await?).min(limit as u64));
    while summary.replayed + summary.skipped < limit {
        let Some(message) = dead.next().await? else {
            break;
        };
        let headers = message.properties.headers().as_ref();
        let (webhook_id, account_id) = match replay_target(headers, webhook) {
            Ok(target) => target,
            Err(why) => {
                let info = DeadLetterInfo::of(message_id(&message), headers);
                progress.skipped(&SkippedLetter {
                    event_id: info.event_id,
                    dead_reason: info.reason,
                    why,
                });
                summary.skip(why);
                progress.advanced(summary);
                continue;
            }
        };
        let job = job::Job {
            webhook_id,
            account_id,
            attempt: 1,
            last_error: Some("replayed from the dead letters".into()),
            parks: 0,
            parked_since: None,
        };
        let message_id = message_id(&message).unwrap_or_default();
        if let Some(store) = store {
            if store
                .event_letters_redriven(webhook_id, &message_id)
                .await
                .unwrap_or(false)
            {
                progress.skipped(&SkippedLetter {
                    event_id: Some(message_id),
                    dead_reason: header_text(headers, job::DEAD_REASON),
                    why: SkipReason::AlreadyRedriven,
                });
                summary.skip(SkipReason::AlreadyRedriven);
                progress.advanced(summary);
                continue;
            }
        }
        publisher
            .publish(
                "",
                &dead.names.deliveries,
                &message.data,
                job.headers(),
                &message_id,
            )
            .await?;
        message.ack(BasicAckOptions::default()).await?;
        if let Some(store) = store {
            if let Err(error) = store
                .mark_event_redriven(webhook_id, &message_id, chrono::Utc::now())
                .await
            {
                tracing::warn!(%error, %webhook_id, event_id = message_id,
                    "replayed, but its letter recorded by webhook could not be marked redriven");
            }
        }
        summary.replayed += 1;
        progress.advanced(summary);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
