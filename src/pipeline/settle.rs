//! Making a message's outcomes durable: every retry job and dead letter is published with a
//! confirm before the message is acked.
//!
//! By the time this runs the HTTP attempts have been made, so putting the message back would make
//! them all again (duplicates for every webhook that was delivered, and a second retry chain for
//! every one that failed). Instead the outcomes stay in memory, and each is published exactly
//! once, unless the broker said no to it (a nack, a return) or the channel it went on was lost:
//! only those are published again, with backoff, while the message is held unacked (at most the
//! prefetch window's messages, whatever the broker does). Nothing is published while the broker
//! blocks publishing (a resource alarm); a publish already sent has its original confirm waited
//! for (see [`crate::queue::publisher`]). All of it within `amqp.settle_timeout` from the first
//! publish, time blocked included: past it the message is rejected, the broker dead-letters it
//! into the dead letters (reason `rejected`), and the webhooks still owed an outcome are named
//! ([`Owed`]); it never loops. Shutdown does not cut it short: the drain's grace period bounds it.
//! A publisher lost with its connection is waited for (the worker opens a new one without
//! touching the consumer); only when the session ends does it leave the message to the broker.
//! A lost session (see [`super::session`]) publishes nothing more: the message is redelivered.

use std::time::Duration;

use futures_util::future::join_all;
use lapin::types::FieldTable;
use tokio::time::Instant;
use tracing::{error, warn};
use uuid::Uuid;

use super::{Disposition, Next, Pipeline};
use crate::{
    dead_reason::DeadReason,
    queue::{
        batch::Batch,
        header_text,
        job::{DeadLetter, ACCOUNT_ID, NO_EVENT_MESSAGE_IDS, WEBHOOK_ID},
        outlet::Unavailable,
        Outlet, PublishError,
    },
    retry::jittered,
    telemetry::SettleOutcome,
};
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A message given up on whose outcomes some webhooks are still owed: the broker dead-letters
/// the event as it came (reason `rejected`), and these are the webhooks it is owed to.
///
/// Each is also recorded as a dead letter of its webhook (reason `rejected`) by
/// [`Pipeline::give_up`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owed {
    /// The event's id (or `poison`, `panic`, ... when none could be read).
    pub message_id: String,
    /// Why: [`DeadReason::Rejected`] (outcomes not durable within `amqp.settle_timeout`).
    pub reason: DeadReason,
    /// The webhooks whose retry job or dead letter could not be made durable.
    pub webhooks: Vec<Uuid>,
}

impl Pipeline {
    /// Publishes every retry job and dead letter with a confirm; acks once all were taken.
    /// `raw` is the body every outcome carries.
    pub(super) async fn settle(
        &self,
        outlet: &Outlet,
        raw: &[u8],
        message_id: &str,
        nexts: Vec<Next>,
    ) -> Disposition {
        // Letters owed to a webhook: recorded by webhook once they are in the dead letters.
        let mut owed = Vec::new();
        let pending: Vec<(String, FieldTable)> = nexts
            .into_iter()
            .filter_map(|next| match next {
                Next::Done => None,
                Next::Job(job) => Some((self.names.deliveries.clone(), job.headers())),
                Next::Batch(batch) => Some((self.names.deliveries.clone(), batch.headers())),
                Next::Retry { delay, job } => Some((self.names.retry(delay), job.headers())),
                Next::Dead(dead) => {
                    let headers = dead.headers();
                    if dead.webhook_id.is_some() && !NO_EVENT_MESSAGE_IDS.contains(&message_id) {
                        owed.push(dead);
                    }
                    Some((self.names.dead.clone(), headers))
                }
            })
            .collect();
        if super::session::is_lost() {
            warn!(
                message_id,
                "the session was lost; the broker hands the message to the next"
            );
            return Disposition::Leave;
        }
        if pending.is_empty() {
            return Disposition::Ack;
        }
        tokio::select! {
            disposition = self.publish_outcomes(outlet, raw, message_id, pending, &owed) => disposition,
            _ = super::session::lost() => {
                warn!(message_id, "the session was lost while its outcomes were published; the broker hands the message to the next");
                Disposition::Leave
            }
        }
    }

    /// Publishes `pending` until each was confirmed, or `amqp.settle_timeout` passed.
    async fn publish_outcomes(
        &self,
        outlet: &Outlet,
        raw: &[u8],
        message_id: &str,
        mut pending: Vec<(String, FieldTable)>,
        owed: &[DeadLetter],
    ) -> Disposition {
        let deadline = Instant::now() + self.settle_timeout;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let publisher = match outlet.ready(deadline).await {
                Ok(publisher) => publisher,
                Err(Unavailable::Ended) => {
                    warn!(message_id, failed = pending.len(),
                        "the session ended before the outcomes were durable; the broker will hand the message back");
                    return Disposition::Leave;
                }
                Err(Unavailable::Timeout) => {
                    return self.give_up(message_id, raw, &pending, "no publishing connection")
                }
            };
            let publishes = pending.iter().map(|(queue, headers)| {
                publisher.publish_until("", queue, raw, headers.clone(), message_id, deadline)
            });
            let results = tokio::select! {
                results = join_all(publishes) => results,
                _ = outlet.ended() => {
                    warn!(message_id, failed = pending.len(),
                        "the session ended before the outcomes were confirmed; the broker will hand the message back");
                    return Disposition::Leave;
                }
            };
            let mut last_error: Option<PublishError> = None;
            let mut final_error = false;
            pending = pending
                .into_iter()
                .zip(results)
                .filter_map(|(outcome, result)| {
                    let error = result.err()?;
                    final_error |= !error.may_publish_again();
                    last_error = Some(error);
                    Some(outcome)
                })
                .collect();
            let Some(last_error) = last_error else {
                for letter in owed {
                    self.record_dead_letter(letter, message_id, raw);
                }
                return Disposition::Ack;
            };
            let wait = jittered(backoff);
            if final_error || Instant::now() + wait >= deadline {
                return self.give_up(message_id, raw, &pending, &last_error.to_string());
            }
            warn!(message_id, failed = pending.len(), error = %last_error, retry_in = ?wait,
                "the broker refused some outcomes, or lost their channel; publishing only those again");
            self.metrics.settle(SettleOutcome::Republished);
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// The outcomes could not be made durable within `amqp.settle_timeout`: reject the message
    /// into the dead letters and name the webhooks it still owes.
    fn give_up(
        &self,
        message_id: &str,
        raw: &[u8],
        pending: &[(String, FieldTable)],
        why: &str,
    ) -> Disposition {
        let owed: Vec<(Uuid, Option<String>)> = pending
            .iter()
            .flat_map(|(_, headers)| owed_by(headers))
            .collect();
        error!(message_id, failed = pending.len(), error = why,
            "outcomes still not durable after amqp.settle_timeout; rejecting the message into the dead letters");
        self.metrics.settle(SettleOutcome::Rejected);
        // The broker dead-letters the message as it came; each webhook still owed an outcome
        // gets it recorded as its own dead letter, so its owner can list and redrive it.
        if !NO_EVENT_MESSAGE_IDS.contains(&message_id) {
            for (webhook, account) in &owed {
                let detail = "outcome not durable within amqp.settle_timeout".into();
                let letter = DeadLetter {
                    webhook_id: Some(*webhook),
                    account_id: account.clone(),
                    ..DeadLetter::new(DeadReason::Rejected, detail)
                };
                self.record_dead_letter(&letter, message_id, raw);
            }
        }
        self.owed(Owed {
            message_id: message_id.to_string(),
            reason: DeadReason::Rejected,
            webhooks: owed.into_iter().map(|(webhook, _)| webhook).collect(),
        });
        Disposition::Reject
    }

    /// Every dead letter owed to named webhooks that the broker makes (the message is rejected)
    /// comes through here: logged and counted.
    pub fn owed(&self, owed: Owed) {
        if owed.webhooks.is_empty() {
            return;
        }
        error!(message_id = owed.message_id, reason = %owed.reason, webhooks = ?owed.webhooks,
            "dead letter owed to webhooks");
        self.metrics
            .owed_dead_letters(owed.reason, owed.webhooks.len());
    }
}

/// The webhooks (and their account) an outcome not made durable was owed to: a retry job's or
/// dead letter's one, or every webhook a fan-out batch names.
fn owed_by(headers: &FieldTable) -> Vec<(Uuid, Option<String>)> {
    if let Ok(Some(batch)) = Batch::from_headers(Some(headers)) {
        let account = Some(batch.account_id);
        return batch
            .webhook_ids
            .into_iter()
            .map(|webhook| (webhook, account.clone()))
            .collect();
    }
    header_text(Some(headers), WEBHOOK_ID)
        .and_then(|id| id.parse().ok())
        .map(|webhook| (webhook, header_text(Some(headers), ACCOUNT_ID)))
        .into_iter()
        .collect()
}
