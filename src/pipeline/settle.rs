//! Making a message's outcomes durable: every retry job and dead letter is published with a
//! confirm before the message is acked.
//!
//! By the time this runs the HTTP attempts have been made, so putting the message back would make
//! them all again (duplicates for every webhook that was delivered, and a second retry chain for
//! every one that failed). Instead the outcomes stay in memory and only those whose publish
//! failed are published again, with backoff, while the message is held unacked. If they still
//! fail after `amqp.settle_timeout` (not counting time the broker blocked publishing: a resource
//! alarm is waited out), the message is rejected: the broker dead-letters it into the
//! dead letters (reason `rejected`), where it can be seen, and the log names the webhooks whose
//! outcomes were lost; it never loops. Shutdown does not cut it short: the drain's grace period
//! bounds it. Only once the publishing connection is gone does it give up and leave the message
//! to the broker, which hands it back: nothing can be made durable on a closed connection.

use std::time::Duration;

use futures_util::future::join_all;
use lapin::types::FieldTable;
use tokio::time::Instant;
use tracing::{error, warn};

use super::{Disposition, Next, Pipeline};
use crate::{
    queue::{header_text, job::WEBHOOK_ID, Publisher},
    retry::jittered,
};

/// Message ids of dead letters that carry no event (nothing a redrive could deliver).
const POISON_IDS: [&str; 2] = ["poison", "invalid_job"];
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Pipeline {
    /// Publishes every retry job and dead letter with a confirm; acks once all were taken.
    pub(super) async fn settle(
        &self,
        publisher: &Publisher,
        raw: &[u8],
        message_id: &str,
        nexts: Vec<Next>,
    ) -> Disposition {
        // Letters owed to a webhook: recorded by webhook once they are in the dead letters.
        let mut owed = Vec::new();
        let mut pending: Vec<(String, FieldTable)> = nexts
            .into_iter()
            .filter_map(|next| match next {
                Next::Done => None,
                Next::Job(job) => Some((self.names.deliveries.clone(), job.headers())),
                Next::Retry { delay, job } => Some((self.names.retry(delay), job.headers())),
                Next::Dead(dead) => {
                    let headers = dead.headers();
                    if dead.webhook_id.is_some() && !POISON_IDS.contains(&message_id) {
                        owed.push(dead);
                    }
                    Some((self.names.dead.clone(), headers))
                }
            })
            .collect();
        let mut deadline = Instant::now() + self.settle_timeout;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let publishes = pending.iter().map(|(queue, headers)| {
                publisher.publish("", queue, raw, headers.clone(), message_id)
            });
            let results = join_all(publishes).await;
            let mut last_error = None;
            pending = pending
                .into_iter()
                .zip(results)
                .filter_map(|(outcome, result)| {
                    let error = result.err()?;
                    last_error = Some(error);
                    Some(outcome)
                })
                .collect();
            let Some(last_error) = last_error else {
                for letter in &owed {
                    self.record_dead_letter(letter, message_id, raw);
                }
                return Disposition::Ack;
            };
            let wait = jittered(backoff);
            if publisher.is_blocked() {
                // A resource alarm holds every publish; time spent blocked does not count, so the
                // message waits for the alarm to clear instead of going to the dead letters.
                deadline = Instant::now() + self.settle_timeout;
            }
            if !publisher.is_open() {
                warn!(message_id, failed = pending.len(), error = %last_error,
                    "the publishing connection is gone; the broker will hand the message back");
                return Disposition::Leave;
            }
            if Instant::now() + wait >= deadline {
                // The dead letter is the event as it came; these are the webhooks it still owes.
                let webhooks: Vec<String> = pending
                    .iter()
                    .filter_map(|(_, headers)| header_text(Some(headers), WEBHOOK_ID))
                    .collect();
                error!(message_id, failed = pending.len(), ?webhooks, error = %last_error,
                    "outcomes still not durable after amqp.settle_timeout; rejecting the message into the dead letters");
                self.metrics.settle("rejected");
                return Disposition::Reject;
            }
            warn!(message_id, failed = pending.len(), error = %last_error, retry_in = ?wait,
                "could not make some outcomes durable; publishing only those again");
            self.metrics.settle("republished");
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}
