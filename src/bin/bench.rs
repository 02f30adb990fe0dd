//! Benchmark: publishes N events to the local RabbitMQ, delivers them with signing on to a
//! receiver on 127.0.0.1 that verifies every signature, and prints deliveries/s and the
//! publish-to-receipt latency (p50/p99). Not a test: it asserts nothing about time.
//!
//! `cargo run --release --bin bench -- --events 50000`
//!
//! Scenarios of endpoint health:
//! - a burst: `--events 2000` (how long after the last publish the last delivery arrived, and
//!   how many deliveries were parked); `--latency-ms 50 --capacity 64` makes the receiver take
//!   50 ms per request and refuse (503) more than 64 at once;
//! - a hanging endpoint beside the healthy ones: `--hanging` adds a webhook whose endpoint
//!   accepts and never answers, subscribed to every `--hanging-every`-th event (1: all).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context;
use axum::{body::Bytes, extract::State, http::HeaderMap, routing::post, Router};
use clap::Parser;
use futures_util::future::join_all;
use lapin::{
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::{AMQPValue, FieldTable},
    BasicProperties, Connection, ConnectionProperties,
};
use webhook_worker::{
    app::Application,
    cli::Role,
    config::Config,
    queue,
    safety::AddressPolicy,
    signing::sign,
    webhook::{Draft, UrlRules, WebhookPatch},
};

// The delivery path allocates per event (JSON trees, bodies, headers) across threads; mimalloc
// measured faster than glibc's malloc in the bench binary (see README, Performance).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 50_000)]
    events: usize,
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp_url: String,
    /// Webhooks subscribed to every event (each event is delivered to each).
    #[arg(long, default_value_t = 1)]
    webhooks: usize,
    #[arg(long, default_value_t = 256)]
    prefetch: u16,
    /// Publish every event before the worker starts, and time how fast it drains the backlog
    /// (latency then measures time in the queue, not the worker).
    #[arg(long)]
    backlog: bool,
    /// The receiver takes this long per request.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// The receiver refuses (503) requests beyond this many in flight.
    #[arg(long)]
    capacity: Option<usize>,
    /// Add a webhook whose endpoint accepts requests and never answers.
    #[arg(long)]
    hanging: bool,
    /// Retry delays of this many ms (ten retries) instead of the default schedule, so that
    /// refused deliveries (--capacity) come back soon.
    #[arg(long)]
    retry_delay_ms: Option<u64>,
    /// The hanging webhook gets every N-th event (1: every event).
    #[arg(long, default_value_t = 1)]
    hanging_every: usize,
}

const SECRET: &str = "whsec_benchmark";
const FIXTURE: &str = include_str!("../../tests/fixtures/business.updated.json");

#[derive(Default)]
struct Receipts {
    at: HashMap<String, Instant>,
    bad_signatures: usize,
    count: usize,
    refused: usize,
}

#[derive(Clone)]
struct Receiver {
    receipts: Arc<Mutex<Receipts>>,
    latency: Duration,
    capacity: usize,
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
}

/// Counts a request in flight until it is answered or dropped.
struct Held(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

async fn receive(
    State(receiver): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::http::StatusCode {
    let held = receiver
        .in_flight
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let _held = Held(receiver.in_flight.clone());
    if held >= receiver.capacity {
        let mut receipts = receiver.receipts.lock().unwrap_or_else(|p| p.into_inner());
        receipts.refused += 1;
        return axum::http::StatusCode::SERVICE_UNAVAILABLE;
    }
    if !receiver.latency.is_zero() {
        tokio::time::sleep(receiver.latency).await;
    }
    let receipts = &receiver.receipts;
    let now = Instant::now();
    let valid = headers
        .get("x-middesk-signature-256")
        .is_some_and(|s| s.as_bytes() == sign(SECRET.as_bytes(), &body).as_bytes());
    let id = headers
        .get("x-webhook-event-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut receipts = receipts.lock().unwrap_or_else(|p| p.into_inner());
    receipts.count += 1;
    if !valid {
        receipts.bad_signatures += 1;
    }
    receipts.at.entry(id).or_insert(now);
    axum::http::StatusCode::OK
}

/// The hanging endpoint: accepts the request and never answers.
async fn hang() {
    std::future::pending::<()>().await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let receipts = Arc::new(Mutex::new(Receipts::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let receiver_addr = listener.local_addr()?;
    let receiver = Receiver {
        receipts: receipts.clone(),
        latency: Duration::from_millis(args.latency_ms),
        capacity: args.capacity.unwrap_or(usize::MAX),
        in_flight: Arc::default(),
    };
    let app = Router::new()
        .route("/hook", post(receive))
        .route("/hang", post(hang))
        .with_state(receiver);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let prefix = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let dir = std::env::temp_dir().join(&prefix);
    let config = Config::from_toml(&format!(
        r#"
        [amqp]
        url = "{url}"
        prefix = "{prefix}"
        prefetch = {prefetch}
        [api]
        listen = "127.0.0.1:0"
        [database]
        url = "sqlite://{db}"
        encryption_key = "{key}"
        [delivery]
        allow_http = true
        allow_networks = ["127.0.0.0/8"]
        {retry}
        [log]
        level = "warn"
        "#,
        retry = args.retry_delay_ms.map_or(String::new(), |ms| format!(
            "retry_schedule = [{}]",
            vec![format!("\"{ms}ms\""); 10].join(", ")
        )),
        url = args.amqp_url,
        prefetch = args.prefetch,
        db = dir.join("bench.db").display(),
        key = base64_key(),
    ))?;
    webhook_worker::telemetry::init_logging(&config.log);
    let connection = Connection::connect(&args.amqp_url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let topology = queue::Topology::from_config(&config);
    let names = topology.names.clone();
    queue::declare(&channel, &topology).await?;
    let start_worker = || async {
        let app = Application::start(config.clone(), Role::Worker).await?;
        let healthy = (0..args.webhooks).map(|_| ("hook", "*"));
        let hanging_events = if args.hanging_every <= 1 { "*" } else { "slow" };
        let hanging = args.hanging.then_some(("hang", hanging_events));
        for (path, events) in healthy.chain(hanging) {
            let patch: WebhookPatch = serde_json::from_value(serde_json::json!({
                "url": format!("http://{receiver_addr}/{path}"), "enabled_events": [events], "secret": SECRET,
            }))?;
            let now = chrono::Utc::now();
            let rules = UrlRules {
                allow_http: true,
                addresses: AddressPolicy::new(vec!["127.0.0.0/8".parse()?]),
            };
            let webhook = Draft::default()
                .apply(patch)
                .validate(&rules, uuid::Uuid::new_v4(), "default", now, now)
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            app.registry().store().insert(&webhook).await?;
            app.registry().upsert(webhook);
        }
        anyhow::Ok(app)
    };
    let mut app = None;
    if !args.backlog {
        app = Some(start_worker().await?);
    }
    let mut template: serde_json::Value = serde_json::from_str(FIXTURE)?;
    let mut published = HashMap::with_capacity(args.events);
    let started = Instant::now();
    for batch in (0..args.events).collect::<Vec<_>>().chunks(500) {
        let mut confirms = Vec::with_capacity(batch.len());
        for i in batch {
            let slow = args.hanging && args.hanging_every > 1 && i % args.hanging_every == 0;
            let routing_key = if slow { "slow" } else { "business.updated" };
            let id = uuid::Uuid::new_v4().to_string();
            template["id"] = id.clone().into();
            // Webhooks match on the event's own type.
            template["type"] = routing_key.into();
            let body = serde_json::to_vec(&template)?;
            let mut headers = FieldTable::default();
            headers.insert("account_id".into(), AMQPValue::LongString("default".into()));
            published.insert(id, Instant::now());
            confirms.push(
                channel
                    .basic_publish(
                        &names.events_exchange,
                        routing_key,
                        BasicPublishOptions::default(),
                        &body,
                        BasicProperties::default()
                            .with_delivery_mode(2)
                            .with_headers(headers),
                    )
                    .await?,
            );
        }
        for confirm in join_all(confirms).await {
            confirm.context("publisher confirm")?;
        }
    }
    let publish_done = started.elapsed();
    let drain_started = Instant::now();
    let app = match app {
        Some(app) => app,
        None => start_worker().await?,
    };
    let expected = args.events * args.webhooks;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let count = receipts.lock().unwrap_or_else(|p| p.into_inner()).count;
        if count >= expected {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {count} of {expected} deliveries arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let last_receipt = Instant::now();
    let total = if args.backlog {
        drain_started.elapsed()
    } else {
        started.elapsed()
    };
    let receipts = std::mem::take(&mut *receipts.lock().unwrap_or_else(|p| p.into_inner()));
    let mut latencies: Vec<Duration> = published
        .iter()
        .filter_map(|(id, sent)| {
            receipts
                .at
                .get(id)
                .map(|got| got.saturating_duration_since(*sent))
        })
        .collect();
    latencies.sort_unstable();
    let percentile =
        |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "events published:     {} in {:.2?} ({:.0}/s)",
        args.events,
        publish_done,
        args.events as f64 / publish_done.as_secs_f64()
    );
    println!(
        "deliveries:           {} ({} webhook(s)), bad signatures: {}",
        receipts.count, args.webhooks, receipts.bad_signatures
    );
    println!(
        "throughput:           {:.0} deliveries/s ({} to last receipt: {:.2?})",
        receipts.count as f64 / total.as_secs_f64(),
        if args.backlog {
            "worker start"
        } else {
            "first publish"
        },
        total
    );
    println!(
        "latency publish->receipt: p50 {:.1?}  p99 {:.1?}  max {:.1?}",
        percentile(0.50),
        percentile(0.99),
        latencies.last().copied().unwrap_or_default()
    );
    let metrics = app.metrics().render();
    let metric = |name: &str| {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    println!(
        "after the last publish: {:.2?} to the last receipt; parked: {:.0}; refused (503): {}",
        last_receipt.saturating_duration_since(started + publish_done),
        metric("webhook_worker_deliveries_total{outcome=\"parked\"}"),
        receipts.refused
    );
    // A hanging endpoint holds its requests until the timeout: do not wait for them.
    if args.hanging {
        queue::delete(&channel, &topology).await?;
        let _ = std::fs::remove_dir_all(&dir);
        std::process::exit(0);
    }
    app.stop().await;
    queue::delete(&channel, &topology).await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn base64_key() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
}
