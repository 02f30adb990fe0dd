//! Publishing the bench's events: all at once with publisher confirms (a backlog), or at a fixed
//! rate, remembering when each was published (for publish-to-receipt latency).

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
