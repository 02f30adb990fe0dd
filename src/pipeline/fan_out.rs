//! Events that match many webhooks. Up to `delivery.fan_out_threshold` webhooks, the first
//! attempts are made from the event's own task, at most `delivery.max_in_flight_per_event` at
//! once. Above it, the event is split: one job per webhook is published to the deliveries queue
//! (with confirms; only the failed ones again, as any outcome), the event is acked, and the
//! deliveries are made from there like retries. One big event then neither holds its ack until
//! the slowest of its endpoints answers nor takes every global permit from other accounts'
//! events: its jobs queue behind the deliveries consumer's prefetch.

use std::sync::Arc;

use futures_util::{stream, StreamExt};
use tracing::info;

use super::{Disposition, Next, Pipeline};
use crate::{queue::job::Job, queue::Outlet, telemetry::SettleOutcome, webhook::Webhook};

impl Pipeline {
    /// Whether an event matching `matched` webhooks is split into jobs.
    pub(super) fn fans_out(&self, matched: usize) -> bool {
        matched > self.fan_out_threshold
    }

    /// Publishes one first-attempt job per webhook to the deliveries queue (and the dead letters
    /// owed to webhooks that cannot be read).
    pub(super) async fn fan_out(
        &self,
        outlet: &Outlet,
        raw: &[u8],
        event_id: &str,
        webhooks: &[Arc<Webhook>],
        dead_letters: Vec<Next>,
    ) -> Disposition {
        info!(
            webhooks = webhooks.len(),
            "many webhooks: one delivery job each"
        );
        let jobs = webhooks
            .iter()
            .map(|webhook| {
                Next::Job(Job {
                    webhook_id: webhook.id,
                    account_id: webhook.account_id.clone(),
                    attempt: 1,
                    last_error: None,
                    parks: 0,
                    parked_since: None,
                })
            })
            .chain(dead_letters)
            .collect();
        let disposition = self.settle(outlet, raw, event_id, jobs).await;
        if disposition == Disposition::Ack {
            self.metrics.settle(SettleOutcome::FannedOut);
        }
        disposition
    }

    /// Runs the attempts, at most `delivery.max_in_flight_per_event` at once.
    pub(super) async fn bounded<F>(&self, attempts: Vec<F>) -> Vec<Next>
    where
        F: std::future::Future<Output = Next>,
    {
        stream::iter(attempts)
            .buffer_unordered(self.max_in_flight_per_event)
            .collect()
            .await
    }
}
