//! Dead letters the pipeline makes itself: of a delivery (retries exhausted, endpoint gone,
//! webhook disabled), and of a message whose handling panicked. Poison is in `poison.rs`.

use bytes::Bytes;
use lapin::types::FieldTable;
use uuid::Uuid;

use super::{Disposition, Next, Pipeline};
use crate::{
    dead_reason::DeadReason,
    event::Event,
    queue::{batch::Batch, header_text, job::DeadLetter, Outlet},
    webhook::Webhook,
};

impl Pipeline {
    /// Dead-letters a message whose handling panicked (reason `panic`), with the panic's message.
    /// A retry job names its webhook, a fan-out batch each of its webhooks (a letter each); an
    /// event's webhooks are not known at this point.
    pub async fn dead_letter_panic(
        &self,
        outlet: &Outlet,
        raw: &Bytes,
        headers: Option<&FieldTable>,
        detail: String,
    ) -> Disposition {
        self.metrics.handler_panics.inc();
        let letters = match Batch::from_headers(headers) {
            // A fan-out batch: a letter for each webhook it names.
            Ok(Some(batch)) => batch
                .webhook_ids
                .iter()
                .map(|&webhook_id| DeadLetter {
                    webhook_id: Some(webhook_id),
                    account_id: Some(batch.account_id.clone()),
                    ..DeadLetter::new(DeadReason::Panic, detail.clone())
                })
                .collect(),
            _ => vec![DeadLetter {
                webhook_id: header_text(headers, crate::queue::job::WEBHOOK_ID)
                    .and_then(|id| id.parse::<Uuid>().ok()),
                account_id: header_text(headers, crate::queue::job::ACCOUNT_ID),
                ..DeadLetter::new(DeadReason::Panic, detail)
            }],
        };
        let body: &[u8] = if raw.len() > self.max_message_bytes {
            &[]
        } else {
            raw
        };
        let letters = letters.into_iter().map(Next::Dead).collect();
        self.settle(outlet, body, "panic", letters).await
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
