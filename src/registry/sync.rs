//! Keeping the registry current from the database: the full load (at start, and every
//! `registry.full_reload` as a safety net) and the check for changes every `registry.refresh`
//! (the change log after this replica's mark; those rows alone read again).
//!
//! Both run in one task, one at a time, so the mark only moves forward from one place. A full
//! load reads the log's newest sequence number *before* it reads the rows, so a change it may
//! have missed is read again by the next check. A check takes its ticket after reading the log
//! and before reading the rows, so what it applies is at least as new as the changes it read.

use std::{sync::Arc, time::Duration};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::warn;
use uuid::Uuid;

use super::{
    snapshot::{Change, Row, Snapshot},
    Registry, STALE_AFTER_REFRESHES,
};
use crate::store::{Fingerprint, Loaded, LoadedRow, StoreError, CHANGES_PER_READ};

/// How often the registry checks for changes, and loads everything again.
#[derive(Debug, Clone, Copy)]
pub struct Refresh {
    /// `registry.refresh`: the check of the change log.
    pub changes: Duration,
    /// `registry.full_reload`: the safety net.
    pub full: Duration,
}

/// Full-reload periods the change log keeps: a replica that missed more loads everything.
const LOG_KEPT_RELOADS: u32 = 3;

/// A row read, as the snapshot takes it: `None` when it cannot even be matched to events.
type Read = Option<(Uuid, Row, Option<Fingerprint>)>;

impl Registry {
    /// Reads every webhook from the store and makes that the snapshot, with what changed
    /// meanwhile laid over it. Rows whose stored form is unchanged keep their decoded copy.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let ticket = self.ticket();
        let mark = self.store.change_mark().await?;
        let rows = self
            .store
            .load_rows(None, |id, fingerprint| self.unchanged(id, fingerprint))
            .await?;
        let mut skipped = 0;
        let mut first_bad = None;
        let mut kept = Vec::with_capacity(rows.len());
        for row in rows {
            match self.take(row, &mut first_bad) {
                Some(read) => kept.push(read),
                None => skipped += 1,
            }
        }
        if let Some((count, first)) = first_bad {
            warn!(unreadable = count, skipped, first = %first,
                "webhook rows that cannot be decoded: their events are dead-lettered (webhook_unreadable)");
        }
        self.metrics.registry_rows_skipped.set(skipped);
        self.skipped
            .store(skipped, std::sync::atomic::Ordering::Release);
        let mut fresh = Snapshot::load(ticket, kept);
        self.write(|snapshot| {
            fresh.lay_over(snapshot);
            *snapshot = fresh;
        });
        self.mark.store(mark, std::sync::atomic::Ordering::Release);
        self.checked();
        Ok(())
    }

    /// Applies the changes recorded after this replica's mark: the log read (one indexed query),
    /// then the changed rows read again. A mark below what the log still holds loads everything.
    pub async fn apply_changes(&self) -> Result<(), StoreError> {
        loop {
            let mark = self.mark.load(std::sync::atomic::Ordering::Acquire);
            let changes = self.store.changes_since(mark).await?;
            if changes.gap {
                warn!(
                    mark,
                    "the change log no longer reaches this replica's mark; loading every webhook"
                );
                return self.reload().await;
            }
            if !changes.ids.is_empty() {
                let ticket = self.ticket();
                self.read_again(ticket, &changes.ids).await?;
            }
            self.mark
                .store(changes.last, std::sync::atomic::Ordering::Release);
            if changes.last - mark < CHANGES_PER_READ {
                break;
            }
        }
        self.checked();
        Ok(())
    }

    /// Reads rows `ids` again and applies them as of `ticket` (taken before this read): a row
    /// no longer there was deleted.
    pub(super) async fn read_again(&self, ticket: u64, ids: &[Uuid]) -> Result<(), StoreError> {
        let rows = self
            .store
            .load_rows(Some(ids), |id, fingerprint| self.unchanged(id, fingerprint))
            .await?;
        let mut first_bad = None;
        let mut changes: Vec<(Uuid, Change)> = Vec::with_capacity(ids.len());
        for row in rows {
            let id = row.id;
            match self.take(row, &mut first_bad) {
                Some((id, row, fingerprint)) => changes.push((id, Change::Put(row, fingerprint))),
                // Not even matchable: as good as gone for the registry.
                None => changes.extend(id.map(|id| (id, Change::Gone))),
            }
        }
        if let Some((_, first)) = first_bad {
            warn!(first = %first, "a changed webhook row cannot be decoded: its events are dead-lettered (webhook_unreadable)");
        }
        let read: std::collections::HashSet<Uuid> = changes.iter().map(|(id, _)| *id).collect();
        for id in ids.iter().filter(|id| !read.contains(id)) {
            changes.push((*id, Change::Gone));
        }
        self.write(|snapshot| {
            for (id, change) in changes {
                snapshot.patch(ticket, id, change);
            }
        });
        Ok(())
    }

    /// The copy held of row `id` when it was decoded from the stored form `fingerprint`.
    fn unchanged(&self, id: Uuid, fingerprint: &Fingerprint) -> Option<Row> {
        let snapshot = self.current();
        let entry = snapshot.get(&id)?;
        (entry.fingerprint.as_ref() == Some(fingerprint)).then(|| entry.row.clone())
    }

    /// A loaded row as the snapshot takes it; an undecodable one is counted in `bad` (how many,
    /// and the first's error) and becomes a placeholder when it can still be matched.
    fn take(&self, row: LoadedRow<Row>, bad: &mut Option<(usize, crate::store::BadRow)>) -> Read {
        let id = row.id?;
        match row.row {
            Loaded::Unchanged(kept) => Some((id, kept, Some(row.fingerprint))),
            Loaded::Read(read) => match *read {
                Ok(webhook) => Some((id, Row::Readable(Arc::new(webhook)), Some(row.fingerprint))),
                Err(error) => {
                    let routing = error.routing.as_deref().cloned();
                    match bad {
                        Some((count, _)) => *count += 1,
                        None => *bad = Some((1, error)),
                    }
                    routing.map(|r| (id, Row::Unreadable(Arc::new(r)), Some(row.fingerprint)))
                }
            },
        }
    }

    /// Checks for changes every `refresh.changes` and loads everything every `refresh.full`,
    /// until cancelled. A failure keeps the snapshot as it is (and, for long, makes it stale).
    pub async fn refresh_until_cancelled(
        self: Arc<Self>,
        refresh: Refresh,
        cancel: CancellationToken,
    ) {
        let stale_after = refresh.changes.saturating_mul(STALE_AFTER_REFRESHES);
        self.stale_after_ms.store(
            i64::try_from(stale_after.as_millis()).unwrap_or(i64::MAX),
            std::sync::atomic::Ordering::Release,
        );
        let mut ticker = tokio::time::interval(refresh.changes);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The load at start was the first full one.
        let mut next_full = Instant::now() + refresh.full;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = ticker.tick() => {}
            }
            if Instant::now() >= next_full {
                match self.reload().await {
                    Ok(()) => {
                        next_full = Instant::now() + refresh.full;
                        self.prune_change_log(refresh.full).await;
                    }
                    Err(error) => {
                        warn!(%error, "registry reload failed; keeping the last snapshot")
                    }
                }
            } else if let Err(error) = self.apply_changes().await {
                warn!(%error, "checking webhook changes failed; keeping the last snapshot");
            }
        }
    }

    /// Drops the change log's entries older than a few full reloads.
    async fn prune_change_log(&self, full: Duration) {
        let kept = full.saturating_mul(LOG_KEPT_RELOADS);
        let Ok(kept) = chrono::TimeDelta::from_std(kept) else {
            return;
        };
        if let Err(error) = self.store.prune_changes(chrono::Utc::now() - kept).await {
            warn!(%error, "could not prune the webhook change log");
        }
    }
}
