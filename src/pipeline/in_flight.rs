//! Requests in flight by (event, webhook): this worker never has two at once for one pair.
//!
//! Delivery is at least once, so one pair can come twice: a message redelivered after its
//! session was lost while its retry job was already on its way (both then carry on), or a delay
//! queue's at-least-once dead-lettering. A second request for a pair waits here until the first
//! has its answer, then goes (a duplicate, never a concurrent one).

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use tokio::sync::Notify;
use uuid::Uuid;

use super::session;

#[derive(Default)]
pub(super) struct InFlight {
    pairs: Mutex<HashSet<(String, Uuid)>>,
    released: Notify,
}

/// The right to send a request for one pair; released when dropped.
pub(super) struct Claim {
    owner: Arc<InFlight>,
    pair: (String, Uuid),
}

impl InFlight {
    /// Waits until no request for (`event_id`, `webhook`) is in flight and claims the pair;
    /// `None` when the task's session is lost meanwhile (no new request starts then).
    pub async fn claim(self: &Arc<Self>, event_id: &str, webhook: Uuid) -> Option<Claim> {
        let pair = (event_id.to_string(), webhook);
        loop {
            // Created before the look, so a release between the two is not missed.
            let released = self.released.notified();
            if session::is_lost() {
                return None;
            }
            let claimed = self
                .pairs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(pair.clone());
            if claimed {
                let owner = self.clone();
                return Some(Claim { owner, pair });
            }
            tokio::select! {
                _ = released => {}
                _ = session::lost() => return None,
            }
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.owner
            .pairs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.pair);
        self.owner.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_second_claim_for_a_pair_waits_for_the_first_to_be_released() {
        let in_flight = Arc::new(InFlight::default());
        let webhook = Uuid::new_v4();
        let first = in_flight.claim("e1", webhook).await.expect("claimed");
        let other = in_flight.claim("e2", webhook).await;
        assert!(other.is_some(), "another event is not held back");
        let waiting = {
            let in_flight = in_flight.clone();
            tokio::spawn(async move { in_flight.claim("e1", webhook).await.is_some() })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the second waits");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert!(second.expect("released").unwrap());
    }
}
