//! Two tenants side by side (`--two-accounts`, issue 16): how long a healthy account's events
//! take while another account's endpoints misbehave. One worker, two accounts:
//!
//! - `noisy` has a backlog of `--slow-events` events (published first, `account_id` = `noisy`)
//!   to one webhook whose endpoint (the sink's `/slow`) answers `--slow-status` (503) after
//!   `--slow-latency-ms` (300); `--slow-status 200 --slow-latency-ms 5000` is the endpoint that
//!   answers, slowly. With `--noisy-hanging-webhooks N` it has instead N webhooks whose
//!   endpoints (the sink's `/hang`) accept requests and never answer, each subscribed to a type
//!   of its own (`noisy.<i>`), with `--hanging-events-each` (20) events each, interleaved;
//! - `--head-start-ms` (1,000) after noisy's backlog is published, `quiet` publishes `--events`
//!   events at `--rate` (100/s) to one healthy webhook (the sink's `/hook`, answered at once).
//!
//! The bench waits for quiet's events until all arrived or `--deadline-s` (120) after quiet's
//! first publish, then reports quiet's publish-to-receipt p50 / p99 / max over all its events
//! (an event that did not arrive counts as later than the deadline, so a percentile that falls
//! on one is reported as not reached), how many arrived, what noisy's endpoints saw (requests,
//! answers, most in flight at once) and the worker's delivery outcomes and parks. The worker
//! runs with its default delivery settings (`--retry-delay-ms` and `--prefetch` apply if given).

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use webhook_worker::{app::Application, cli::Role, queue};

use crate::{
    publish::{self, Template},
    report::{self, Report},
    sink::{self, SinkProcess},
    Args,
};

/// The account whose endpoints misbehave.
pub const NOISY: &str = "noisy";
/// The account with a healthy endpoint, whose latency is the measure.
pub const QUIET: &str = "quiet";

#[derive(clap::Args, Clone)]
pub struct Flags {
    /// Two accounts side by side: a noisy one with a backlog to a misbehaving endpoint, and a
    /// quiet one publishing --events at --rate to a healthy one; reports the quiet one's latency.
    #[arg(long)]
    pub two_accounts: bool,
    /// The status noisy's endpoint answers with (also the sink's `/slow`).
    #[arg(long, default_value_t = 503)]
    pub slow_status: u16,
    /// How long noisy's endpoint takes before it answers.
    #[arg(long, default_value_t = 300)]
    pub slow_latency_ms: u64,
    /// Noisy's backlog, published before quiet's events.
    #[arg(long, default_value_t = 3_000)]
    pub slow_events: usize,
    /// Instead of the slow endpoint, give noisy this many webhooks that never answer.
    #[arg(long, default_value_t = 0)]
    pub noisy_hanging_webhooks: usize,
    /// Events for each of noisy's hanging webhooks.
    #[arg(long, default_value_t = 20)]
    pub hanging_events_each: usize,
    /// How long after noisy's backlog is published quiet starts publishing.
    #[arg(long, default_value_t = 1_000)]
    pub head_start_ms: u64,
    /// Stop waiting for quiet's events this long after its first publish.
    #[arg(long, default_value_t = 120)]
    pub deadline_s: u64,
}

/// Quiet's rate when `--rate` is not given.
const DEFAULT_RATE: f64 = 100.0;

/// Noisy's events: their types (one per hanging webhook, or the fixture's own) and bodies.
struct Noisy {
    types: Vec<String>,
    templates: Vec<Template>,
    events: usize,
}

impl Noisy {
    fn new(flags: &Flags) -> anyhow::Result<Self> {
        let hanging = flags.noisy_hanging_webhooks;
        let (types, events) = if hanging > 0 {
            let types = (0..hanging).map(|i| format!("noisy.{i}")).collect();
            (types, hanging * flags.hanging_events_each)
        } else {
            (vec!["business.updated".to_string()], flags.slow_events)
        };
        let templates = types
            .iter()
            .map(|t| Template::new(t))
            .collect::<anyhow::Result<_>>()?;
        Ok(Noisy {
            types,
            templates,
            events,
        })
    }

    /// Noisy's webhooks: one per event type, each hanging (`--noisy-hanging-webhooks`), or one
    /// slow webhook for every type.
    async fn register(
        &self,
        app: &Application,
        sink: std::net::SocketAddr,
        flags: &Flags,
    ) -> anyhow::Result<()> {
        if flags.noisy_hanging_webhooks > 0 {
            for event_type in &self.types {
                crate::register(app, NOISY, sink, "hang", event_type).await?;
            }
            Ok(())
        } else {
            crate::register(app, NOISY, sink, "slow", "*").await
        }
    }

    /// Noisy's `i`-th event, interleaved over its webhooks' types.
    fn route(&self, i: usize) -> &str {
        &self.types[i % self.types.len()]
    }
}

pub async fn run(args: &Args) -> anyhow::Result<()> {
    let flags = &args.two;
    let quiet_events = args.events;
    let rate = args.rate.unwrap_or(DEFAULT_RATE);
    let noisy = Noisy::new(flags)?;
    let prefix = format!("bench-{}", uuid::Uuid::new_v4().simple());
    // The sink records receipts of quiet's sequence numbers only (0..events); noisy's come after.
    let mut sink = SinkProcess::spawn(sink::Settings::new(args, quiet_events)).await?;
    let dir = std::env::temp_dir().join(&prefix);
    let database =
        crate::database::BenchDatabase::create(args.postgres_url.as_deref(), &prefix, &dir).await?;
    let config = crate::config(args, &prefix, &database.url)?;
    webhook_worker::telemetry::init_logging(&config.log);
    let connection =
        webhook_worker::queue::connect(&webhook_worker::config::AmqpUrls::parse(&args.amqp_url))
            .await?;
    let channel = connection.create_channel().await?;
    let topology = queue::Topology::from_config(&config);
    let exchange = topology.names.events_exchange.clone();
    queue::declare(&channel, &topology).await?;

    let app = Application::start(config.clone(), Role::Worker).await?;
    noisy.register(&app, sink.addr, flags).await?;
    crate::register(&app, QUIET, sink.addr, "hook", "*").await?;

    // Published while the worker runs, as a tenant's backlog would build up: the worker takes
    // noisy's events as they come and its window fills with them.
    let base = quiet_events;
    publish::backlog(
        &channel,
        NOISY,
        &exchange,
        |seq| noisy.route(seq - base),
        base,
        noisy.events,
        |seq| noisy.templates[(seq - base) % noisy.templates.len()].body(seq),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(flags.head_start_ms)).await;
    let (slow_before, hanging_before) = sink.noisy().await?;

    let bodies = publish::Bodies::new(0)?;
    let deadline = Instant::now() + Duration::from_secs(flags.deadline_s);
    let waiting = wait(&sink, quiet_events, deadline);
    let publishing = publish::paced(
        &channel,
        QUIET,
        publish::Destination::Exchange(&exchange),
        &bodies,
        0,
        quiet_events,
        Some(rate),
    );
    let (waited, sent) = tokio::join!(waiting, publishing);
    let (_, sent) = (waited?, sent?);
    let receipts = sink.receipts().await?;
    let (slow, hanging) = sink.noisy().await?;
    let (incoming_ready, _) = queue::counts(&channel, &topology.names.incoming).await?;
    let metrics = app.metrics().render();

    let hanging_mode = flags.noisy_hanging_webhooks > 0;
    let pick = |slow, hanging| if hanging_mode { hanging } else { slow };
    let observed = Observed {
        sent,
        receipts,
        before: pick(slow_before, hanging_before),
        after: pick(slow, hanging),
        incoming_ready,
        metrics,
    };
    let report = two_accounts_report(args, rate, noisy.events, &observed);

    // Noisy's requests may hang: with the sink gone they end at once, and the worker stops.
    sink.kill_and_wait().await;
    crate::stop(app).await;
    report.print(args.json);
    crate::delete_queues(&channel, &topology, &prefix, &dir).await?;
    database.drop().await;
    crate::close(&connection).await;
    Ok(())
}

/// What a two-account run saw, for its report.
struct Observed {
    sent: Vec<u64>,
    receipts: Vec<u64>,
    /// Noisy's endpoint before quiet's events were published, and at the end.
    before: sink::NoisyStats,
    after: sink::NoisyStats,
    incoming_ready: u32,
    metrics: String,
}

fn two_accounts_report(args: &Args, rate: f64, noisy_events: usize, observed: &Observed) -> Report {
    let flags = &args.two;
    let quiet_events = args.events;
    let arrived = observed.receipts.iter().filter(|r| **r != 0).count();
    let mut report = Report::new(args);
    report.set("mode", json!("two_accounts"));
    report.set("quiet_events", json!(quiet_events));
    report.set("quiet_rate_per_s", json!(rate));
    report.set("noisy_events", json!(noisy_events));
    if flags.noisy_hanging_webhooks > 0 {
        report.set(
            "noisy_hanging_webhooks",
            json!(flags.noisy_hanging_webhooks),
        );
    } else {
        report.set("noisy_status", json!(flags.slow_status));
        report.set("noisy_latency_ms", json!(flags.slow_latency_ms));
    }
    report.set("deadline_s", json!(flags.deadline_s));
    report.set("quiet_arrived", json!(arrived));
    report.set("quiet_missing", json!(quiet_events - arrived));
    let deadline_ms = flags.deadline_s as f64 * 1e3;
    let (p50, p99, max) = percentiles(&observed.sent, &observed.receipts);
    report.set("quiet_latency_p50_ms", within(p50, deadline_ms));
    report.set("quiet_latency_p99_ms", within(p99, deadline_ms));
    report.set("quiet_latency_max_ms", within(max, deadline_ms));
    let (endpoint, before) = (&observed.after, &observed.before);
    report.set("noisy_requests_before_quiet", json!(before.received));
    report.set("noisy_requests", json!(endpoint.received));
    report.set("noisy_answered", json!(endpoint.answered));
    report.set("noisy_in_flight_at_end", json!(endpoint.in_flight));
    report.set("noisy_max_in_flight", json!(endpoint.max_in_flight));
    report.set("incoming_ready_at_end", json!(observed.incoming_ready));
    for (name, value) in report::samples(&observed.metrics, "webhook_worker_deliveries_total")
        .into_iter()
        .chain(report::samples(
            &observed.metrics,
            "webhook_worker_parks_total",
        ))
    {
        report.set(&name, json!(value));
    }

    report
}

/// Polls the sink until `events` of quiet's arrived or `deadline` passed.
async fn wait(sink: &SinkProcess, events: usize, deadline: Instant) -> anyhow::Result<()> {
    loop {
        let count = sink.stats().await?.count;
        if count >= events || Instant::now() >= deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// p50, p99 and max publish-to-receipt latency in ms over every event published at `sent`
/// (`receipts` indexed alike), an event without a receipt counting as later than all others
/// (`None` where a percentile falls on one).
fn percentiles(sent: &[u64], receipts: &[u64]) -> (Option<f64>, Option<f64>, Option<f64>) {
    let mut ms: Vec<Option<f64>> = sent
        .iter()
        .zip(receipts.iter().chain(std::iter::repeat(&0)))
        .map(|(at, got)| (*got != 0).then(|| got.saturating_sub(*at) as f64 / 1e6))
        .collect();
    // `None` sorts before `Some`: put the missing last.
    ms.sort_unstable_by(|a, b| match (a, b) {
        (Some(a), Some(b)) => a.total_cmp(b),
        (a, b) => b.is_some().cmp(&a.is_some()),
    });
    if ms.is_empty() {
        return (None, None, None);
    }
    let at = |p: f64| ms[((ms.len() as f64 * p) as usize).min(ms.len() - 1)];
    (at(0.5), at(0.99), ms[ms.len() - 1])
}

/// A latency, or a note that it was not reached within the deadline.
fn within(ms: Option<f64>, deadline_ms: f64) -> Value {
    match ms {
        Some(ms) => json!((ms * 10.0).round() / 10.0),
        None => json!(format!("> {deadline_ms:.0} (not arrived)")),
    }
}

#[cfg(test)]
mod tests {
    use super::percentiles;

    #[test]
    fn a_missing_event_is_later_than_every_arrived_one() {
        let sent = vec![0; 100];
        let mut receipts: Vec<u64> = (1..=100).map(|ms| ms * 1_000_000).collect();
        assert_eq!(
            percentiles(&sent, &receipts),
            (Some(51.0), Some(100.0), Some(100.0))
        );
        receipts[0] = 0;
        receipts[1] = 0;
        let (p50, p99, max) = percentiles(&sent, &receipts);
        assert_eq!((p50, p99, max), (Some(53.0), None, None));
    }
}
