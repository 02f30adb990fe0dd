//! Dead letters the pipeline makes itself: of a delivery (retries exhausted, endpoint gone), of
//! a poison message, and of a message whose handling panicked.
//!
//! A message larger than `amqp.max_message_bytes` is never published again: its dead letter
//! carries the headers (reason `too_large`, the size in the detail) and an empty body, so an
//! oversized message costs the broker its bytes once, not twice.

use bytes::Bytes;
use lapin::types::FieldTable;
use uuid::Uuid;

use super::{Disposition, Next, Pipeline};
use crate::{
    event::{Event, PoisonReason},
    queue::{header_text, job::DeadLetter, Outlet},
    webhook::Webhook,
};

impl Pipeline {
    /// Dead-letters a poison message; a too large one without its body.
    pub(super) async fn poison(
        &self,
        outlet: &Outlet,
        raw: &[u8],
        reason: &PoisonReason,
        dead: DeadLetter,
    ) -> Disposition {
        let body: &[u8] = match reason {
            PoisonReason::TooLarge { .. } => &[],
            _ => raw,
        };
        self.settle(outlet, body, "poison", vec![Next::Dead(dead)])
            .await
    }

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
            reason: "panic".into(),
            detail,
            webhook_id,
            account_id: header_text(headers, crate::queue::job::ACCOUNT_ID),
            ..DeadLetter::default()
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

pub(super) fn dead_letter(
    webhook: &Webhook,
    event: &Event,
    reason: &str,
    detail: &str,
    attempts: u32,
    last_status: Option<u16>,
) -> DeadLetter {
    DeadLetter {
        reason: reason.into(),
        detail: detail.into(),
        webhook_id: Some(webhook.id),
        account_id: Some(webhook.account_id.clone()),
        event_type: Some(event.event_type.clone()),
        attempts: Some(attempts),
        last_status,
    }
}
