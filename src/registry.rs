//! The in-memory registry of webhooks that deliveries read: no database query per event.
//!
//! A snapshot is rebuilt from the store every `registry.refresh` (changes made by other
//! replicas), and changes made through this process's API are applied to it at once. Readers
//! take an `Arc` of the current snapshot, so a reload never blocks a delivery.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, RwLock,
    },
    time::Duration,
};

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    store::{Store, StoreError},
    telemetry::Metrics,
    webhook::Webhook,
};

#[derive(Default)]
struct Snapshot {
    by_id: HashMap<Uuid, Arc<Webhook>>,
    by_account: HashMap<String, Vec<Arc<Webhook>>>,
}

impl Snapshot {
    fn build(webhooks: impl IntoIterator<Item = Arc<Webhook>>) -> Self {
        let mut snapshot = Snapshot::default();
        for webhook in webhooks {
            snapshot
                .by_account
                .entry(webhook.account_id.clone())
                .or_default()
                .push(webhook.clone());
            snapshot.by_id.insert(webhook.id, webhook);
        }
        snapshot
    }
}

pub struct Registry {
    store: Store,
    snapshot: RwLock<Arc<Snapshot>>,
    /// Serializes writers, so a local change and a reload never overwrite each other.
    writer: Mutex<()>,
    /// Counts local changes, so a reload that read the database before one can tell its
    /// result is already stale and must not replace the newer snapshot.
    local_changes: AtomicU64,
    metrics: Metrics,
}

impl Registry {
    /// Loads every webhook from the store.
    pub async fn load(store: Store, metrics: Metrics) -> Result<Arc<Self>, StoreError> {
        let registry = Arc::new(Registry {
            store,
            snapshot: RwLock::new(Arc::default()),
            writer: Mutex::new(()),
            local_changes: AtomicU64::new(0),
            metrics,
        });
        registry.reload().await?;
        Ok(registry)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn current(&self) -> Arc<Snapshot> {
        // A poisoned lock still holds a complete snapshot: writers only swap the Arc.
        self.snapshot
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn replace(&self, snapshot: Snapshot) {
        self.metrics
            .registry_webhooks
            .set(snapshot.by_id.len() as i64);
        *self
            .snapshot
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(snapshot);
    }

    /// The account's enabled webhooks subscribed to `event_type`.
    pub fn matching(&self, account_id: &str, event_type: &str) -> Vec<Arc<Webhook>> {
        let now = Utc::now();
        self.current()
            .by_account
            .get(account_id)
            .map(|webhooks| {
                webhooks
                    .iter()
                    .filter(|w| w.is_enabled_at(now) && w.subscribes(event_type))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn get(&self, id: Uuid) -> Option<Arc<Webhook>> {
        self.current().by_id.get(&id).cloned()
    }

    pub async fn reload(&self) -> Result<(), StoreError> {
        let changes_before = self.local_changes.load(Ordering::Acquire);
        let webhooks = self.store.all().await?;
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if self.local_changes.load(Ordering::Acquire) != changes_before {
            // A local change landed while we read: this result may predate it. The next reload
            // sees both.
            return Ok(());
        }
        self.replace(Snapshot::build(webhooks.into_iter().map(Arc::new)));
        Ok(())
    }

    /// Applies a change made through this process at once (created or updated webhook).
    pub fn upsert(&self, webhook: Webhook) {
        self.change(webhook.id, Some(Arc::new(webhook)));
    }

    pub fn remove(&self, id: Uuid) {
        self.change(id, None);
    }

    fn change(&self, id: Uuid, webhook: Option<Arc<Webhook>>) {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        self.local_changes.fetch_add(1, Ordering::AcqRel);
        let current = self.current();
        let others = current.by_id.values().filter(|w| w.id != id).cloned();
        self.replace(Snapshot::build(others.chain(webhook)));
    }

    /// Reloads every `every` until cancelled. A failed reload keeps the last snapshot.
    pub async fn refresh_until_cancelled(
        self: Arc<Self>,
        every: Duration,
        cancel: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = ticker.tick() => {
                    if let Err(error) = self.reload().await {
                        tracing::warn!(%error, "registry reload failed; keeping the last snapshot");
                    }
                }
            }
        }
    }
}
