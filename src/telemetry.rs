//! Logs and metrics. Logs go through `tracing` (JSON for containers, pretty for terminals);
//! metrics are Prometheus counters and gauges served at `/metrics`. No label or field ever
//! carries a secret: labels are outcomes and reasons from fixed sets.

use std::sync::{atomic::AtomicU64, Arc};

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use tracing_subscriber::{fmt, util::SubscriberInitExt, EnvFilter};

use crate::{
    config::{LogConfig, LogFormat},
    dead_reason::DeadReason,
};

#[cfg(test)]
pub(crate) mod captured;
mod labels;
mod span_fields;

use labels::limit_bucket;
pub use labels::{
    DeliveryOutcome, LimitLabels, OutcomeLabels, QueueLabels, ReasonLabels, SettleOutcome,
};
use span_fields::JsonSpanFields;

/// Installs the global subscriber. Call once, at start.
pub fn init_logging(config: &LogConfig) {
    let mut filter = EnvFilter::try_new(&config.level).unwrap_or_else(|_| EnvFilter::new("info"));
    if !config.level.contains("lapin") {
        // lapin logs every channel the broker closes at ERROR, including those the worker expects
        // and reports itself with context (a queue declared with other arguments, a publish to
        // a deleted queue); a second, context-free line would only mislead.
        if let Ok(quiet) = "lapin::channel=off".parse() {
            filter = filter.add_directive(quiet);
        }
    }
    let _ = match config.format {
        LogFormat::Json => json_logs(filter, std::io::stderr).try_init(),
        // Colour only on a terminal: a file or a log collector would get escape codes.
        LogFormat::Pretty => fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .finish()
            .try_init(),
    };
}

/// JSON lines, one per event, written to `writer`. Each line carries the fields of the span it
/// was logged in (`span`: a delivery's `event_id`, `webhook_id` and `attempt`) and of every
/// span around it (`spans`), so lines inside a delivery need no ids of their own.
pub(crate) fn json_logs<W>(filter: EnvFilter, writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .json()
        .flatten_event(true)
        .with_current_span(true)
        // Each delivery's span is formatted whether a line is logged in it or not.
        .fmt_fields(JsonSpanFields)
        .finish()
}

/// The worker's metrics. Cheap to clone: every field is a shared handle.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub events_received: Counter<u64, AtomicU64>,
    pub poison_events: Family<ReasonLabels, Counter>,
    pub deliveries: Family<OutcomeLabels, Counter>,
    pub delivery_seconds: Histogram,
    pub token_requests: Family<OutcomeLabels, Counter>,
    pub in_flight: Gauge,
    pub registry_webhooks: Gauge,
    /// Rows the last registry load could not decode (skipped; the others load).
    pub registry_rows_skipped: Gauge,
    /// Unix time of the registry's last successful check of the database (its change log, or a
    /// full load): its age is `time() - this`.
    pub registry_loaded_at: Gauge,
    pub amqp_connected: Gauge,
    pub delivery_log_rows: Counter<u64, AtomicU64>,
    pub delivery_log_dropped: Counter<u64, AtomicU64>,
    /// Dead letters recorded by webhook in the database.
    pub dead_letters_recorded: Counter<u64, AtomicU64>,
    /// Dead letters that could not be recorded by webhook (they stay in `<prefix>.dead`).
    pub dead_letters_unrecorded: Counter<u64, AtomicU64>,
    /// Webhook rows that cannot be decoded (secret or settings): their events become dead
    /// letters (`webhook_unreadable`) when their account and events can be read.
    pub registry_rows_unreadable: Gauge,
    /// 1 while the broker blocks the publishing connection (memory or disk alarm).
    pub amqp_blocked: Gauge,
    /// What happened to messages that could not be acked straight away.
    pub settles: Family<OutcomeLabels, Counter>,
    /// Webhooks named by dead letters the broker made of rejected messages, by reason: what
    /// they are still owed (see `pipeline::settle::Owed`).
    pub owed_dead_letters: Family<ReasonLabels, Counter>,
    /// Panics caught in a message's handling (the message is dead-lettered, reason `panic`).
    pub handler_panics: Counter<u64, AtomicU64>,
    /// Fan-out batch jobs published (confirmed), each naming up to `delivery.fan_out_batch`
    /// webhooks.
    pub fan_out_batches: Counter<u64, AtomicU64>,
    /// Token cache lookups: hit or miss.
    pub token_cache: Family<OutcomeLabels, Counter>,
    pub token_request_seconds: Histogram,
    /// Ready messages per queue of the worker's topology, read from the broker every few seconds.
    pub queue_messages: Family<QueueLabels, Gauge>,
    /// Deliveries parked instead of attempted, by reason (`circuit_open`, `stalled`).
    pub parks: Family<ReasonLabels, Counter>,
    /// Webhooks whose circuit is open or half-open.
    pub circuits_open: Gauge,
    /// Endpoints by their current concurrency limit, in power-of-two buckets.
    pub endpoint_limits: Family<LimitLabels, Gauge>,
    /// Webhooks disabled by the worker, by reason (`endpoint_gone`, `failing`).
    pub webhooks_disabled: Family<ReasonLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("webhook_worker");
        let metrics = Metrics {
            registry: Arc::new(Registry::default()),
            events_received: Counter::default(),
            poison_events: Family::default(),
            deliveries: Family::default(),
            delivery_seconds: Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            token_requests: Family::default(),
            in_flight: Gauge::default(),
            registry_webhooks: Gauge::default(),
            registry_rows_skipped: Gauge::default(),
            registry_loaded_at: Gauge::default(),
            amqp_connected: Gauge::default(),
            delivery_log_rows: Counter::default(),
            delivery_log_dropped: Counter::default(),
            dead_letters_recorded: Counter::default(),
            dead_letters_unrecorded: Counter::default(),
            registry_rows_unreadable: Gauge::default(),
            amqp_blocked: Gauge::default(),
            settles: Family::default(),
            owed_dead_letters: Family::default(),
            handler_panics: Counter::default(),
            fan_out_batches: Counter::default(),
            token_cache: Family::default(),
            token_request_seconds: Histogram::new([
                0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            queue_messages: Family::default(),
            parks: Family::default(),
            circuits_open: Gauge::default(),
            endpoint_limits: Family::default(),
            webhooks_disabled: Family::default(),
        };
        metrics.register_delivery_metrics(&mut registry);
        metrics.register_plumbing_metrics(&mut registry);
        Metrics {
            registry: Arc::new(registry),
            ..metrics
        }
    }

    /// Registers what tells how deliveries go: events, attempts, endpoints' health, tokens.
    fn register_delivery_metrics(&self, registry: &mut Registry) {
        registry.register(
            "events_received",
            "Events taken from the queue",
            self.events_received.clone(),
        );
        registry.register(
            "poison_events",
            "Poison messages (malformed events, invalid retry jobs) dead-lettered, by reason",
            self.poison_events.clone(),
        );
        registry.register(
            "deliveries",
            "Delivery attempts, by outcome",
            self.deliveries.clone(),
        );
        registry.register(
            "delivery_duration_seconds",
            "HTTP delivery attempt duration",
            self.delivery_seconds.clone(),
        );
        registry.register(
            "deliveries_in_flight",
            "HTTP deliveries in flight",
            self.in_flight.clone(),
        );
        registry.register(
            "parks",
            "Deliveries parked instead of attempted, by reason",
            self.parks.clone(),
        );
        registry.register(
            "circuits_open",
            "Webhooks whose circuit is open or half-open",
            self.circuits_open.clone(),
        );
        registry.register(
            "endpoint_concurrency_limits",
            "Endpoints by current concurrency limit (lower bound of a power-of-two bucket)",
            self.endpoint_limits.clone(),
        );
        registry.register(
            "webhooks_disabled",
            "Webhooks disabled by the worker, by reason",
            self.webhooks_disabled.clone(),
        );
        registry.register(
            "token_requests",
            "OAuth token requests, by outcome",
            self.token_requests.clone(),
        );
        registry.register(
            "token_cache",
            "Access-token cache lookups, by outcome (hit, miss)",
            self.token_cache.clone(),
        );
        registry.register(
            "token_request_duration_seconds",
            "Duration of requests to token endpoints",
            self.token_request_seconds.clone(),
        );
    }

    /// Registers what tells how the plumbing holds: the broker, settling, the registry, and
    /// the records kept in the database.
    fn register_plumbing_metrics(&self, registry: &mut Registry) {
        registry.register(
            "queue_messages",
            "Messages ready in each queue of the topology, read from the broker every 5 s",
            self.queue_messages.clone(),
        );
        registry.register(
            "delivery_log_rows",
            "Delivery attempts written to the delivery log",
            self.delivery_log_rows.clone(),
        );
        registry.register(
            "delivery_log_dropped",
            "Delivery attempts the log could not record (writer behind, database slow or down); \
             the deliveries themselves went on",
            self.delivery_log_dropped.clone(),
        );
        registry.register(
            "dead_letters_recorded",
            "Dead letters recorded by webhook in the database (listed and redriven by the API)",
            self.dead_letters_recorded.clone(),
        );
        registry.register(
            "dead_letters_unrecorded",
            "Dead letters that could not be recorded by webhook after retries; they stay in the \
         dead-letter queue for the operator to replay",
            self.dead_letters_unrecorded.clone(),
        );
        registry.register(
            "registry_rows_unreadable",
            "Webhook rows whose secret or settings cannot be decoded; matching events are \
         dead-lettered as webhook_unreadable",
            self.registry_rows_unreadable.clone(),
        );
        registry.register(
            "registry_webhooks",
            "Webhooks in the in-memory registry",
            self.registry_webhooks.clone(),
        );
        registry.register(
            "registry_rows_skipped",
            "Webhook rows the last registry load could not decode and skipped",
            self.registry_rows_skipped.clone(),
        );
        registry.register(
            "registry_loaded_at_seconds",
            "Unix time of the registry's last successful check for webhook changes",
            self.registry_loaded_at.clone(),
        );
        registry.register(
            "amqp_connected",
            "1 while connected to RabbitMQ",
            self.amqp_connected.clone(),
        );
        registry.register(
            "amqp_blocked",
            "1 while RabbitMQ blocks the publishing connection (resource alarm)",
            self.amqp_blocked.clone(),
        );
        registry.register(
            "settles",
            "Messages not acked at once: requeued (nothing attempted yet), republished (failed \
         outcomes published again), rejected (dead-lettered after amqp.settle_timeout)",
            self.settles.clone(),
        );
        registry.register(
            "fan_out_batches",
            "Fan-out batch jobs published: each carries an event once for up to \
         delivery.fan_out_batch webhooks",
            self.fan_out_batches.clone(),
        );
        registry.register(
            "owed_dead_letters",
            "Webhooks named by dead letters of rejected messages, by reason",
            self.owed_dead_letters.clone(),
        );
        registry.register(
            "handler_panics",
            "Panics caught in a message's handling (dead-lettered, reason panic)",
            self.handler_panics.clone(),
        );
    }

    pub fn delivery(&self, outcome: DeliveryOutcome) {
        let outcome = outcome.as_str();
        self.deliveries
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn settle(&self, outcome: SettleOutcome) {
        let outcome = outcome.as_str();
        self.settles.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// One more poison message dead-lettered.
    pub fn poison(&self, reason: DeadReason) {
        let reason = reason.as_str();
        self.poison_events
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// `webhooks` more webhooks named by dead letters of rejected messages.
    pub fn owed_dead_letters(&self, reason: DeadReason, webhooks: usize) {
        let reason = reason.as_str();
        self.owed_dead_letters
            .get_or_create(&ReasonLabels { reason })
            .inc_by(webhooks as u64);
    }

    /// Moves one endpoint between limit buckets (`None`: it appears or goes away).
    pub fn endpoint_limit(&self, before: Option<u32>, after: Option<u32>) {
        let (before, after) = (before.map(limit_bucket), after.map(limit_bucket));
        if before == after {
            return;
        }
        if let Some(limit) = before {
            self.endpoint_limits
                .get_or_create(&LimitLabels { limit })
                .dec();
        }
        if let Some(limit) = after {
            self.endpoint_limits
                .get_or_create(&LimitLabels { limit })
                .inc();
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_in_prometheus_text() {
        let metrics = Metrics::new();
        metrics.delivery(DeliveryOutcome::Delivered);
        metrics.delivery(DeliveryOutcome::Delivered);
        let text = metrics.render();
        assert!(
            text.contains("webhook_worker_deliveries_total{outcome=\"delivered\"} 2"),
            "{text}"
        );
    }

    #[test]
    fn endpoint_limits_are_counted_in_a_fixed_set_of_buckets() {
        let metrics = Metrics::new();
        metrics.endpoint_limit(None, Some(16));
        metrics.endpoint_limit(None, Some(20));
        metrics.endpoint_limit(Some(20), Some(3));
        metrics.endpoint_limit(None, Some(100_000));
        let text = metrics.render();
        for line in [
            "endpoint_concurrency_limits{limit=\"16\"} 1",
            "endpoint_concurrency_limits{limit=\"2\"} 1",
            "endpoint_concurrency_limits{limit=\"1024\"} 1",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
