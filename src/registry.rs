//! The in-memory registry of webhooks that deliveries read: no database query per event.
//!
//! A snapshot is rebuilt from the store every `registry.refresh` (changes made by other
//! replicas), and changes made through this process's API are applied to it at once. Readers
//! take an `Arc` of the current snapshot, so a reload never blocks a delivery.
//!
//! A row that cannot be decoded never freezes the registry: the others load. It is counted
//! (`registry_rows_unreadable`) and, when its account and enabled events can still be read, kept
//! as a placeholder ([`UnreadableWebhook`]) that events still match, so that they become dead
//! letters for it (`webhook_unreadable`, redrivable once the row reads again) instead of being
//! acked as "no webhook subscribed". A row without even that is skipped
//! (`registry_rows_skipped`). A local change made while a reload read the
//! database is laid over what the reload read, so no reload is thrown away (on a busy replica
//! that would starve it of other replicas' changes) and no local change is overwritten by an
//! older read. Reloads run one at a time, so of two overlapping ones the older read never
//! replaces the newer. On PostgreSQL, changes also arrive from other replicas at once ([`listen`]). The
//! snapshot's age is known: `/readyz` reports not ready when it is older than
//! [`STALE_AFTER_REFRESHES`] refresh periods.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicI64, AtomicU64, Ordering},
        Arc, Mutex, RwLock,
    },
    time::Duration,
};

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

mod listen;

use crate::{
    store::{Store, StoreError, UnreadableWebhook},
    telemetry::Metrics,
    webhook::Webhook,
};

#[derive(Default)]
struct Snapshot {
    by_id: HashMap<Uuid, Arc<Webhook>>,
    by_account: HashMap<String, Vec<Arc<Webhook>>>,
    /// Rows that cannot be decoded, by id and by account: placeholders events still match.
    unreadable: HashMap<Uuid, Arc<UnreadableWebhook>>,
    unreadable_by_account: HashMap<String, Vec<Arc<UnreadableWebhook>>>,
}

impl Snapshot {
    fn build(
        webhooks: impl IntoIterator<Item = Arc<Webhook>>,
        unreadable: impl IntoIterator<Item = Arc<UnreadableWebhook>>,
    ) -> Self {
        let mut snapshot = Snapshot::default();
        for webhook in webhooks {
            snapshot
                .by_account
                .entry(webhook.account_id.clone())
                .or_default()
                .push(webhook.clone());
            snapshot.by_id.insert(webhook.id, webhook);
        }
        for row in unreadable {
            // A decodable copy (a local change laid over an older read) wins.
            if snapshot.by_id.contains_key(&row.id) {
                continue;
            }
            snapshot
                .unreadable_by_account
                .entry(row.account_id.clone())
                .or_default()
                .push(row.clone());
            snapshot.unreadable.insert(row.id, row);
        }
        snapshot
    }
}

pub struct Registry {
    store: Store,
    snapshot: RwLock<Arc<Snapshot>>,
    /// Serializes writers, so a local change and a reload never overwrite each other.
    writer: Mutex<()>,
    /// Serializes reloads (the refresh loop's, a notification's): one reads the database only
    /// after the one before it has replaced the snapshot, so an older read never wins.
    reloading: tokio::sync::Mutex<()>,
    /// Counts local changes, so a reload can tell which of them it may have missed.
    local_changes: AtomicU64,
    /// The local changes not yet known to be in a reload's read, by their count: laid over the
    /// next reload's result. Emptied by each reload.
    recent: Mutex<Vec<LocalChange>>,
    /// When the snapshot was last loaded whole from the database (Unix milliseconds).
    loaded_at: AtomicI64,
    /// Older than this (milliseconds), the snapshot is stale; 0 until the refresh loop runs.
    stale_after_ms: AtomicI64,
    /// Undecodable rows of the last load without even readable routing columns.
    skipped: AtomicI64,
    metrics: Metrics,
}

/// A change made through this process: its number, the webhook's id, and the webhook as it is
/// now (`None`: deleted).
type LocalChange = (u64, Uuid, Option<Arc<Webhook>>);

/// How many refresh periods a snapshot may miss before it counts as stale.
pub const STALE_AFTER_REFRESHES: u32 = 3;

impl Registry {
    /// Loads every webhook from the store.
    pub async fn load(store: Store, metrics: Metrics) -> Result<Arc<Self>, StoreError> {
        let registry = Arc::new(Registry {
            store,
            snapshot: RwLock::new(Arc::default()),
            writer: Mutex::new(()),
            reloading: tokio::sync::Mutex::new(()),
            local_changes: AtomicU64::new(0),
            recent: Mutex::new(Vec::new()),
            loaded_at: AtomicI64::new(0),
            stale_after_ms: AtomicI64::new(0),
            skipped: AtomicI64::new(0),
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
        self.metrics
            .registry_rows_unreadable
            .set(snapshot.unreadable.len() as i64 + self.skipped.load(Ordering::Acquire));
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

    /// The account's enabled webhooks subscribed to `event_type` whose rows cannot be decoded:
    /// what the event is owed to but cannot be delivered to (it becomes a dead letter for each).
    pub fn matching_unreadable(
        &self,
        account_id: &str,
        event_type: &str,
    ) -> Vec<Arc<UnreadableWebhook>> {
        let now = Utc::now();
        self.current()
            .unreadable_by_account
            .get(account_id)
            .map(|rows| {
                rows.iter()
                    .filter(|w| w.is_enabled_at(now) && w.subscribes(event_type))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The placeholder of webhook `id`, when its row cannot be decoded.
    pub fn unreadable(&self, id: Uuid) -> Option<Arc<UnreadableWebhook>> {
        self.current().unreadable.get(&id).cloned()
    }

    /// Webhook rows the last load could not decode (placeholders and skipped rows).
    pub fn unreadable_count(&self) -> usize {
        let skipped = usize::try_from(self.skipped.load(Ordering::Acquire)).unwrap_or(0);
        self.current().unreadable.len() + skipped
    }

    /// Reads every webhook from the store and makes that the snapshot, with the local changes
    /// made meanwhile laid over it. Rows that cannot be decoded are skipped and counted.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let _reloading = self.reloading.lock().await;
        let changes_before = self.local_changes.load(Ordering::Acquire);
        let rows = self.store.all_decodable().await?;
        let mut by_id = HashMap::with_capacity(rows.len());
        let mut unreadable = HashMap::new();
        let mut bad = Vec::new();
        for row in rows {
            match row {
                Ok(webhook) => {
                    by_id.insert(webhook.id, Arc::new(webhook));
                }
                Err(row) => bad.push(row),
            }
        }
        let mut skipped = 0;
        for row in &bad {
            match &row.routing {
                Some(routing) => {
                    unreadable.insert(routing.id, Arc::new(routing.as_ref().clone()));
                }
                None => skipped += 1,
            }
        }
        if let Some(first) = bad.first() {
            tracing::warn!(unreadable = bad.len(), skipped, first = %first,
                "webhook rows that cannot be decoded: their events are dead-lettered (webhook_unreadable)");
        }
        self.metrics.registry_rows_skipped.set(skipped);
        self.skipped.store(skipped, Ordering::Release);
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        // Changes counted before the read began were in the database before it: the read has
        // them. Later ones may be missing from it, and are at least as new as what it read.
        recent.retain(|(n, _, _)| *n > changes_before);
        for (_, id, webhook) in recent.iter() {
            match webhook {
                Some(webhook) => by_id.insert(*id, webhook.clone()),
                None => by_id.remove(id),
            };
            unreadable.remove(id);
        }
        recent.clear();
        self.replace(Snapshot::build(
            by_id.into_values(),
            unreadable.into_values(),
        ));
        let now = Utc::now();
        self.loaded_at
            .store(now.timestamp_millis(), Ordering::Release);
        self.metrics.registry_loaded_at.set(now.timestamp());
        Ok(())
    }

    /// How long ago the snapshot was last loaded whole from the database.
    pub fn snapshot_age(&self) -> Duration {
        let age = Utc::now().timestamp_millis() - self.loaded_at.load(Ordering::Acquire);
        Duration::from_millis(u64::try_from(age).unwrap_or(0))
    }

    /// False once the snapshot missed [`STALE_AFTER_REFRESHES`] refreshes (always true when no
    /// refresh loop runs).
    pub fn is_fresh(&self) -> bool {
        let limit = self.stale_after_ms.load(Ordering::Acquire);
        limit == 0 || self.snapshot_age().as_millis() <= limit as u128
    }

    /// Applies a change made through this process at once (created or updated webhook), and
    /// announces it to the other replicas.
    pub fn upsert(&self, webhook: Webhook) {
        let id = webhook.id;
        self.apply(id, Some(Arc::new(webhook)));
        self.announce(id);
    }

    pub fn remove(&self, id: Uuid) {
        self.apply(id, None);
        self.announce(id);
    }

    /// Puts `webhook` (or its absence) in the snapshot, and keeps it over a reload's older read.
    fn apply(&self, id: Uuid, webhook: Option<Arc<Webhook>>) {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let number = self.local_changes.fetch_add(1, Ordering::AcqRel) + 1;
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((number, id, webhook.clone()));
        let current = self.current();
        let others = current.by_id.values().filter(|w| w.id != id).cloned();
        // A change read whole (or a deletion) replaces the row's placeholder.
        let unreadable = current.unreadable.values().filter(|w| w.id != id).cloned();
        self.replace(Snapshot::build(others.chain(webhook), unreadable));
    }

    /// Reloads every `every` until cancelled. A failed reload keeps the last snapshot.
    pub async fn refresh_until_cancelled(
        self: Arc<Self>,
        every: Duration,
        cancel: CancellationToken,
    ) {
        let stale_after = every.saturating_mul(STALE_AFTER_REFRESHES);
        self.stale_after_ms.store(
            i64::try_from(stale_after.as_millis()).unwrap_or(i64::MAX),
            Ordering::Release,
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(id: Uuid, account: &str) -> Arc<Webhook> {
        let now = Utc::now();
        Arc::new(Webhook {
            id,
            account_id: account.into(),
            url: crate::webhook::EndpointUrl::parse("https://example.com/").unwrap(),
            secret: None,
            enabled_events: crate::filter::EventFilter::all(),
            include: Default::default(),
            disabled_at: None,
            created_at: now,
            updated_at: now,
            oidc: None,
            signature_format: Default::default(),
            previous_secret: None,
            standard_keys: Default::default(),
        })
    }

    fn unreadable(id: Uuid, account: &str, events: &[&str]) -> Arc<UnreadableWebhook> {
        Arc::new(UnreadableWebhook {
            id,
            account_id: account.into(),
            enabled_events: events.iter().map(|e| e.to_string()).collect(),
            disabled_at: None,
        })
    }

    #[test]
    fn an_unreadable_row_is_kept_by_account_unless_a_decodable_copy_of_it_is_there() {
        let (fixed, broken, readable) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let snapshot = Snapshot::build(
            [webhook(readable, "a"), webhook(fixed, "a")],
            [
                unreadable(fixed, "a", &["*"]),
                unreadable(broken, "a", &["business.updated"]),
            ],
        );
        assert_eq!(snapshot.by_id.len(), 2);
        assert_eq!(snapshot.unreadable.keys().collect::<Vec<_>>(), [&broken]);
        assert_eq!(snapshot.unreadable_by_account["a"].len(), 1);
        assert!(!snapshot.unreadable_by_account.contains_key("b"));
    }

    #[test]
    fn an_unreadable_row_matches_by_its_enabled_events_and_disabled_at() {
        let row = unreadable(Uuid::new_v4(), "a", &["business.updated"]);
        let now = Utc::now();
        assert!(row.subscribes("business.updated") && row.is_enabled_at(now));
        assert!(!row.subscribes("business.created"));
        let disabled = UnreadableWebhook {
            disabled_at: Some(now - chrono::TimeDelta::seconds(1)),
            ..(*row).clone()
        };
        assert!(!disabled.is_enabled_at(now));
    }
}
