//! Dead letters the pipeline makes itself: of a delivery (retries exhausted, endpoint gone,
//! webhook disabled), and of a message whose handling panicked. Poison is in `poison.rs`.

use bytes::Bytes;
use lapin::types::FieldTable;
use uuid::Uuid;

use super::{Disposition, Next, Pipeline};
use crate::{
    dead_reason::DeadReason,
    event::Event,
    queue::{header_text, job::DeadLetter, Outlet},
    webhook::Webhook,
};

impl Pipeline {
    /// Dead-letters a message whose handling panicked (reason `panic`), with the panic's message.
    /// A retry job names its webhook; an event's webhooks are not known at this point.
    pub async fn dead_letter_panic(
        &self,
        outlet: &Outlet,
        raw: &Bytes,
        headers: Option<&FieldTable>,
        detail: String,
    ) -> Disposition {
        self.metrics.handler_panics.inc();
        let webhook_id: Option<Uuid> =
            header_text(headers, crate::queue::job::WEBHOOK_ID).and_then(|id| id.parse().ok());
        let dead = DeadLetter {
            webhook_id,
            account_id: header_text(headers, crate::queue::job::ACCOUNT_ID),
            ..DeadLetter::new(DeadReason::Panic, detail)
        };
        let body: &[u8] = if raw.len() > self.max_message_bytes {
            &[]
        } else {
            raw
        };
        self.settle(outlet, body, "panic", vec![Next::Dead(dead)])
            .await
    }
}

/// The dead letter of the delivery of `event` to `webhook`, after `attempts` attempts.
pub(super) fn dead_letter(
    webhook: &Webhook,
    event: &Event,
    reason: DeadReason,
    detail: &str,
    attempts: u32,
    last_status: Option<u16>,
) -> DeadLetter {
    DeadLetter {
        reason,
        detail: detail.into(),
        webhook_id: Some(webhook.id),
        account_id: Some(webhook.account_id.clone()),
        event_type: Some(event.event_type.clone()),
        attempts: Some(attempts),
        last_status,
    }
}
