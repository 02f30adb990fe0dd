//! The label sets of the metrics, and the fixed sets of values they take: an outcome or a
//! reason label is always one of an enum's texts, never a free string.

use prometheus_client::encoding::EncodeLabelSet;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// A [`DeliveryOutcome`], a [`SettleOutcome`], or a token request's or cache lookup's.
    pub outcome: &'static str,
}

/// What became of a delivery: the `outcome` label of `deliveries_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered,
    RetryScheduled,
    DeadLettered,
    /// A retry of a webhook deleted meanwhile.
    Dropped,
    Parked,
}

impl DeliveryOutcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            DeliveryOutcome::Delivered => "delivered",
            DeliveryOutcome::RetryScheduled => "retry_scheduled",
            DeliveryOutcome::DeadLettered => "dead_lettered",
            DeliveryOutcome::Dropped => "dropped",
            DeliveryOutcome::Parked => "parked",
        }
    }
}

/// What happened to a message not acked at once: the `outcome` label of `settles_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SettleOutcome {
    /// Nothing was attempted yet (the database cannot be read): put back on the queue.
    Requeued,
    /// Some outcomes were refused or lost with their channel and are published again.
    Republished,
    /// The outcomes were not durable within `amqp.settle_timeout`: dead-lettered by the broker.
    Rejected,
    /// An event of many webhooks was split into batch jobs (or one job per webhook).
    FannedOut,
}

impl SettleOutcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            SettleOutcome::Requeued => "requeued",
            SettleOutcome::Republished => "republished",
            SettleOutcome::Rejected => "rejected",
            SettleOutcome::FannedOut => "fanned_out",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    /// The lower bound of a power-of-two bucket: "1", "2", "4", ... "1024".
    pub limit: &'static str,
}

const LIMIT_BUCKETS: [&str; 11] = [
    "1", "2", "4", "8", "16", "32", "64", "128", "256", "512", "1024",
];

pub(super) fn limit_bucket(limit: u32) -> &'static str {
    let index = usize::try_from(limit.max(1).ilog2()).unwrap_or(usize::MAX);
    LIMIT_BUCKETS[index.min(LIMIT_BUCKETS.len() - 1)]
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// A queue of the topology: incoming, deliveries, dead, or a delay queue (a fixed set).
    pub queue: String,
}
