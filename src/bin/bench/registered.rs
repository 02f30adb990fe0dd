//! `--registered-webhooks N` (`--postgres-url URL` for PostgreSQL instead of SQLite): the
//! registry's cost with many webhooks. N webhooks are bulk-inserted (distinct accounts,
//! encrypted secrets, one subscribed to the bench's events), then a `webhook-worker` replica
//! (role worker) is started and measured:
//!
//! 1. start-up: from spawning it to the sink's receipt of an event published before it started;
//! 2. idle CPU: its CPU seconds per minute over `--idle-seconds` while nothing changes;
//! 3. deliveries/s of `--events` events published as fast as confirms allow (the sink's clock);
//! 4. its peak RSS (`VmHWM`) after start-up and at the end;
//! 5. cross-replica latency: a second replica (role api) on the same database creates a webhook
//!    subscribed to a new event type, `--probes` times; events of that type are published every
//!    5 ms, and the latency is from the API's answer to the sink's first receipt of one (so it
//!    includes up to 5 ms of publishing period and the delivery itself).

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use webhook_worker::{config::Config, queue};

use crate::{
    database::BenchDatabase,
    publish,
    replicas::{self, Replica, Shared},
    run, sink, Args,
};

/// How often a probe event is published while waiting for the other replica to use a change.
const PROBE_EVERY: Duration = Duration::from_millis(5);

pub async fn run(args: &Args, n: usize) -> anyhow::Result<()> {
    let prefix = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let dir = std::env::temp_dir().join(&prefix);
    std::fs::create_dir_all(&dir)?;
    let db = BenchDatabase::create(args.postgres_url.as_deref(), &prefix, &dir).await?;
    let result = measure(args, n, &prefix, &dir, &db).await;
    db.drop().await;
    let _ = std::fs::remove_dir_all(&dir);
    let report = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for (key, value) in report.as_object().into_iter().flatten() {
            println!("{key:<34} {value}");
        }
    }
    Ok(())
}

async fn measure(
    args: &Args,
    n: usize,
    prefix: &str,
    dir: &std::path::Path,
    db: &BenchDatabase,
) -> anyhow::Result<serde_json::Value> {
    let shared = Shared::new(args, prefix, &db.url, dir);
    // Sequence numbers: 0 the start-up event, 1..=events the throughput run, then the probes.
    let recorded = args.events + args.probes + 1;
    let mut sink = sink::SinkProcess::spawn(sink::Settings::new(args, recorded)).await?;
    let registered = replicas::register(&db.url, shared.key_bytes()?, n, sink.addr).await?;
    let config = Config::from_toml(&shared.toml("127.0.0.1:0"))?;
    let connection =
        queue::connect(&webhook_worker::config::AmqpUrls::parse(&args.amqp_url)).await?;
    let channel = connection.create_channel().await?;
    let topology = queue::Topology::from_config(&config);
    queue::declare(&channel, &topology).await?;
    let exchange = topology.names.events_exchange.clone();
    let bodies = publish::Bodies::new(0)?;
    let normal = |_| "business.updated";
    publish::backlog(&channel, "default", &exchange, normal, 0, 1, |s| {
        bodies.body(s)
    })
    .await?;
    let spawned_ns = sink::wall_ns();
    let worker = Replica::spawn(&shared, "worker", "worker", "127.0.0.1:0")?;
    wait_for_count(&sink, 1, Duration::from_secs(600)).await?;
    let first = sink.receipts().await?.first().copied().unwrap_or(0);
    let startup_s = first.saturating_sub(spawned_ns) as f64 / 1e9;
    let rss_after_start = worker.peak_rss_mib();
    let idle = idle_cpu_per_minute(&worker, args.idle_seconds).await;
    let per_second = throughput(args, &sink, &channel, &exchange, &bodies).await?;
    let rss_peak = worker.peak_rss_mib();
    let latencies = cross_replica(args, &shared, &sink, &channel, &exchange).await;
    worker.stop().await;
    sink.kill_and_wait().await;
    crate::delete_queues(&channel, &topology, prefix, dir).await?;
    crate::close(&connection).await;
    let latencies = latencies?;
    Ok(json!({
        "database": if args.postgres_url.is_some() { "postgres" } else { "sqlite" },
        "registered_webhooks": n,
        "register_s": round(registered.as_secs_f64(), 1),
        "startup_to_first_delivery_s": round(startup_s, 2),
        "peak_rss_after_startup_mib": round(rss_after_start, 1),
        "peak_rss_mib": round(rss_peak, 1),
        "idle_cpu_s_per_min": round(idle, 3),
        "deliveries_per_s": round(per_second, 0),
        "events": args.events,
        "cross_replica_ms": latencies.iter().map(|l| round(*l, 1)).collect::<Vec<_>>(),
        "cross_replica_median_ms": round(median(&latencies), 1),
    }))
}

fn round(x: f64, places: i32) -> serde_json::Value {
    let scale = 10f64.powi(places);
    json!((x * scale).round() / scale)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

async fn wait_for_count(
    sink: &sink::SinkProcess,
    count: usize,
    limit: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while sink.stats().await?.count < count {
        anyhow::ensure!(Instant::now() < deadline, "no delivery within {limit:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// The replica's CPU seconds per minute while nothing changes (after a few seconds to settle).
async fn idle_cpu_per_minute(worker: &Replica, seconds: u64) -> f64 {
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = worker.cpu_seconds();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    (worker.cpu_seconds() - before) * 60.0 / seconds.max(1) as f64
}

/// Deliveries/s of `--events` events (1..=events) published as fast as confirms allow, from the
/// sink's first receipt of one to its last.
async fn throughput(
    args: &Args,
    sink: &sink::SinkProcess,
    channel: &lapin::Channel,
    exchange: &str,
    bodies: &publish::Bodies,
) -> anyhow::Result<f64> {
    let (drained, sent) = tokio::join!(
        run::drain(sink, 1 + args.events, None),
        publish::paced(
            channel,
            "default",
            publish::Destination::Exchange(exchange),
            bodies,
            1,
            args.events,
            None,
        )
    );
    drained?;
    sent?;
    let receipts = sink.receipts().await?;
    let timed: Vec<u64> = receipts
        .get(1..=args.events)
        .context("receipts")?
        .iter()
        .copied()
        .filter(|ns| *ns != 0)
        .collect();
    let (first, last) = (
        timed.iter().min().copied().unwrap_or(0),
        timed.iter().max().copied().unwrap_or(0),
    );
    Ok(timed.len().saturating_sub(1) as f64 / (last.saturating_sub(first).max(1) as f64 / 1e9))
}

/// Milliseconds from replica A's API answering a create to replica B (the measured worker)
/// delivering to the new webhook, `--probes` times.
async fn cross_replica(
    args: &Args,
    shared: &Shared,
    sink: &sink::SinkProcess,
    channel: &lapin::Channel,
    exchange: &str,
) -> anyhow::Result<Vec<f64>> {
    let port = replicas::free_port()?;
    let api = Replica::spawn(shared, "api", "api", &format!("127.0.0.1:{port}"))?;
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    while !client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        anyhow::ensure!(Instant::now() < deadline, "replica A never got ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut latencies = Vec::new();
    for k in 0..args.probes {
        let seq = args.events + 1 + k;
        let event_type = format!("probe.{k}");
        let template = publish::Template::new(&event_type)?;
        let before = sink.stats().await?.count;
        let created = client
            .post(format!("{base}/v1/webhooks"))
            .bearer_auth(replicas::TOKEN)
            .json(&json!({"url": format!("http://{}/hook", sink.addr),
                "enabled_events": [event_type], "secret": sink::SECRET}))
            .send()
            .await?;
        let answered = sink::wall_ns();
        anyhow::ensure!(created.status() == 201, "create: {}", created.status());
        let limit = Instant::now() + Duration::from_secs(60);
        let mut seen = before;
        let got = loop {
            anyhow::ensure!(Instant::now() < limit, "probe {k} never delivered");
            let route = |_| event_type.as_str();
            publish::backlog(channel, "default", exchange, route, seq, 1, |s| {
                template.body(s)
            })
            .await?;
            tokio::time::sleep(PROBE_EVERY).await;
            // Deliveries of earlier probes' spare events count too: only this probe's ends it.
            let count = sink.stats().await?.count;
            if count != seen {
                seen = count;
                let got = sink.receipts().await?.get(seq).copied().unwrap_or(0);
                if got != 0 {
                    break got;
                }
            }
        };
        latencies.push(got.saturating_sub(answered) as f64 / 1e6);
    }
    api.stop().await;
    Ok(latencies)
}
