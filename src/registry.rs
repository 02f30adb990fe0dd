//! The in-memory registry of webhooks that deliveries read: no database query per event.
//!
//! It is loaded whole once at start, and then kept current by changes only:
//!
//! - changes made through this process's API are applied at once;
//! - every `registry.refresh`, one indexed query on the change log (`webhook_changes`, written
//!   in the same transaction as every webhook write) says what changed after this replica's
//!   mark, and those rows alone are read again, in one query ([`sync`]);
//! - on PostgreSQL, other replicas' changes also arrive at once by `NOTIFY` ([`listen`]);
//! - a full reload every `registry.full_reload` (default 10 minutes) is the safety net. It
//!   decodes (and decrypts) only rows whose stored form changed: the others keep their decoded
//!   copy, matched by a fingerprint of the stored columns.
//!
//! Secrets are thus decrypted once per change of a row, not on every reload. The snapshot is
//! patched in place under a lock held only for the patch ([`snapshot`]); each read carries a
//! ticket so that no older read overwrites a newer one, a local change included.
//!
//! A row that cannot be decoded never freezes the registry: the others load. It is counted
//! (`registry_rows_unreadable`) and, when its account and enabled events can still be read, kept
//! as a placeholder ([`UnreadableWebhook`]) that events still match, so that they become dead
//! letters for it (`webhook_unreadable`, redrivable once the row reads again) instead of being
//! acked as "no webhook subscribed". A row without even that is skipped
//! (`registry_rows_skipped`). The registry's freshness is the time of its last successful check
//! for changes: `/readyz` reports not ready when that is older than [`STALE_AFTER_REFRESHES`]
//! refresh periods.

use std::{
    sync::{
        atomic::{AtomicI64, AtomicU64, Ordering},
        Arc, RwLock, RwLockReadGuard,
    },
    time::Duration,
};

use chrono::Utc;
use uuid::Uuid;

mod listen;
mod snapshot;
mod sync;

pub use sync::Refresh;

use crate::{
    store::{Store, StoreError, UnreadableWebhook},
    telemetry::Metrics,
    webhook::Webhook,
};
use snapshot::{Change, Row, Snapshot};

pub struct Registry {
    store: Store,
    /// Patched in place; readers hold the read lock only to copy what they need.
    snapshot: RwLock<Snapshot>,
    /// Tickets of reads and local changes (see [`snapshot`]): a new one is larger than any before.
    tickets: AtomicU64,
    /// The change log's sequence number up to which every change is in the snapshot.
    mark: AtomicI64,
    /// When the registry last checked for changes successfully (Unix milliseconds).
    checked_at: AtomicI64,
    /// Older than this (milliseconds), the snapshot is stale; 0 until the refresh loop runs.
    stale_after_ms: AtomicI64,
    /// Undecodable rows of the last full load without even readable routing columns.
    skipped: AtomicI64,
    metrics: Metrics,
}

/// How many refresh periods a snapshot may miss before it counts as stale.
pub const STALE_AFTER_REFRESHES: u32 = 3;

impl Registry {
    /// Loads every webhook from the store.
    pub async fn load(store: Store, metrics: Metrics) -> Result<Arc<Self>, StoreError> {
        let registry = Arc::new(Registry {
            store,
            snapshot: RwLock::new(Snapshot::default()),
            tickets: AtomicU64::new(0),
            mark: AtomicI64::new(0),
            checked_at: AtomicI64::new(0),
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

    fn current(&self) -> RwLockReadGuard<'_, Snapshot> {
        // A poisoned lock still holds a whole snapshot: a patch does not panic half-way.
        self.snapshot
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `change` on the snapshot under the write lock, then updates the gauges.
    fn write<R>(&self, change: impl FnOnce(&mut Snapshot) -> R) -> R {
        let mut snapshot = self
            .snapshot
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let result = change(&mut snapshot);
        self.metrics
            .registry_webhooks
            .set(snapshot.readable_count() as i64);
        self.metrics
            .registry_rows_unreadable
            .set(snapshot.unreadable_count() as i64 + self.skipped.load(Ordering::Acquire));
        result
    }

    /// A new ticket: taken before a read, or after a local write.
    fn ticket(&self) -> u64 {
        self.tickets.fetch_add(1, Ordering::AcqRel) + 1
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
        self.current().readable(&id).cloned()
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
        self.current().unreadable(&id).cloned()
    }

    /// Webhook rows the registry could not decode (placeholders and skipped rows).
    pub fn unreadable_count(&self) -> usize {
        let skipped = usize::try_from(self.skipped.load(Ordering::Acquire)).unwrap_or(0);
        self.current().unreadable_count() + skipped
    }

    /// How long ago the registry last checked the database for changes successfully.
    pub fn snapshot_age(&self) -> Duration {
        let age = Utc::now().timestamp_millis() - self.checked_at.load(Ordering::Acquire);
        Duration::from_millis(u64::try_from(age).unwrap_or(0))
    }

    /// False once the registry missed [`STALE_AFTER_REFRESHES`] checks for changes (always true
    /// when no refresh loop runs).
    pub fn is_fresh(&self) -> bool {
        let limit = self.stale_after_ms.load(Ordering::Acquire);
        limit == 0 || self.snapshot_age().as_millis() <= limit as u128
    }

    fn checked(&self) {
        let now = Utc::now();
        self.checked_at
            .store(now.timestamp_millis(), Ordering::Release);
        self.metrics.registry_loaded_at.set(now.timestamp());
    }

    /// Applies a change made through this process at once (created or updated webhook), and
    /// announces it to the other replicas. Call it after the write is committed.
    pub fn upsert(&self, webhook: Webhook) {
        let id = webhook.id;
        let ticket = self.ticket();
        let row = Row::Readable(Arc::new(webhook));
        self.write(|snapshot| snapshot.patch(ticket, id, Change::Put(row, None)));
        self.announce(id);
    }

    /// Applies a deletion made through this process at once, and announces it.
    pub fn remove(&self, id: Uuid) {
        let ticket = self.ticket();
        self.write(|snapshot| snapshot.patch(ticket, id, Change::Gone));
        self.announce(id);
    }
}
