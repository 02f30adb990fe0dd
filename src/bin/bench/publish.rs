//! Publishing the bench's events: all at once with publisher confirms (a backlog), or at a fixed
//! rate, remembering when each was published (for publish-to-receipt latency). At a rate, the
//! publisher runs in a process of its own ([`Child`]), so that the bench process's CPU is the
//! worker's alone.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::future::join_all;
use lapin::{
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::{AMQPValue, FieldTable},
    BasicProperties, Channel,
};

const FIXTURE: &str = include_str!("../../../tests/fixtures/business.updated.json");
const PLACEHOLDER: &str = "00000000-0000-4000-8000-ffffffffffff";
/// The fixture's own type.
const NORMAL: &str = "business.updated";

/// The fixture event serialized once with a given type; each body only swaps in its id (same
/// length).
pub struct Template {
    bytes: Vec<u8>,
    at: usize,
}

impl Template {
    pub fn new(event_type: &str) -> anyhow::Result<Self> {
        let mut template: serde_json::Value = serde_json::from_str(FIXTURE)?;
        template["id"] = PLACEHOLDER.into();
        template["type"] = event_type.into();
        let bytes = serde_json::to_vec(&template)?;
        let at = find(&bytes, PLACEHOLDER.as_bytes()).context("placeholder")?;
        Ok(Template { bytes, at })
    }

    pub fn body(&self, seq: usize) -> Vec<u8> {
        let mut body = self.bytes.clone();
        body[self.at..self.at + PLACEHOLDER.len()]
            .copy_from_slice(crate::sink::event_id(seq).as_bytes());
        body
    }
}

/// The bench's two event types: the fixture's own, and `slow` for the hanging webhook.
pub struct Bodies {
    normal: Template,
    slow: Template,
    /// Every `slow_every`-th event has the type `slow` (0: none).
    pub slow_every: usize,
}

impl Bodies {
    pub fn new(slow_every: usize) -> anyhow::Result<Self> {
        Ok(Bodies {
            normal: Template::new(NORMAL)?,
            slow: Template::new("slow")?,
            slow_every,
        })
    }

    /// Webhooks match on the event's own type, which is also its routing key.
    pub fn route(&self, seq: usize) -> &'static str {
        if self.slow_every > 1 && seq % self.slow_every == 0 {
            "slow"
        } else {
            NORMAL
        }
    }

    pub fn body(&self, seq: usize) -> Vec<u8> {
        match self.route(seq) {
            "slow" => self.slow.body(seq),
            _ => self.normal.body(seq),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The account the bench publishes for unless a mode says otherwise (`delivery.default_account`).
pub const DEFAULT_ACCOUNT: &str = "default";

fn properties(account: &str) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert("account_id".into(), AMQPValue::LongString(account.into()));
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_headers(headers)
}

/// Publishes sequence numbers `from..from + events` for `account` and waits for every confirm; `route` of an
/// empty exchange is the queue name.
pub async fn backlog<'a>(
    channel: &Channel,
    account: &str,
    exchange: &str,
    route: impl Fn(usize) -> &'a str,
    from: usize,
    events: usize,
    body: impl Fn(usize) -> Vec<u8>,
) -> anyhow::Result<()> {
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut seq = from;
    while seq < from + events {
        let end = (seq + 500).min(from + events);
        let mut confirms = Vec::with_capacity(end - seq);
        for s in seq..end {
            let options = BasicPublishOptions::default();
            let body = body(s);
            let publish =
                channel.basic_publish(exchange, route(s), options, &body, properties(account));
            confirms.push(publish.await?);
        }
        for confirm in join_all(confirms).await {
            confirm.context("publisher confirm")?;
        }
        seq = end;
    }
    Ok(())
}

/// Where paced events go.
#[derive(Clone, Copy)]
pub enum Destination<'a> {
    /// This exchange (the events exchange), routed by the event's type.
    Exchange(&'a str),
    /// This queue, through the default exchange.
    Queue(&'a str),
}

impl<'a> Destination<'a> {
    /// The exchange and routing key of `bodies`' event `seq`.
    fn of(self, bodies: &'a Bodies, seq: usize) -> (&'a str, &'a str) {
        match self {
            Destination::Exchange(exchange) => (exchange, bodies.route(seq)),
            Destination::Queue(queue) => ("", queue),
        }
    }
}

/// Publishes `from..from + events` for `account` at `rate` a second (`None`: as fast as it can)
/// to `to`, returning when each was published (ns since the epoch, indexed from `from`).
pub async fn paced(
    channel: &Channel,
    account: &str,
    to: Destination<'_>,
    bodies: &Bodies,
    from: usize,
    events: usize,
    rate: Option<f64>,
) -> anyhow::Result<Vec<u64>> {
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut sent = Vec::with_capacity(events);
    let mut confirms = Vec::new();
    let mut waiting = Vec::new();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    while sent.len() < events {
        tick.tick().await;
        let due = rate.map_or(events, |r| (started.elapsed().as_secs_f64() * r) as usize);
        let due = due.min(events);
        while sent.len() < due {
            let seq = from + sent.len();
            sent.push(crate::sink::wall_ns());
            let options = BasicPublishOptions::default();
            let body = bodies.body(seq);
            let (exchange, route) = to.of(bodies, seq);
            confirms.push(
                channel
                    .basic_publish(exchange, route, options, &body, properties(account))
                    .await?,
            );
        }
        // Confirms are awaited elsewhere, so that waiting for them does not pace the publisher.
        if confirms.len() >= 100 {
            waiting.push(tokio::spawn(join_all(std::mem::take(&mut confirms))));
        }
    }
    waiting.push(tokio::spawn(join_all(confirms)));
    for batch in waiting {
        for confirm in batch.await? {
            confirm.context("publisher confirm")?;
        }
    }
    Ok(sent)
}

/// How the bench starts itself as the paced publisher (`--publisher`, hidden): where to, and
/// from which sequence number. The rate, the count and the bodies come from `--rate`,
/// `--events` and `--hanging`/`--hanging-every`, as in the bench itself.
#[derive(clap::Args)]
pub struct ChildFlags {
    #[arg(long, hide = true)]
    pub publisher: bool,
    #[arg(long, hide = true)]
    publish_exchange: Option<String>,
    #[arg(long, hide = true)]
    publish_queue: Option<String>,
    #[arg(long, hide = true, default_value_t = 0)]
    publish_from: usize,
}

/// The bodies the bench publishes, as `args` say.
pub fn bodies(args: &crate::Args) -> anyhow::Result<Bodies> {
    Bodies::new(if args.hanging { args.hanging_every } else { 0 })
}

/// Runs as the publisher process: publishes at `--rate`, then writes its CPU seconds (an `f64`)
/// and when each event was published (`u64`s, ns since the epoch) to stdout, little-endian.
pub async fn serve(args: &crate::Args) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt;
    let flags = &args.publisher;
    let to = match (&flags.publish_queue, &flags.publish_exchange) {
        (Some(queue), _) => Destination::Queue(queue),
        (None, Some(exchange)) => Destination::Exchange(exchange),
        (None, None) => anyhow::bail!("--publisher needs --publish-queue or --publish-exchange"),
    };
    let bodies = bodies(args)?;
    let urls = webhook_worker::config::AmqpUrls::parse(&args.amqp_url);
    let connection = webhook_worker::queue::connect(&urls).await?;
    let channel = connection.create_channel().await?;
    let sent = paced(
        &channel,
        DEFAULT_ACCOUNT,
        to,
        &bodies,
        flags.publish_from,
        args.events,
        args.rate,
    )
    .await?;
    let cpu = crate::procfs::cpu_seconds("self").unwrap_or(0.0);
    crate::close(&connection).await;
    let mut out = Vec::with_capacity(8 * (sent.len() + 1));
    out.extend_from_slice(&cpu.to_le_bytes());
    for at in sent {
        out.extend_from_slice(&at.to_le_bytes());
    }
    let mut stdout = tokio::io::stdout();
    stdout.write_all(&out).await?;
    stdout.flush().await?;
    Ok(())
}

/// What the publisher process did: when each event was published, and its CPU seconds.
pub struct Published {
    pub sent: Vec<u64>,
    pub cpu_seconds: f64,
}

impl Published {
    /// The publisher's CPU per event published, in µs.
    pub fn cpu_us_per_event(&self) -> f64 {
        self.cpu_seconds * 1e6 / self.sent.len().max(1) as f64
    }
}

/// The paced publisher in a process of its own: publishes `from..from + events` to `to` at
/// `rate` a second (`None`: as fast as it can), as [`paced`] does.
pub struct Child {
    child: tokio::process::Child,
}

impl Child {
    pub fn spawn(
        args: &crate::Args,
        to: Destination<'_>,
        from: usize,
        events: usize,
        rate: Option<f64>,
    ) -> anyhow::Result<Self> {
        let mut command = tokio::process::Command::new(std::env::current_exe()?);
        command.args(["--publisher", "--amqp-url", &args.amqp_url]);
        command.args(["--events", &events.to_string()]);
        command.args(["--publish-from", &from.to_string()]);
        match to {
            Destination::Exchange(exchange) => command.args(["--publish-exchange", exchange]),
            Destination::Queue(queue) => command.args(["--publish-queue", queue]),
        };
        if let Some(rate) = rate {
            command.args(["--rate", &rate.to_string()]);
        }
        if args.hanging {
            command.args([
                "--hanging",
                "--hanging-every",
                &args.hanging_every.to_string(),
            ]);
        }
        let child = command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        Ok(Child { child })
    }

    /// Waits for the publisher to finish, and reads what it reports.
    pub async fn finish(self) -> anyhow::Result<Published> {
        let output = self.child.wait_with_output().await?;
        anyhow::ensure!(
            output.status.success(),
            "the publisher process failed: {}",
            output.status
        );
        let mut words = output
            .stdout
            .chunks_exact(8)
            .map(|c| <[u8; 8]>::try_from(c).unwrap_or_default());
        let cpu_seconds = f64::from_le_bytes(
            words
                .next()
                .ok_or_else(|| anyhow::anyhow!("the publisher reported nothing"))?,
        );
        let sent = words.map(u64::from_le_bytes).collect();
        Ok(Published { sent, cpu_seconds })
    }
}
