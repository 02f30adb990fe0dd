//! A fan-out batch from `<prefix>.deliveries` ([`crate::queue::batch`]): the event's first
//! attempts to the webhooks it names, made as an event makes its own (at most
//! `delivery.max_in_flight_per_event` at once; each endpoint's and account's share kept by
//! endpoint health), each outcome made durable on its own (a retry job or a dead letter per
//! webhook, exactly as for an event), and the batch acked once every outcome is.
//!
//! Each webhook is read as a retry reads it (a new URL or secret applies; deleted: dropped;
//! disabled or unreadable: its dead letter), all before the first request, so a database that
//! cannot be read puts the batch back with nothing attempted. A batch handed out again (its
//! worker was killed or lost its session mid-way) is attempted again whole: at most the batch's
//! webhooks get a duplicate, and delivery stays at least once.
//!
//! A batch is one message of the deliveries window but many deliveries: a window of batches
//! could hand an account's share of requests (`delivery.max_in_flight_per_account`) hundreds
//! of times more deliveries than it holds, and endpoint health would park most of them (it parks
//! a delivery whose turn would come later than `delivery.max_wait`). So an account's first
//! attempts from batches enter the worker through its [`BatchGates`] gate: at most
//! `amqp.prefetch` at once, as many as a window of one-webhook jobs would hold, and the others
//! wait their turn in their batch. What passes the gate is admitted, sent or parked as any
//! delivery is, so the gate empties at the pace the account's requests complete or park, and
//! another account's batches have gates of their own.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use tokio::sync::Semaphore;
use tracing::Instrument;

use super::{delivery_span, letters::Found, Disposition, Pipeline};
use crate::{
    event::{Bodies, Event},
    queue::{
        batch::Batch,
        job::{DeadLetter, Job, POISON_MESSAGE_ID},
        Outlet,
    },
};

impl Pipeline {
    /// The batch's first attempts, and their outcomes made durable.
    pub(super) async fn handle_batch(
        &self,
        outlet: &Outlet,
        raw: &Bytes,
        batch: Batch,
    ) -> Disposition {
        let event = match Event::parse_shared(raw, self.max_message_bytes) {
            Ok(event) => event,
            Err(reason) => {
                // It read when it was split: only a lower `amqp.max_message_bytes` since does this.
                let detail = format!(
                    "{reason} (a batch for {} webhooks)",
                    batch.webhook_ids.len()
                );
                let letter = DeadLetter {
                    account_id: Some(batch.account_id),
                    ..DeadLetter::new(reason.dead_reason(), detail)
                };
                return self.poison(outlet, raw, POISON_MESSAGE_ID, letter).await;
            }
        };
        let span = tracing::error_span!("event", event_id = %event.id);
        self.deliver_batch(outlet, raw, &batch, &event)
            .instrument(span)
            .await
    }

    async fn deliver_batch(
        &self,
        outlet: &Outlet,
        raw: &Bytes,
        batch: &Batch,
        event: &Event,
    ) -> Disposition {
        let mut nexts = Vec::new();
        let mut webhooks = Vec::with_capacity(batch.webhook_ids.len());
        for &webhook_id in &batch.webhook_ids {
            let job = Job::first(webhook_id, &batch.account_id);
            let found = self
                .find_webhook(&job, Some(event))
                .instrument(delivery_span(Some(&event.id), webhook_id, 1))
                .await;
            match found {
                Some(Found::Webhook(webhook)) => webhooks.push(webhook),
                Some(Found::Not(next)) => nexts.push(next),
                // Nothing attempted yet: the batch goes back whole.
                None => return Disposition::Requeue,
            }
        }
        let correlation_id = event.correlation_id();
        let mut bodies = Bodies::default();
        let gate = self.batch_gates.of(&batch.account_id);
        let attempts = webhooks.iter().map(|webhook| {
            let body = bodies.get(event, webhook.include.include());
            let gate = gate.clone();
            async move {
                // Never closed; were it, the attempt would go ahead without a turn.
                let _turn = gate.acquire_owned().await.ok();
                self.first_attempt(webhook, event, body, correlation_id)
                    .await
            }
        });
        nexts.extend(self.bounded(attempts.collect()).await);
        self.settle(outlet, raw, &event.id, nexts).await
    }
}

/// Each account's gate for first attempts from batches (see the module's doc): a semaphore of
/// `amqp.prefetch` permits per account that ever had a batch. Kept for the process's life: one
/// small entry per account with more than `delivery.fan_out_threshold` webhooks.
pub(super) struct BatchGates {
    per_account: usize,
    accounts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl BatchGates {
    pub(super) fn new(per_account: usize) -> Self {
        Self {
            per_account: per_account.max(1),
            accounts: Mutex::default(),
        }
    }

    /// `account`'s gate.
    fn of(&self, account: &str) -> Arc<Semaphore> {
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(gate) = accounts.get(account) {
            return gate.clone();
        }
        let gate = Arc::new(Semaphore::new(self.per_account));
        accounts.insert(account.to_string(), gate.clone());
        gate
    }
}
