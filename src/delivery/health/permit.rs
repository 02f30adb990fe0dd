//! One request's hold on its endpoint's, its account's and the global slot, and the guards that
//! count a delivery among the waiting ones: each gives back what it holds when dropped, even
//! when its task is cancelled.

use std::sync::Arc;

use tokio::{sync::OwnedSemaphorePermit, time::Instant};

use super::{Account, Endpoint, Health};
use crate::delivery::outcome::Signal;

/// Counts a delivery among the endpoint's waiting ones until it stops waiting, even if its
/// task is cancelled.
pub(super) struct Waiting(pub(super) Arc<Endpoint>);

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.waiting = state.waiting.saturating_sub(1);
    }
}

/// Counts a delivery among its account's waiting ones until it stops waiting, even if its
/// task is cancelled.
pub(super) struct AccountWaiting(pub(super) Arc<Account>);

impl Drop for AccountWaiting {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.waiting = state.waiting.saturating_sub(1);
    }
}

/// One request's slots with its endpoint, its account and the global one; say how it ended
/// with [`Permit::finish`]. Dropped unfinished, it frees the slots and teaches nothing.
pub struct Permit {
    pub(super) endpoint: Arc<Endpoint>,
    /// Taken after the endpoint's slot; `None` until then.
    pub(super) account: Option<Arc<Account>>,
    pub(super) health: Health,
    pub(super) started: std::time::Instant,
    pub(super) probe: bool,
    /// The request goes out: the endpoint and the account count it as sent.
    pub(super) sent: bool,
    pub(super) finished: bool,
    pub(super) _global: Option<OwnedSemaphorePermit>,
}

impl Permit {
    pub(super) fn send(&mut self) {
        let now = Instant::now().into_std();
        self.endpoint.state().sent(now);
        if let Some(account) = &self.account {
            account.state().sent(now);
        }
        self.started = now;
        self.sent = true;
    }

    pub fn finish(mut self, signal: Signal) {
        self.finished = true;
        let now = Instant::now().into_std();
        if let Some(account) = &self.account {
            let mut state = account.state();
            state.finish(now, now.saturating_duration_since(self.started));
            account.wake(&state);
        }
        let mut changes = Vec::new();
        {
            let mut state = self.endpoint.state();
            let before = state.limit();
            state.finish(now, self.started, self.probe, signal, &mut changes);
            self.health
                .metrics
                .endpoint_limit(Some(before), Some(state.limit()));
            self.endpoint.wake(&state);
        }
        self.health.report(self.endpoint.id, &changes);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.finished {
            {
                let mut state = self.endpoint.state();
                state.dropped(self.probe, self.sent);
                self.endpoint.wake(&state);
            }
            if let Some(account) = &self.account {
                let mut state = account.state();
                state.dropped(self.sent);
                account.wake(&state);
            }
        }
    }
}
