//! Poison: a message no webhook can be given (an event whose body or account header does not
//! read, a retry job whose headers or body do not read). One path for them all: logged, counted
//! in `poison_events_total` by reason, and dead-lettered, never retried and never a crash.
//!
//! A message larger than `amqp.max_message_bytes` is never published again: its dead letter
//! carries the headers (reason `too_large`, the size in the detail) and an empty body, so an
//! oversized message costs the broker its bytes once, not twice.

use tracing::warn;

use super::{Disposition, Next, Pipeline};
use crate::{
    dead_reason::DeadReason,
    queue::{job::DeadLetter, Outlet},
};

impl Pipeline {
    /// Dead-letters the poison message `raw` as `letter` says, under `message_id` (one of
    /// [`crate::queue::job::NO_EVENT_MESSAGE_IDS`]: a poison message names no event).
    pub(super) async fn poison(
        &self,
        outlet: &Outlet,
        raw: &[u8],
        message_id: &'static str,
        letter: DeadLetter,
    ) -> Disposition {
        warn!(reason = %letter.reason, detail = letter.detail, event_type = letter.event_type,
            "poison message; dead-lettering it");
        self.metrics.poison(letter.reason);
        let body: &[u8] = if letter.reason == DeadReason::TooLarge {
            &[]
        } else {
            raw
        };
        self.settle(outlet, body, message_id, vec![Next::Dead(letter)])
            .await
    }
}
