//! Dead letters owed to webhooks: the letter of an event for a webhook whose row cannot be
//! decoded (`webhook_unreadable`), of a retry for a webhook disabled meanwhile
//! (`webhook_disabled`), and their recording by webhook once they are durable in the dead
//! letters. A disabled or unreadable webhook keeps its deliveries this way, so re-enabling (or
//! fixing) it and redriving delivers them; only a deleted webhook's retries are dropped.

use std::sync::Arc;

use bytes::Bytes;
use tracing::{info, warn};

use super::{Disposition, Next, Pipeline};
use crate::{
    dead_reason::DeadReason,
    event::Event,
    queue::{
        job::{DeadLetter, Job, INVALID_JOB_MESSAGE_ID},
        Outlet,
    },
    store::{StoreError, UnreadableWebhook},
    telemetry::{DeliveryOutcome, SettleOutcome},
    webhook::Webhook,
};

impl Pipeline {
    /// Records `letter` (which must name its webhook and account) of the message `raw` (event
    /// id `event_id`) by webhook, so the tenant can list and redrive it. Call it once the letter
    /// is durable in the dead letters: published to `<prefix>.dead` with a confirm, or the
    /// message rejected there by the broker. Returns false when it names no webhook or could
    /// not be handed to the writer (counted in `dead_letters_unrecorded_total`).
    pub fn record_dead_letter(&self, letter: &DeadLetter, event_id: &str, raw: &[u8]) -> bool {
        self.dead_log.record(letter, event_id, raw)
    }

    /// The dead letter of an event owed to a webhook whose row cannot be decoded. Made in the
    /// delivery's span.
    pub(super) fn unreadable_letter(
        &self,
        row: &UnreadableWebhook,
        event_type: &str,
        attempts: u32,
    ) -> Next {
        warn!(account_id = %row.account_id,
            "the webhook's row cannot be decoded (secret or settings); dead-lettering its delivery");
        self.metrics.delivery(DeliveryOutcome::DeadLettered);
        Next::Dead(DeadLetter {
            reason: DeadReason::WebhookUnreadable,
            detail: "the webhook's stored secret or settings cannot be decoded".into(),
            webhook_id: Some(row.id),
            account_id: Some(row.account_id.clone()),
            event_type: Some(event_type.to_string()),
            attempts: Some(attempts),
            last_status: None,
        })
    }

    /// The retry job's webhook, when a delivery can be made to it; otherwise what became of
    /// the message: requeued (the database cannot be read), dropped (the webhook was deleted),
    /// or a dead letter for it (disabled, or its row cannot be decoded). `event`: the job's
    /// event, when its body reads. Runs in the delivery's span.
    pub(super) async fn job_webhook(
        &self,
        outlet: &Outlet,
        raw: &Bytes,
        job: &Job,
        event: Option<&Event>,
    ) -> Result<Arc<Webhook>, Disposition> {
        match self.find_webhook(job, event).await {
            Some(Found::Webhook(webhook)) => Ok(webhook),
            Some(Found::Not(Next::Done)) => Err(Disposition::Ack),
            Some(Found::Not(letter)) => {
                Err(self.settle_job_letter(outlet, raw, letter, event).await)
            }
            None => Err(Disposition::Requeue),
        }
    }

    /// The webhook a delivery of `job` is to be made to, or what is owed instead: nothing (it
    /// was deleted) or its dead letter (disabled, or its row cannot be decoded; named with
    /// `event`'s type when its body reads). `None`: the database cannot be read, so the message
    /// goes back to the queue. Runs in the delivery's span.
    pub(super) async fn find_webhook(&self, job: &Job, event: Option<&Event>) -> Option<Found> {
        let made = job.attempt.saturating_sub(1);
        let event_type = event.map(|event| event.event_type.as_str()).unwrap_or("");
        let webhook = match self.current_webhook(job).await {
            Ok(webhook) => webhook,
            Err(StoreError::Decrypt(_) | StoreError::Corrupt(_) | StoreError::MissingKey) => {
                // The row is there but cannot be read: no delivery can be made until it is
                // fixed; the delivery waits as a dead letter for it, to be redriven then.
                let row = UnreadableWebhook {
                    id: job.webhook_id,
                    account_id: job.account_id.clone(),
                    enabled_events: Vec::new(),
                    disabled_at: None,
                };
                return Some(Found::Not(self.unreadable_letter(&row, event_type, made)));
            }
            Err(error) => {
                warn!(%error, "cannot read the webhook; the message goes back to the queue");
                self.metrics.settle(SettleOutcome::Requeued);
                return None;
            }
        };
        let Some(webhook) = webhook else {
            if let Some(row) = self.registry.unreadable(job.webhook_id) {
                return Some(Found::Not(self.unreadable_letter(&row, event_type, made)));
            }
            info!("webhook deleted; delivery dropped");
            self.metrics.delivery(DeliveryOutcome::Dropped);
            return Some(Found::Not(Next::Done));
        };
        if !webhook.is_enabled_at(chrono::Utc::now()) {
            // Kept as a dead letter for the webhook: re-enabling it and redriving delivers it.
            info!(
                "webhook disabled; its pending delivery becomes a dead letter (webhook_disabled)"
            );
            self.metrics.delivery(DeliveryOutcome::DeadLettered);
            return Some(Found::Not(Next::Dead(DeadLetter {
                reason: DeadReason::WebhookDisabled,
                detail: job.last_error.clone().unwrap_or_default(),
                webhook_id: Some(webhook.id),
                account_id: Some(webhook.account_id.clone()),
                event_type: event.map(|event| event.event_type.clone()),
                attempts: Some(made),
                last_status: None,
            })));
        }
        Some(Found::Webhook(webhook))
    }

    /// Makes a job's dead letter durable, under the event's id when its body reads.
    async fn settle_job_letter(
        &self,
        outlet: &Outlet,
        raw: &Bytes,
        letter: Next,
        event: Option<&Event>,
    ) -> Disposition {
        let id = event.map_or(INVALID_JOB_MESSAGE_ID, |event| event.id.as_str());
        self.settle(outlet, raw, id, vec![letter]).await
    }
}

/// What a job's webhook is now ([`Pipeline::find_webhook`]).
pub(super) enum Found {
    /// A delivery can be made to it.
    Webhook(Arc<Webhook>),
    /// None can: what is owed instead ([`Next::Done`] when it was deleted, or its dead letter).
    Not(Next),
}
