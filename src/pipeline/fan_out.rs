//! Events that match many webhooks. Up to `delivery.fan_out_threshold` webhooks, the first
//! attempts are made from the event's own task, at most `delivery.max_in_flight_per_event` at
//! once. Above it, the event is split: batch jobs go to the deliveries queue, each carrying the
//! event once and naming up to `delivery.fan_out_batch` of its webhooks (see
//! [`crate::queue::batch`]), published with confirms (only the failed ones again, as any
//! outcome); the event is acked, and the first attempts are made from there, a batch's as an
//! event makes its own (`batch.rs`). One big event then neither holds its ack until the slowest
//! of its endpoints answers nor takes every global permit from other accounts' events: its
//! batches queue behind the deliveries consumer's prefetch, where that account's retries go.
//!
//! `delivery.fan_out_batch = 1` makes one job per webhook instead, each carrying the whole
//! event, as versions before batches did (and as a webhook that fits no batch still gets).

use std::sync::Arc;

use futures_util::{stream, StreamExt};
use tracing::info;
use uuid::Uuid;

use super::{Disposition, Next, Pipeline};
use crate::{
    queue::{batch::Batch, job::Job, Outlet},
    telemetry::SettleOutcome,
    webhook::Webhook,
};

impl Pipeline {
    /// Whether an event matching `matched` webhooks is split into jobs.
    pub(super) fn fans_out(&self, matched: usize) -> bool {
        matched > self.fan_out_threshold
    }

    /// Publishes the first attempts to `webhooks` (all of `account`) as batch jobs to the
    /// deliveries queue (and the dead letters owed to webhooks that cannot be read).
    pub(super) async fn fan_out(
        &self,
        outlet: &Outlet,
        raw: &[u8],
        account: &str,
        event_id: &str,
        webhooks: &[Arc<Webhook>],
        dead_letters: Vec<Next>,
    ) -> Disposition {
        let ids: Vec<Uuid> = webhooks.iter().map(|webhook| webhook.id).collect();
        let (batches, alone) =
            Batch::split(account, &ids, self.fan_out_batch, self.batch_header_budget);
        let published = batches.len() as u64;
        info!(
            webhooks = webhooks.len(),
            batches = batches.len(),
            jobs = alone.len(),
            "many webhooks: split into delivery jobs"
        );
        let jobs = batches
            .into_iter()
            .map(Next::Batch)
            .chain(
                alone
                    .into_iter()
                    .map(|id| Next::Job(Job::first(id, account))),
            )
            .chain(dead_letters)
            .collect();
        let disposition = self.settle(outlet, raw, event_id, jobs).await;
        if disposition == Disposition::Ack {
            self.metrics.settle(SettleOutcome::FannedOut);
            self.metrics.fan_out_batches.inc_by(published);
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
