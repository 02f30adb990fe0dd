//! Benchmark: publishes N events to the local RabbitMQ, delivers them with a whole worker
//! in-process (signing on, log level info, SQLite registry) to a sink in its own process that
//! verifies every signature, and reports deliveries/s against the broker's own ceiling measured
//! in the same run, CPU per delivery of the worker and of RabbitMQ, peak RSS and
//! publish-to-receipt latency, as a table or as JSON (`--json`). Not a test: it asserts nothing
//! about time. See docs/performance.md for the commands and figures.
//!
//! - `--backlog`: measure the ceiling (a bare consumer, see `ceiling`), then publish N events
//!   before the worker starts and time it draining them, from its first delivery;
//! - `--half-load`: the same, then publish N more at half the measured rate (or `--rate`) and
//!   report latency; `--rate R` alone: the worker runs while N events are published at R/s.
//!   Either way, after the worker stopped, a bare consumer (see `ceiling::latency`) gets N
//!   events at the same rate, and its latency is reported beside the worker's: what the broker,
//!   the publisher and the machine alone make of a message's latency at that rate;
//! - neither: publish as fast as confirms allow while the worker delivers. Events published
//!   while the worker runs come from a publisher in a process of its own (`publish::Child`), so
//!   this process's CPU is the worker's alone;
//! - `--delivery-log all|failures|off`: what the worker records (`delivery_log.record`; `all`,
//!   the default, writes a row per attempt to SQLite); the rows written and dropped are reported;
//! - endpoint health: `--latency-ms 50 --capacity 64` makes the sink take 50 ms per request and
//!   refuse (503) more than 64 at once; `--hanging` adds a webhook whose endpoint never
//!   answers, subscribed to every `--hanging-every`-th event (1: all); the healthy endpoint's
//!   p50/p99 publish-to-receipt latency beside it is reported when the events are published
//!   while the worker runs (not with `--backlog`);
//! - `--two-accounts`: two tenants side by side, a noisy one with a backlog to an endpoint that
//!   fails slowly (or to dozens of hanging ones) and a quiet one publishing at `--rate` to a
//!   healthy endpoint; reports the quiet account's latency (see `two_accounts` for its flags);
//! - signing: `--rotating-secret` gives the healthy webhooks a secret that replaced another, so
//!   each delivery is signed twice (the platform's header and `<header>-Previous`, the overlap
//!   lasting the whole run); `--standard-webhooks` makes them `standard_webhooks` (the platform's
//!   header and `webhook-signature`: two signatures; with `--rotating-secret`, four). The sink
//!   checks the platform's header and `webhook-signature`. Compare CPU per delivery with and
//!   without to price a second signature.
//! - fan-out: `--webhooks` above 32 makes each event fan out through the deliveries queue;
//!   `--fan-out-batch N` sets `delivery.fan_out_batch` (1: one job per webhook).
//! - `--delivery-threads N` sets `delivery.threads` (1: the default).
//!
//! - `--registered-webhooks N` (`--postgres-url URL` for PostgreSQL): the registry's cost with N
//!   webhooks registered: a replica's start-up to its first delivery, peak RSS, idle CPU,
//!   deliveries/s, and the latency of a change made through another replica's API (see
//!   `registered`).
//!
//! Every mode ends the same way, also when requests hang: the sink is killed (so the worker's
//! connections to it close and its requests end at once), the worker stopped, and the bench's
//! queues deleted.

mod ceiling;
mod database;
mod procfs;
mod publish;
mod registered;
mod replicas;
mod report;
mod run;
mod sink;
mod two_accounts;
mod webhooks;

use clap::Parser;
use webhook_worker::{app::Application, cli::Role, config::Config, queue};
pub use webhooks::{register, Signing};

// The delivery path allocates per event (JSON trees, bodies, headers) across threads; mimalloc
// measured faster than glibc's malloc in the bench binary (see docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
pub struct Args {
    #[arg(long, default_value_t = 50_000)]
    events: usize,
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp_url: String,
    /// Webhooks subscribed to every event (each event is delivered to each).
    #[arg(long, default_value_t = 1)]
    webhooks: usize,
    #[arg(long, default_value_t = 256)]
    prefetch: u16,
    /// Publish every event before the worker starts, and time how fast it drains the backlog.
    #[arg(long)]
    backlog: bool,
    /// After the backlog, publish N more at half the measured rate and report latency.
    #[arg(long)]
    half_load: bool,
    /// Publish at this many events a second while the worker runs.
    #[arg(long)]
    rate: Option<f64>,
    /// Skip measuring the broker's ceiling.
    #[arg(long)]
    no_ceiling: bool,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// The worker's log level.
    #[arg(long, default_value = "info")]
    log_level: String,
    /// What the worker records in its delivery log (`delivery_log.record`): all, failures, off.
    #[arg(long, default_value = "all")]
    delivery_log: String,
    /// The sink takes this long per request.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// The sink refuses (503) requests beyond this many in flight.
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
    /// Sign every delivery to the healthy webhooks with two secrets: they are created with
    /// another secret and then given the sink's, within the rotation's overlap.
    #[arg(long)]
    rotating_secret: bool,
    /// Make the healthy webhooks `standard_webhooks` (the Standard Webhooks headers too).
    #[arg(long)]
    standard_webhooks: bool,
    /// Keep the store and the delivery log on this PostgreSQL server (a database of the
    /// bench's own is created on it and dropped after) instead of SQLite; its CPU is counted.
    /// Also for --registered-webhooks.
    #[arg(long)]
    postgres_url: Option<String>,
    /// `delivery.fan_out_batch`: webhooks per fan-out batch job (1: a job per webhook). An
    /// event fans out when `--webhooks` is above `delivery.fan_out_threshold` (32).
    #[arg(long)]
    fan_out_batch: Option<usize>,
    /// `delivery.threads`: threads the worker delivers on, each with its own connections.
    #[arg(long, default_value_t = 1)]
    delivery_threads: usize,
    #[command(flatten)]
    two: two_accounts::Flags,
    /// Register this many webhooks (distinct accounts, one subscribed to the bench's events)
    /// and measure the registry's cost with them (see `registered`).
    #[arg(long)]
    registered_webhooks: Option<usize>,
    /// With --registered-webhooks: how long the idle replica's CPU is measured.
    #[arg(long, default_value_t = 60)]
    idle_seconds: u64,
    /// With --registered-webhooks: how many cross-replica changes are timed.
    #[arg(long, default_value_t = 5)]
    probes: usize,
    /// Run as the sink (the bench starts itself this way).
    #[arg(long, hide = true)]
    sink: bool,
    #[command(flatten)]
    publisher: publish::ChildFlags,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.sink {
        return sink::serve(sink::Settings::new(&args, args.events)).await;
    }
    if args.publisher.publisher {
        return publish::serve(&args).await;
    }
    if let Some(n) = args.registered_webhooks {
        return registered::run(&args, n).await;
    }
    if args.two.two_accounts {
        return two_accounts::run(&args).await;
    }
    let broker = procfs::broker_pid();
    let broker = broker.as_deref();
    let prefix = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let bodies = publish::bodies(&args)?;
    let phases = if args.half_load { 2 } else { 1 };
    let mut sink =
        sink::SinkProcess::spawn(sink::Settings::new(&args, args.events * phases)).await?;
    let mut report = report::Report::new(&args);
    if (args.backlog || args.half_load) && !args.no_ceiling {
        let ceiling = ceiling::measure(
            &args.amqp_url,
            &prefix,
            args.events,
            |s| bodies.body(s),
            broker,
        );
        report.ceiling(&ceiling.await?);
    }
    let dir = std::env::temp_dir().join(&prefix);
    let database =
        database::BenchDatabase::create(args.postgres_url.as_deref(), &prefix, &dir).await?;
    let config = config(&args, &prefix, &database.url)?;
    webhook_worker::telemetry::init_logging(&config.log);
    let connection =
        webhook_worker::queue::connect(&webhook_worker::config::AmqpUrls::parse(&args.amqp_url))
            .await?;
    let channel = connection.create_channel().await?;
    let topology = queue::Topology::from_config(&config);
    let exchange = topology.names.events_exchange.clone();
    queue::declare(&channel, &topology).await?;
    let expected = args.events * args.webhooks;
    let load = HalfLoad {
        args: &args,
        exchange: &exchange,
        sink: &sink,
    };
    let (app, drain) = if args.backlog || args.half_load {
        publish::backlog(
            &channel,
            publish::DEFAULT_ACCOUNT,
            &exchange,
            |s| bodies.route(s),
            0,
            args.events,
            |s| bodies.body(s),
        )
        .await?;
        report.rss_reset(procfs::reset_peak_rss(), procfs::rss_mib());
        let app = start_worker(&args, &config, sink.addr).await?;
        (app, run::drain(&sink, expected, broker).await?)
    } else {
        let app = start_worker(&args, &config, sink.addr).await?;
        let drain = load.paced(expected, broker, &mut report).await?;
        (app, drain)
    };
    report.drain(&drain);
    // The rate events were published at while the worker ran, when one was set.
    let mut paced_rate = args.rate.filter(|_| !args.backlog);
    if args.half_load {
        let rate = args.rate.unwrap_or(drain.per_second / 2.0);
        load.run(rate, expected * 2, broker, &mut report).await?;
        paced_rate = Some(rate);
    }
    let stats = sink.stats().await?;
    let metrics = app.metrics().clone();
    report.totals(&stats, args.events * phases, metrics.render());
    sink.kill_and_wait().await;
    stop(app).await;
    if let Some(rate) = paced_rate {
        // After the worker stopped, so that the two do not share the machine.
        let bare = ceiling::latency(&args, &prefix, rate).await?;
        report.bare_latency(bare);
    }
    // After the delivery log's last flush (the worker stopped).
    report.delivery_log(&metrics.render());
    report.print(args.json);
    delete_queues(&channel, &topology, &prefix, &dir).await?;
    database.drop().await;
    close(&connection).await;
    Ok(())
}

/// Events published while the worker runs, their latencies measured: the paced mode, and the
/// second phase of `--half-load` (as many events again, at half the backlog's drain rate unless
/// `--rate` says otherwise). The publisher is a process of its own ([`publish::Child`]).
struct HalfLoad<'a> {
    args: &'a Args,
    exchange: &'a str,
    sink: &'a sink::SinkProcess,
}

impl HalfLoad<'_> {
    /// Publishes `events` from sequence number `from` at `rate` while waiting for `expected`
    /// deliveries in all; returns both outcomes.
    async fn publish_while_draining(
        &self,
        from: usize,
        events: usize,
        rate: Option<f64>,
        expected: usize,
        broker: Option<&str>,
    ) -> anyhow::Result<(anyhow::Result<run::Drain>, publish::Published)> {
        let to = publish::Destination::Exchange(self.exchange);
        let publisher = publish::Child::spawn(self.args, to, from, events, rate)?;
        let waiting = run::drain(self.sink, expected, broker);
        let (drain, published) = tokio::join!(waiting, publisher.finish());
        Ok((drain, published?))
    }

    /// The paced mode (no `--backlog`): events published at `--rate` while the worker runs.
    async fn paced(
        &self,
        expected: usize,
        broker: Option<&str>,
        report: &mut report::Report,
    ) -> anyhow::Result<run::Drain> {
        let args = self.args;
        let (drain, published) = self
            .publish_while_draining(0, args.events, args.rate, expected, broker)
            .await?;
        let drain = drain?;
        let sent = &published.sent;
        report.latency(args.rate, sent, &self.sink.receipts().await?, 0);
        report.last_publish(sent.last().copied().unwrap_or(0), drain.stats.last_ns);
        report.publisher(&published);
        Ok(drain)
    }

    /// The second phase of `--half-load`.
    async fn run(
        &self,
        rate: f64,
        expected: usize,
        broker: Option<&str>,
        report: &mut report::Report,
    ) -> anyhow::Result<()> {
        let events = self.args.events;
        let (drain, published) = self
            .publish_while_draining(events, events, Some(rate), expected, broker)
            .await?;
        let receipts = self.sink.receipts().await?;
        report.latency(Some(rate), &published.sent, &receipts, events);
        // A worker that fell behind still drains within the bound; if not, the latencies
        // above say so, and there is no CPU figure for the phase.
        if let Ok(drain) = drain {
            report.half_load(&drain, &published);
        }
        Ok(())
    }
}

/// Closes the bench's own connection, so that its I/O loop does not end with the runtime (an
/// error in the log).
pub async fn close(connection: &lapin::Connection) {
    let _ = connection.close(200, "bench done").await;
}

/// Stops the worker once the sink is gone. Its requests to the sink ended with the sink's
/// connections, so this takes moments; the bound is for a worker that does not stop, whose
/// tasks then end with the runtime.
pub async fn stop(app: Application) {
    let bound = std::time::Duration::from_secs(30);
    if tokio::time::timeout(bound, app.stop()).await.is_err() {
        eprintln!("the worker did not stop within {bound:?}; leaving it");
    }
}

/// Deletes the bench's queues and its database directory, after the broker settled.
pub async fn delete_queues(
    channel: &lapin::Channel,
    topology: &queue::Topology,
    prefix: &str,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    settle_before_delete().await;
    if let Err(error) = queue::delete(channel, topology).await {
        eprintln!("the bench's queues ({prefix}.*) are left on the broker: {error}");
        return Err(error.into());
    }
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

pub fn config(args: &Args, prefix: &str, database_url: &str) -> anyhow::Result<Config> {
    Ok(Config::from_toml(&format!(
        r#"
        [amqp]
        url = "{url}"
        prefix = "{prefix}"
        prefetch = {prefetch}
        [api]
        listen = "127.0.0.1:0"
        [database]
        url = "{db}"
        encryption_key = "{key}"
        [delivery]
        allow_http = true
        allow_networks = ["127.0.0.0/8"]
        threads = {threads}
        {retry}
        {batch}
        [log]
        level = "{level}"
        [delivery_log]
        record = "{record}"
        "#,
        retry = args.retry_delay_ms.map_or(String::new(), |ms| format!(
            "retry_schedule = [{}]",
            vec![format!("\"{ms}ms\""); 10].join(", ")
        )),
        batch = args
            .fan_out_batch
            .map_or(String::new(), |n| format!("fan_out_batch = {n}")),
        threads = args.delivery_threads,
        url = args.amqp_url,
        prefetch = args.prefetch,
        db = database_url,
        key = base64_key(),
        level = args.log_level,
        record = args.delivery_log,
    ))?)
}

async fn start_worker(
    args: &Args,
    config: &Config,
    sink: std::net::SocketAddr,
) -> anyhow::Result<Application> {
    let signing = Signing {
        rotating: args.rotating_secret,
        standard: args.standard_webhooks,
    };
    let account = publish::DEFAULT_ACCOUNT;
    let mut webhooks = (0..args.webhooks)
        .map(|_| webhooks::build(account, sink, "hook", "*", signing))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let hanging_events = if args.hanging_every <= 1 { "*" } else { "slow" };
    if args.hanging {
        let plain = Signing::default();
        webhooks.push(webhooks::build(
            account,
            sink,
            "hang",
            hanging_events,
            plain,
        )?);
    }
    // Stored before the worker starts, which loads them before it consumes: with a backlog
    // waiting, registering them one by one after the start matched the first events against
    // only some of them (the run then never reached events × webhooks deliveries).
    webhooks::store_before_start(config, &webhooks).await?;
    Application::start(config.clone(), Role::Worker).await
}

/// RabbitMQ 3.10's quorum-queue segment writer crashed when a queue it was still truncating
/// after the last acks was deleted (`ra_log_segment_writer` `{badmatch,{error,enoent}}` in the
/// broker's log, 5 times in ~70 runs on 2026-12-01), and with it every quorum queue's Ra server
/// on the node restarted: the bench's delete failed with INTERNAL_ERROR and left its queues. A
/// pause after the last ack lets the broker finish with the drained queues first.
pub async fn settle_before_delete() {
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
}

pub fn base64_key() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
}
