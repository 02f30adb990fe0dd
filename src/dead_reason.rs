//! Why a message or a delivery became a dead letter: one enum, whose [`DeadReason::as_str`] is
//! the text of the `x-dead-reason` header, of the `dead_letters` table's `reason` column, of
//! the `reason` label of metrics and of the dead-letter tools. The texts are part of the
//! contract (DESIGN.md): a variant's text never changes.

use std::{fmt, str::FromStr};

/// Why a message or a delivery was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadReason {
    // Owed to a webhook: each names its webhook, is recorded by webhook and can be replayed.
    /// Every attempt of the schedule failed (or was parked through).
    RetriesExhausted,
    /// The endpoint answered 410 Gone; the webhook was disabled.
    EndpointGone,
    /// The webhook was disabled (by its owner, or for failing `delivery.disable_after`).
    WebhookDisabled,
    /// The webhook's stored secret or settings cannot be decoded.
    WebhookUnreadable,

    // Made by the broker itself (`x-first-death-reason`), or for the webhooks it was owed to.
    /// The message's outcomes were not durable within `amqp.settle_timeout`: it was rejected.
    Rejected,
    /// The message was handed out `amqp.delivery_limit` times without being settled.
    DeliveryLimit,

    // Poison: nothing a redrive could deliver.
    /// The message is larger than `amqp.max_message_bytes`.
    TooLarge,
    /// The body is not JSON.
    InvalidJson,
    /// The body is JSON but not an event (`id`, `type`, `data.object`).
    InvalidEvent,
    /// The `account_id` header is present but not a non-empty text.
    BadAccount,
    /// A retry job whose headers do not read.
    InvalidJob,
    /// Handling the message panicked.
    Panic,
}

impl DeadReason {
    /// Every reason, in the order above.
    pub const ALL: [DeadReason; 12] = [
        DeadReason::RetriesExhausted,
        DeadReason::EndpointGone,
        DeadReason::WebhookDisabled,
        DeadReason::WebhookUnreadable,
        DeadReason::Rejected,
        DeadReason::DeliveryLimit,
        DeadReason::TooLarge,
        DeadReason::InvalidJson,
        DeadReason::InvalidEvent,
        DeadReason::BadAccount,
        DeadReason::InvalidJob,
        DeadReason::Panic,
    ];

    /// The reason's text on the wire, in the database and in metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            DeadReason::RetriesExhausted => "retries_exhausted",
            DeadReason::EndpointGone => "endpoint_gone",
            DeadReason::WebhookDisabled => "webhook_disabled",
            DeadReason::WebhookUnreadable => "webhook_unreadable",
            DeadReason::Rejected => "rejected",
            DeadReason::DeliveryLimit => "delivery_limit",
            DeadReason::TooLarge => "too_large",
            DeadReason::InvalidJson => "invalid_json",
            DeadReason::InvalidEvent => "invalid_event",
            DeadReason::BadAccount => "bad_account",
            DeadReason::InvalidJob => "invalid_job",
            DeadReason::Panic => "panic",
        }
    }

    /// A dead letter the worker made for a delivery owed to a webhook, once its cause is
    /// fixed, may be sent again (`dead-letters replay`).
    pub const fn is_owed_to_webhook(self) -> bool {
        matches!(
            self,
            DeadReason::RetriesExhausted
                | DeadReason::EndpointGone
                | DeadReason::WebhookDisabled
                | DeadReason::WebhookUnreadable
                | DeadReason::DeliveryLimit
        )
    }
}

impl fmt::Display for DeadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A text that is no dead-letter reason of this version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a dead-letter reason")]
pub struct UnknownReason;

impl FromStr for DeadReason {
    type Err = UnknownReason;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        DeadReason::ALL
            .into_iter()
            .find(|reason| reason.as_str() == text)
            .ok_or(UnknownReason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_reads_back_from_its_text() {
        for reason in DeadReason::ALL {
            assert_eq!(reason.as_str().parse(), Ok(reason));
        }
        assert_eq!(
            "Retries_Exhausted".parse::<DeadReason>(),
            Err(UnknownReason)
        );
        assert_eq!("".parse::<DeadReason>(), Err(UnknownReason));
    }

    #[test]
    fn the_texts_are_the_contract() {
        let texts: Vec<&str> = DeadReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            texts,
            [
                "retries_exhausted",
                "endpoint_gone",
                "webhook_disabled",
                "webhook_unreadable",
                "rejected",
                "delivery_limit",
                "too_large",
                "invalid_json",
                "invalid_event",
                "bad_account",
                "invalid_job",
                "panic",
            ]
        );
    }
}
