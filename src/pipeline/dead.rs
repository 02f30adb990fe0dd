//! Dead letters the pipeline makes itself: of a delivery (retries exhausted, endpoint gone), of
//! a poison message, and of a message whose handling panicked.
//!
//! A message the broker has handed out `amqp.delivery_limit` times without its being settled (the
//! worker crashed or lost its session while handling it, or a retry's webhook could not be read
//! for that long) is dead-lettered here, one letter per webhook it is owed to (reason
//! `delivery_limit`), one delivery before the broker would dead-letter it naming no webhook: its
//! owners can then list and redrive it. Such a message is not attempted again: it has already
//! failed to settle that many times.
//!
//! A message larger than `amqp.max_message_bytes` is never published again: its dead letter
//! carries the headers (reason `too_large`, the size in the detail) and an empty body, so an
//! oversized message costs the broker its bytes once, not twice.

use bytes::Bytes;
use lapin::types::FieldTable;
use uuid::Uuid;

use super::{Disposition, Next, Pipeline};
use crate::{
    event::{Event, PoisonReason},
    queue::{
        account_header, header_int, header_text,
        job::{DeadLetter, Job},
        Outlet,
    },
    webhook::Webhook,
};

/// The header a quorum queue sets on a redelivered message: how many times it was handed out
/// and returned unsettled.
const DELIVERY_COUNT: &str = "x-delivery-count";
const OVER_LIMIT: &str = "delivery_limit";

impl Pipeline {
    /// True when the broker has handed this message out `amqp.delivery_limit` times already:
    /// one more return and it would dead-letter the message itself, naming no webhook.
    pub fn over_delivery_limit(&self, headers: Option<&FieldTable>) -> bool {
        header_int(headers, DELIVERY_COUNT)
            .is_some_and(|count| count >= i64::from(self.delivery_limit))
    }

    /// Dead-letters an event over the delivery limit, one letter per webhook it is owed to.
    /// `None` when it cannot be matched (its account header or body does not read): the usual
    /// handling dead-letters it as poison, without an attempt.
    pub async fn event_over_limit(
        &self,
        outlet: &Outlet,
        raw: &Bytes,
        headers: Option<&FieldTable>,
    ) -> Option<Disposition> {
        let account = account_header(headers)
            .ok()?
            .unwrap_or_else(|| self.default_account.clone());
        let event = Event::parse_shared(raw, self.max_message_bytes).ok()?;
        let detail = self.over_limit_detail(headers);
        let mut letters: Vec<Next> = self
            .registry
            .matching(&account, &event.event_type)
            .iter()
            .map(|webhook| Next::Dead(dead_letter(webhook, &event, OVER_LIMIT, &detail, 0, None)))
            .collect();
        letters.extend(
            self.registry
                .matching_unreadable(&account, &event.event_type)
                .iter()
                .map(|row| {
                    Next::Dead(DeadLetter {
                        reason: OVER_LIMIT.into(),
                        detail: detail.clone(),
                        webhook_id: Some(row.id),
                        account_id: Some(row.account_id.clone()),
                        event_type: Some(event.event_type.clone()),
                        attempts: Some(0),
                        last_status: None,
                    })
                }),
        );
        tracing::warn!(event_id = %event.id, webhooks = letters.len(), detail,
            "event over amqp.delivery_limit; dead-lettering it for each webhook it is owed to");
        for _ in &letters {
            self.metrics.delivery("dead_lettered");
        }
        Some(self.settle(outlet, raw, &event.id, letters).await)
    }

    /// Dead-letters a retry job over the delivery limit, for its webhook. `None` when the job's
    /// headers or body do not read: the usual handling dead-letters it.
    pub async fn job_over_limit(
        &self,
        outlet: &Outlet,
        raw: &Bytes,
        headers: Option<&FieldTable>,
    ) -> Option<Disposition> {
        let job = Job::from_headers(headers).ok()?;
        let event = Event::parse_shared(raw, self.max_message_bytes).ok()?;
        let detail = self.over_limit_detail(headers);
        tracing::warn!(event_id = %event.id, webhook_id = %job.webhook_id, attempt = job.attempt,
            detail, "retry over amqp.delivery_limit; dead-lettering it for its webhook");
        self.metrics.delivery("dead_lettered");
        let letter = DeadLetter {
            reason: OVER_LIMIT.into(),
            detail: job.last_error.clone().map_or(detail.clone(), |last| {
                format!("{detail}; last error: {last}")
            }),
            webhook_id: Some(job.webhook_id),
            account_id: Some(job.account_id.clone()),
            event_type: Some(event.event_type.clone()),
            attempts: Some(job.attempt.saturating_sub(1)),
            last_status: None,
        };
        Some(
            self.settle(outlet, raw, &event.id, vec![Next::Dead(letter)])
                .await,
        )
    }

    fn over_limit_detail(&self, headers: Option<&FieldTable>) -> String {
        let count = header_int(headers, DELIVERY_COUNT).unwrap_or_default();
        format!(
            "handed out {count} times without being settled (amqp.delivery_limit {})",
            self.delivery_limit
        )
    }

    /// Dead-letters a poison message; a too large one without its body.
    pub(super) async fn poison(
        &self,
        outlet: &Outlet,
        raw: &[u8],
        reason: &PoisonReason,
        dead: DeadLetter,
    ) -> Disposition {
        let body: &[u8] = match reason {
            PoisonReason::TooLarge { .. } => &[],
            _ => raw,
        };
        self.settle(outlet, body, "poison", vec![Next::Dead(dead)])
            .await
    }

    /// Dead-letters a message whose handling panicked (reason `panic`), with the panic's message.
    /// A retry job names its webhook; an event's webhooks are not known at this point.
    pub async fn dead_letter_panic(
        &self,
        outlet: &Outlet,
        raw: &Bytes,
        headers: Option<&FieldTable>,
        detail: String,
    ) -> Disposition {
        self.metrics.handler_panics.inc();
        let webhook_id: Option<Uuid> =
            header_text(headers, crate::queue::job::WEBHOOK_ID).and_then(|id| id.parse().ok());
        let dead = DeadLetter {
            reason: "panic".into(),
            detail,
            webhook_id,
            account_id: header_text(headers, crate::queue::job::ACCOUNT_ID),
            ..DeadLetter::default()
        };
        let body: &[u8] = if raw.len() > self.max_message_bytes {
            &[]
        } else {
            raw
        };
        self.settle(outlet, body, "panic", vec![Next::Dead(dead)])
            .await
    }
}

pub(super) fn dead_letter(
    webhook: &Webhook,
    event: &Event,
    reason: &str,
    detail: &str,
    attempts: u32,
    last_status: Option<u16>,
) -> DeadLetter {
    DeadLetter {
        reason: reason.into(),
        detail: detail.into(),
        webhook_id: Some(webhook.id),
        account_id: Some(webhook.account_id.clone()),
        event_type: Some(event.event_type.clone()),
        attempts: Some(attempts),
        last_status,
    }
}
