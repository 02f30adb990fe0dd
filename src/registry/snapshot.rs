//! The registry's in-memory state: every webhook by id and by account, placeholders of rows
//! that cannot be decoded, and for each row the *ticket* of the read that put it there.
//!
//! A change is patched in place (O(1) by id, O(webhooks of the account) by account); only a full
//! load builds a snapshot whole. Tickets order what is applied: a ticket is taken before a read
//! (or, for a change made through this process, after its write), so the value a read brings
//! reflects the database at least as of its ticket. A patch is applied only when its ticket is
//! newer than the row's (a row held, a row seen deleted, or else the full load's), so an older
//! read never overwrites a newer one, whatever order reads finish in.

use std::{collections::HashMap, sync::Arc};

use uuid::Uuid;

use crate::{
    store::{Fingerprint, UnreadableWebhook},
    webhook::Webhook,
};

/// What the registry holds for one webhook row.
#[derive(Clone)]
pub(super) enum Row {
    Readable(Arc<Webhook>),
    /// The row cannot be decoded; events still match it (see the registry's docs).
    Unreadable(Arc<UnreadableWebhook>),
}

impl Row {
    fn account_id(&self) -> &str {
        match self {
            Row::Readable(webhook) => &webhook.account_id,
            Row::Unreadable(row) => &row.account_id,
        }
    }
}

#[derive(Clone)]
pub(super) struct Entry {
    pub row: Row,
    /// The stored form it was decoded from; `None` for a change made through this process.
    pub fingerprint: Option<Fingerprint>,
    ticket: u64,
}

/// A change to one row, as a read (or a local write) found it.
pub(super) enum Change {
    Put(Row, Option<Fingerprint>),
    Gone,
}

#[derive(Default)]
pub(super) struct Snapshot {
    entries: HashMap<Uuid, Entry>,
    pub by_account: HashMap<String, Vec<Arc<Webhook>>>,
    pub unreadable_by_account: HashMap<String, Vec<Arc<UnreadableWebhook>>>,
    /// Rows seen deleted since the full load, by the ticket of the read that saw it.
    gone: HashMap<Uuid, u64>,
    /// The full load's ticket: the ticket of every row it brought, and of every row it did not.
    floor: u64,
    /// Ids patched since the full load, each once: what a newer full load must lay over its
    /// own read.
    patched: Vec<Uuid>,
    readable: usize,
}

impl Snapshot {
    /// A snapshot of a full load, read as of `ticket`.
    pub fn load(
        ticket: u64,
        rows: impl IntoIterator<Item = (Uuid, Row, Option<Fingerprint>)>,
    ) -> Self {
        let mut snapshot = Snapshot {
            floor: ticket,
            ..Snapshot::default()
        };
        for (id, row, fingerprint) in rows {
            snapshot.insert(
                id,
                Entry {
                    row,
                    fingerprint,
                    ticket,
                },
            );
        }
        snapshot
    }

    pub fn get(&self, id: &Uuid) -> Option<&Entry> {
        self.entries.get(id)
    }

    pub fn readable(&self, id: &Uuid) -> Option<&Arc<Webhook>> {
        match &self.entries.get(id)?.row {
            Row::Readable(webhook) => Some(webhook),
            Row::Unreadable(_) => None,
        }
    }

    pub fn unreadable(&self, id: &Uuid) -> Option<&Arc<UnreadableWebhook>> {
        match &self.entries.get(id)?.row {
            Row::Unreadable(row) => Some(row),
            Row::Readable(_) => None,
        }
    }

    /// Decodable webhooks held.
    pub fn readable_count(&self) -> usize {
        self.readable
    }

    /// Placeholders held.
    pub fn unreadable_count(&self) -> usize {
        self.entries.len() - self.readable
    }

    /// Applies `change` to row `id` as read at `ticket`, unless what is held is newer. Returns
    /// whether it was applied.
    pub fn patch(&mut self, ticket: u64, id: Uuid, change: Change) -> bool {
        let held = match (self.entries.get(&id), self.gone.get(&id)) {
            (Some(entry), _) => entry.ticket,
            (None, Some(gone)) => *gone,
            (None, None) => self.floor,
        };
        if ticket <= held {
            return false;
        }
        self.remove(&id);
        match change {
            Change::Put(row, fingerprint) => {
                self.gone.remove(&id);
                let entry = Entry {
                    row,
                    fingerprint,
                    ticket,
                };
                self.insert(id, entry);
            }
            Change::Gone => {
                self.gone.insert(id, ticket);
            }
        }
        // Once per id: a row patched before is listed already (its ticket is above the floor).
        if held == self.floor {
            self.patched.push(id);
        }
        true
    }

    /// Lays over `self` (a new full load) what `older` (the snapshot it replaces) was patched
    /// with after this load's ticket: changes that arrived while it read.
    pub fn lay_over(&mut self, older: &Snapshot) {
        for id in &older.patched {
            if let Some(entry) = older.entries.get(id) {
                let change = Change::Put(entry.row.clone(), entry.fingerprint);
                self.patch(entry.ticket, *id, change);
            } else if let Some(ticket) = older.gone.get(id) {
                self.patch(*ticket, *id, Change::Gone);
            }
        }
        // What was laid over is this snapshot's own patch now; the rest is in its read.
    }

    fn insert(&mut self, id: Uuid, entry: Entry) {
        let account = entry.row.account_id().to_string();
        match &entry.row {
            Row::Readable(webhook) => {
                self.by_account
                    .entry(account)
                    .or_default()
                    .push(webhook.clone());
                self.readable += 1;
            }
            Row::Unreadable(row) => {
                self.unreadable_by_account
                    .entry(account)
                    .or_default()
                    .push(row.clone());
            }
        }
        self.entries.insert(id, entry);
    }

    fn remove(&mut self, id: &Uuid) {
        let Some(entry) = self.entries.remove(id) else {
            return;
        };
        let account = entry.row.account_id();
        match &entry.row {
            Row::Readable(_) => {
                self.readable -= 1;
                if let Some(list) = self.by_account.get_mut(account) {
                    list.retain(|w| w.id != *id);
                    if list.is_empty() {
                        self.by_account.remove(account);
                    }
                }
            }
            Row::Unreadable(_) => {
                if let Some(list) = self.unreadable_by_account.get_mut(account) {
                    list.retain(|w| w.id != *id);
                    if list.is_empty() {
                        self.unreadable_by_account.remove(account);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
