//! A message the broker has handed out `amqp.delivery_limit` times without its being settled
//! (the worker crashed or lost its session while handling it, or a retry's webhook could not be
//! read for that long) is dead-lettered here, one letter per webhook it is owed to (reason
//! `delivery_limit`, recorded by webhook), one delivery before the broker would dead-letter it
//! naming no webhook: its owners can then list and redrive it (a fan-out batch: one letter per
//! webhook it names). Such a message is not attempted again: it has already failed to settle
//! that many times.

use bytes::Bytes;
use lapin::types::FieldTable;
use tracing::{warn, Instrument};

use super::{dead::dead_letter, delivery_span, Disposition, Next, Pipeline};
use crate::{
    dead_reason::DeadReason,
    event::Event,
    queue::{
        account_header,
        batch::Batch,
        header_int,
        job::{DeadLetter, Job},
        Outlet,
    },
    telemetry::DeliveryOutcome,
};

/// The header a quorum queue sets on a redelivered message: how many times it was handed out
/// and returned unsettled.
const DELIVERY_COUNT: &str = "x-delivery-count";

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
        let reason = DeadReason::DeliveryLimit;
        let mut letters: Vec<Next> = self
            .registry
            .matching(&account, &event.event_type)
            .iter()
            .map(|webhook| Next::Dead(dead_letter(webhook, &event, reason, &detail, 0, None)))
            .collect();
        letters.extend(
            self.registry
                .matching_unreadable(&account, &event.event_type)
                .iter()
                .map(|row| {
                    Next::Dead(DeadLetter {
                        webhook_id: Some(row.id),
                        account_id: Some(row.account_id.clone()),
                        event_type: Some(event.event_type.clone()),
                        attempts: Some(0),
                        ..DeadLetter::new(reason, detail.clone())
                    })
                }),
        );
        let span = tracing::error_span!("event", event_id = %event.id);
        warn!(parent: &span, webhooks = letters.len(), detail,
            "event over amqp.delivery_limit; dead-lettering it for each webhook it is owed to");
        for _ in &letters {
            self.metrics.delivery(DeliveryOutcome::DeadLettered);
        }
        Some(
            self.settle(outlet, raw, &event.id, letters)
                .instrument(span)
                .await,
        )
    }

    /// Dead-letters a retry job over the delivery limit, for its webhook (a fan-out batch, for
    /// each of its webhooks). `None` when the job's headers or body do not read: the usual
    /// handling dead-letters it.
    pub async fn job_over_limit(
        &self,
        outlet: &Outlet,
        raw: &Bytes,
        headers: Option<&FieldTable>,
    ) -> Option<Disposition> {
        if let Ok(Some(batch)) = Batch::from_headers(headers) {
            return self.batch_over_limit(outlet, raw, headers, batch).await;
        }
        let job = Job::from_headers(headers).ok()?;
        let event = Event::parse_shared(raw, self.max_message_bytes).ok()?;
        let detail = self.over_limit_detail(headers);
        let span = delivery_span(Some(&event.id), job.webhook_id, job.attempt);
        warn!(parent: &span, detail, "retry over amqp.delivery_limit; dead-lettering it for its webhook");
        self.metrics.delivery(DeliveryOutcome::DeadLettered);
        let detail = match &job.last_error {
            Some(last) => format!("{detail}; last error: {last}"),
            None => detail,
        };
        let letter = DeadLetter {
            webhook_id: Some(job.webhook_id),
            account_id: Some(job.account_id.clone()),
            event_type: Some(event.event_type.clone()),
            attempts: Some(job.attempt.saturating_sub(1)),
            ..DeadLetter::new(DeadReason::DeliveryLimit, detail)
        };
        Some(
            self.settle(outlet, raw, &event.id, vec![Next::Dead(letter)])
                .instrument(span)
                .await,
        )
    }

    /// Dead-letters a fan-out batch over the delivery limit, one letter per webhook it names
    /// (which of them it reached before is not known: each may have been, as for an event).
    /// `None` when its body does not read: the usual handling dead-letters it.
    async fn batch_over_limit(
        &self,
        outlet: &Outlet,
        raw: &Bytes,
        headers: Option<&FieldTable>,
        batch: Batch,
    ) -> Option<Disposition> {
        let event = Event::parse_shared(raw, self.max_message_bytes).ok()?;
        let detail = self.over_limit_detail(headers);
        let span = tracing::error_span!("event", event_id = %event.id);
        warn!(parent: &span, webhooks = batch.webhook_ids.len(), detail,
            "fan-out batch over amqp.delivery_limit; dead-lettering it for each webhook it names");
        let letters: Vec<Next> = batch
            .webhook_ids
            .iter()
            .map(|&webhook_id| {
                self.metrics.delivery(DeliveryOutcome::DeadLettered);
                Next::Dead(DeadLetter {
                    webhook_id: Some(webhook_id),
                    account_id: Some(batch.account_id.clone()),
                    event_type: Some(event.event_type.clone()),
                    attempts: Some(0),
                    ..DeadLetter::new(DeadReason::DeliveryLimit, detail.clone())
                })
            })
            .collect();
        Some(
            self.settle(outlet, raw, &event.id, letters)
                .instrument(span)
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
}
