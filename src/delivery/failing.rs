//! Disabling webhooks: at once on 410 Gone, and when every delivery has failed for
//! `delivery.disable_after`. Since when a webhook fails is kept in the database (so it survives
//! restarts and is shared by replicas) and written only when that changes: the first failure
//! after a success, the first success after failures. This process remembers what it last
//! wrote for a minute, so a steady stream of results costs no writes; before disabling, the
//! stored time is read again, since a re-enable through the API clears it.
//!
//! Disabling writes `disabled_at` through the store and updates the registry, so the API and
//! this process's deliveries see it at once (other replicas within `registry.refresh`).
//!
//! The store's futures are boxed where they are awaited: they are rare (a webhook's health
//! changing), and held inline they made every delivery's future larger, which the runtime copies
//! as the future is built and moved (see docs/performance.md).

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use tracing::warn;
use uuid::Uuid;

use crate::{registry::Registry, store::Store, telemetry::Metrics, webhook::Webhook};

/// Why the worker disabled a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisableReason {
    /// The endpoint answered 410 Gone.
    Gone,
    /// Every delivery failed for `delivery.disable_after`.
    Failing,
}

impl DisableReason {
    pub fn code(self) -> &'static str {
        match self {
            DisableReason::Gone => "endpoint_gone",
            DisableReason::Failing => "failing",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Healthy,
    FailingSince(DateTime<Utc>),
}

#[derive(Clone)]
pub struct Failing {
    /// Where failing times and `disabled_at` are written.
    store: Store,
    /// Updated with each webhook disabled here, so this process's deliveries and API see it.
    registry: Arc<Registry>,
    /// Zero: never disable for failures.
    disable_after: Duration,
    /// What this process last wrote or read per webhook; forgotten after a minute, so a row
    /// written by another replica is cleared soon after deliveries here succeed.
    known: moka::sync::Cache<Uuid, Known>,
    metrics: Metrics,
}

impl Failing {
    pub fn new(
        store: Store,
        registry: Arc<Registry>,
        disable_after: Duration,
        metrics: Metrics,
    ) -> Self {
        Self {
            store,
            registry,
            disable_after,
            known: moka::sync::Cache::builder()
                .time_to_live(Duration::from_secs(60))
                .max_capacity(100_000)
                .build(),
            metrics,
        }
    }

    /// A delivery to `webhook` succeeded.
    pub async fn succeeded(&self, webhook: &Webhook) {
        if self.disable_after.is_zero() || self.known.get(&webhook.id) == Some(Known::Healthy) {
            return;
        }
        // Known before the write, so the deliveries succeeding at the same moment do not each
        // write it too; forgotten again if the write fails.
        self.known.insert(webhook.id, Known::Healthy);
        if let Err(error) = Box::pin(self.store.clear_failing(webhook.id)).await {
            self.known.invalidate(&webhook.id);
            warn!(%error, webhook_id = %webhook.id, "cannot record a webhook's recovery");
        }
    }

    /// A delivery to `webhook` failed. Returns true when that disabled the webhook.
    pub async fn failed(&self, webhook: &Webhook) -> bool {
        if self.disable_after.is_zero() {
            return false;
        }
        let now = Utc::now();
        let since = match self.known.get(&webhook.id) {
            Some(Known::FailingSince(since)) => since,
            _ => match self.mark(webhook, now).await {
                Some(since) => since,
                None => return false,
            },
        };
        if !self.overdue(since, now) {
            return false;
        }
        // Confirm against the database: a re-enable elsewhere may have cleared the record.
        let stored = match Box::pin(self.store.failing_since(webhook.id)).await {
            Ok(stored) => stored,
            Err(error) => {
                warn!(%error, webhook_id = %webhook.id, "cannot read since when a webhook fails");
                return false;
            }
        };
        match stored {
            Some(since) if self.overdue(since, now) => {
                self.disable(webhook, DisableReason::Failing).await
            }
            Some(since) => {
                self.known.insert(webhook.id, Known::FailingSince(since));
                false
            }
            None => {
                self.mark(webhook, now).await;
                false
            }
        }
    }

    fn overdue(&self, since: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        (now - since).to_std().unwrap_or_default() >= self.disable_after
    }

    /// Records the failing state (keeping an earlier start) and returns its start.
    async fn mark(&self, webhook: &Webhook, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Remembered before the write, so concurrent failures do not all write it too.
        self.known.insert(webhook.id, Known::FailingSince(now));
        let marking = self
            .store
            .mark_failing(&webhook.account_id, webhook.id, now);
        match Box::pin(marking).await {
            Ok(since) => {
                self.known.insert(webhook.id, Known::FailingSince(since));
                Some(since)
            }
            Err(error) => {
                self.known.invalidate(&webhook.id);
                warn!(%error, webhook_id = %webhook.id, "cannot record that a webhook fails");
                None
            }
        }
    }

    /// Sets `disabled_at` in the store and the registry. Returns true when this call disabled
    /// it (false when it was disabled or deleted already, or the store failed).
    pub async fn disable(&self, webhook: &Webhook, reason: DisableReason) -> bool {
        let now = Utc::now();
        match Box::pin(self.store.disable(&webhook.account_id, webhook.id, now)).await {
            Ok(Some(disabled)) => {
                self.known.invalidate(&webhook.id);
                self.registry.upsert(disabled);
                self.metrics
                    .webhooks_disabled
                    .get_or_create(&crate::telemetry::ReasonLabels {
                        reason: reason.code(),
                    })
                    .inc();
                warn!(webhook_id = %webhook.id, account_id = %webhook.account_id,
                    reason = reason.code(), "webhook disabled");
                true
            }
            Ok(None) => false,
            Err(error) => {
                warn!(%error, webhook_id = %webhook.id, reason = reason.code(),
                    "cannot disable the webhook");
                false
            }
        }
    }
}
