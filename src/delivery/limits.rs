//! Bounded concurrency at two levels: all HTTP requests in flight (`delivery.max_in_flight`),
//! and those to one webhook (`delivery.max_in_flight_per_webhook`). The per-webhook limit is
//! waited for only briefly (`delivery.park_after`): a busy but healthy endpoint frees its slots
//! within that time, while a hanging one does not, and its further deliveries are parked in the
//! retry queue instead. So a slow endpoint occupies only its own share of the worker, never the
//! acks of other endpoints' events.

use std::{sync::Arc, time::Duration};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

#[derive(Clone)]
pub struct Limits {
    global: Arc<Semaphore>,
    per_webhook: moka::sync::Cache<Uuid, Arc<Semaphore>>,
    per_webhook_max: usize,
    park_after: Duration,
}

/// Held for the duration of one HTTP delivery.
pub struct Permit {
    _webhook: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
}

impl Limits {
    pub fn new(max_in_flight: usize, per_webhook_max: usize, park_after: Duration) -> Self {
        Self {
            global: Arc::new(Semaphore::new(max_in_flight)),
            // Idle semaphores are dropped after much longer than any request can take, so one
            // cannot be replaced while its permits are in use.
            per_webhook: moka::sync::Cache::builder()
                .time_to_idle(Duration::from_secs(600))
                .build(),
            per_webhook_max,
            park_after,
        }
    }

    /// A permit, or `None` when the webhook kept its whole share in flight for `park_after`.
    pub async fn acquire(&self, webhook: Uuid) -> Option<Permit> {
        let semaphore = self
            .per_webhook
            .get_with(webhook, || Arc::new(Semaphore::new(self.per_webhook_max)));
        let webhook_permit = match semaphore.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => tokio::time::timeout(self.park_after, semaphore.acquire_owned())
                .await
                .ok()?
                .ok()?,
        };
        let global = self.global.clone().acquire_owned().await.ok()?;
        Some(Permit {
            _webhook: webhook_permit,
            _global: global,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_busy_webhook_gets_a_slot_freed_within_the_wait() {
        let limits = Limits::new(10, 1, Duration::from_secs(5));
        let webhook = Uuid::new_v4();
        let held = limits.acquire(webhook).await;
        let release = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(held);
        };
        let (_, second) = tokio::join!(release, limits.acquire(webhook));
        assert!(second.is_some());
    }

    #[tokio::test]
    async fn a_webhook_cannot_take_more_than_its_share() {
        let limits = Limits::new(10, 2, Duration::from_millis(10));
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let first = limits.acquire(a).await;
        let second = limits.acquire(a).await;
        assert!(first.is_some() && second.is_some());
        assert!(limits.acquire(a).await.is_none());
        assert!(
            limits.acquire(b).await.is_some(),
            "other webhooks are unaffected"
        );
        drop(first);
        assert!(limits.acquire(a).await.is_some());
    }
}
