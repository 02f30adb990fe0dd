//! `[delivery]`: the HTTP attempt, the retry schedule, the address rules, and each endpoint's
//! and account's share of the worker.

use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::{describe, HumanDuration, Invalid};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    pub timeout: HumanDuration,
    /// Unset: `timeout` plus [`ATTEMPT_DEADLINE_SLACK`]; see [`DeliveryConfig::attempt_deadline`].
    #[serde(default)]
    pub attempt_deadline: Option<HumanDuration>,
    pub retry_schedule: Vec<HumanDuration>,
    pub allow_http: bool,
    #[serde(deserialize_with = "describe::cidrs")]
    pub allow_networks: Vec<IpNet>,
    pub max_response_bytes: usize,
    pub max_in_flight: usize,
    /// Requests in flight at once for one account, over all its webhooks: its share of
    /// `max_in_flight` (and of the consumers' prefetch windows).
    pub max_in_flight_per_account: usize,
    /// Longest a delivery waits in the worker for its endpoint's or its account's turn; one that
    /// would wait longer is parked instead, so it does not hold a place in the prefetch window.
    pub max_wait: HumanDuration,
    /// Each webhook's adaptive limit on requests in flight: where it starts, its floor and cap.
    pub concurrency_initial: u32,
    pub concurrency_min: u32,
    pub concurrency_max: u32,
    /// Consecutive timeouts or connection failures that open a webhook's circuit.
    pub circuit_failures: u32,
    /// The first park's delay; each further park of the same attempt doubles it.
    pub park_delay: HumanDuration,
    /// A webhook whose deliveries all failed this long is disabled; zero means never.
    pub disable_after: HumanDuration,
    pub default_account: String,
    pub fan_out_threshold: usize,
    /// Most webhooks one fan-out batch job names (1: one job per webhook, as before batches).
    pub fan_out_batch: usize,
    pub max_in_flight_per_event: usize,
    /// Threads the consuming side runs on, each a current-thread runtime with broker
    /// connections and consumers of its own (see `worker::thread`).
    pub threads: usize,
    /// Removed keys, kept only to refuse them with a message that says what replaced them.
    #[serde(default)]
    pub max_in_flight_per_webhook: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub park_after: Option<serde::de::IgnoredAny>,
}

/// How much longer than one request a whole attempt may take when `delivery.attempt_deadline`
/// is not set: room for a token request and the retry after a 401 that do not hang.
pub const ATTEMPT_DEADLINE_SLACK: Duration = Duration::from_secs(15);

impl DeliveryConfig {
    /// The deadline of a whole attempt: `attempt_deadline`, or `timeout` plus 15 s.
    pub fn attempt_deadline(&self) -> Duration {
        self.attempt_deadline
            .map_or(self.timeout.0 + ATTEMPT_DEADLINE_SLACK, |deadline| {
                deadline.0
            })
    }

    /// Checks what the types alone cannot; the error names the key.
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        if self.timeout.0.is_zero() {
            return Err(("delivery.timeout", "must be more than 0".into()));
        }
        if self
            .attempt_deadline
            .is_some_and(|deadline| deadline.0 < self.timeout.0)
        {
            return Err((
                "delivery.attempt_deadline",
                format!(
                    "must be at least delivery.timeout ({})",
                    humantime::format_duration(self.timeout.0)
                ),
            ));
        }
        if self.max_in_flight == 0 {
            return Err(("delivery.max_in_flight", "must be at least 1".into()));
        }
        self.validate_endpoint_health()?;
        if self.max_response_bytes == 0 {
            return Err(("delivery.max_response_bytes", "must be at least 1".into()));
        }
        if self.max_in_flight_per_event == 0 {
            return Err((
                "delivery.max_in_flight_per_event",
                "must be at least 1".into(),
            ));
        }
        if !(1..=crate::queue::batch::MAX_BATCH).contains(&self.fan_out_batch) {
            return Err((
                "delivery.fan_out_batch",
                format!(
                    "must lie between 1 and {} (webhooks in one fan-out job)",
                    crate::queue::batch::MAX_BATCH
                ),
            ));
        }
        if !(1..=crate::health::MAX_DELIVERY_THREADS).contains(&self.threads) {
            return Err((
                "delivery.threads",
                format!(
                    "must lie between 1 and {}",
                    crate::health::MAX_DELIVERY_THREADS
                ),
            ));
        }
        if self.default_account.is_empty() {
            return Err(("delivery.default_account", "must not be empty".into()));
        }
        if self.retry_schedule.iter().any(|d| d.0.is_zero()) {
            return Err((
                "delivery.retry_schedule",
                "every delay must be more than 0".into(),
            ));
        }
        Ok(())
    }

    /// The `delivery` keys of endpoint health: adaptive concurrency, circuit breaker, parking.
    fn validate_endpoint_health(&self) -> Result<(), Invalid> {
        let delivery = self;
        if delivery.max_in_flight_per_webhook.is_some() {
            return Err((
                "delivery.max_in_flight_per_webhook",
                "was removed: each webhook's limit now adapts; set delivery.concurrency_initial, \
                 delivery.concurrency_min and delivery.concurrency_max instead"
                    .into(),
            ));
        }
        if delivery.park_after.is_some() {
            return Err((
                "delivery.park_after",
                "was removed: a delivery now waits while its endpoint makes progress and is \
                 parked at once when it does not; delete the key"
                    .into(),
            ));
        }
        if delivery.concurrency_min == 0 {
            return Err(("delivery.concurrency_min", "must be at least 1".into()));
        }
        if delivery.concurrency_max < delivery.concurrency_min {
            return Err((
                "delivery.concurrency_max",
                "must be at least delivery.concurrency_min".into(),
            ));
        }
        if !(delivery.concurrency_min..=delivery.concurrency_max)
            .contains(&delivery.concurrency_initial)
        {
            return Err((
                "delivery.concurrency_initial",
                "must lie between delivery.concurrency_min and delivery.concurrency_max".into(),
            ));
        }
        if delivery.circuit_failures == 0 {
            return Err(("delivery.circuit_failures", "must be at least 1".into()));
        }
        if delivery.park_delay.0 < Duration::from_millis(100) {
            return Err(("delivery.park_delay", "must be at least 100ms".into()));
        }
        if !(1..=delivery.max_in_flight).contains(&delivery.max_in_flight_per_account) {
            return Err((
                "delivery.max_in_flight_per_account",
                "must lie between 1 and delivery.max_in_flight".into(),
            ));
        }
        if delivery.max_wait.0 < Duration::from_millis(10) {
            return Err(("delivery.max_wait", "must be at least 10ms".into()));
        }
        Ok(())
    }
}
