//! The broker's own ceiling on this machine: a bare lapin consumer that only consumes and acks
//! the same messages (same body, a quorum queue, persistent) with no HTTP. A large prefetch and
//! acks batched with `multiple` keep the client far from a core (its CPU is reported), so the
//! figure measures the broker, not the client: acking one at a time it would measure the client.

use futures_util::StreamExt;
use lapin::{
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions,
        QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable},
};

use crate::{procfs::Sample, publish::Destination};

const PREFETCH: u16 = 2000;
const ACK_EVERY: u64 = 500;
/// Acks at a rate are batched more finely, so that the prefetch window never holds a message
/// back waiting for one.
const ACK_EVERY_AT_RATE: u64 = 50;

pub struct Ceiling {
    pub per_second: f64,
    /// The client's CPU as a share of one core while consuming.
    pub client_cores: f64,
    pub client_us: f64,
    pub broker_us: Option<f64>,
}

/// Publishes `events` bodies to a quorum queue of its own, then drains it; timed from the first
/// delivery to the last.
pub async fn measure(
    url: &str,
    prefix: &str,
    events: usize,
    body: impl Fn(usize) -> Vec<u8>,
    broker: Option<&str>,
) -> anyhow::Result<Ceiling> {
    let connection =
        webhook_worker::queue::connect(&webhook_worker::config::AmqpUrls::parse(url)).await?;
    let channel = connection.create_channel().await?;
    let queue = format!("{prefix}.ceiling");
    declare_quorum_queue(&channel, &queue).await?;
    crate::publish::backlog(
        &channel,
        crate::publish::DEFAULT_ACCOUNT,
        "",
        |_| queue.as_str(),
        0,
        events,
        body,
    )
    .await?;
    channel
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            &queue,
            "ceiling",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut first = None;
    let mut got = 0;
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery?;
        first.get_or_insert_with(|| Sample::now(broker));
        got += 1;
        if got % ACK_EVERY == 0 || got == events as u64 {
            let multiple = BasicAckOptions { multiple: true };
            delivery.acker.ack(multiple).await?;
        }
        if got == events as u64 {
            break;
        }
    }
    let last = Sample::now(broker);
    crate::settle_before_delete().await;
    channel
        .queue_delete(&queue, QueueDeleteOptions::default())
        .await?;
    // Closed, so that its buffers and I/O thread are not counted in the worker's memory after.
    let _ = connection.close(200, "ceiling measured").await;
    let first = first.ok_or_else(|| anyhow::anyhow!("nothing consumed"))?;
    let (wall, own, broker) = first.until(&last);
    // The first delivery is not timed: count the others.
    let timed = (events.max(2) - 1) as f64;
    Ok(Ceiling {
        per_second: timed / wall,
        client_cores: own / wall,
        client_us: own * 1e6 / timed,
        broker_us: broker.map(|b| b * 1e6 / timed),
    })
}

async fn declare_quorum_queue(channel: &lapin::Channel, queue: &str) -> anyhow::Result<()> {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel.queue_declare(queue, durable, args).await?;
    Ok(())
}

/// The bare consumer's publish-to-receipt latency at `rate`: the bench's publisher (a process
/// of its own) and bodies, a quorum queue of its own, a consumer that only receives and acks
/// (no HTTP, no worker). What the broker, the publisher and a client alone make of a message's
/// latency at that rate on this machine, to read the worker's latency at the same rate
/// against. Returns p50, p99 and max in ms.
pub async fn latency(
    args: &crate::Args,
    prefix: &str,
    rate: f64,
) -> anyhow::Result<(f64, f64, f64)> {
    let (url, events) = (args.amqp_url.as_str(), args.events);
    let connection =
        webhook_worker::queue::connect(&webhook_worker::config::AmqpUrls::parse(url)).await?;
    let consuming = connection.create_channel().await?;
    let queue = format!("{prefix}.bare-latency");
    declare_quorum_queue(&consuming, &queue).await?;
    consuming
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await?;
    let mut consumer = consuming
        .basic_consume(
            &queue,
            "bare-latency",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    // One consumer on a quorum queue gets its messages in the order they were published: the
    // n-th received is the n-th sent.
    let receiving = async {
        let mut received = Vec::with_capacity(events);
        while received.len() < events {
            let delivery = consumer
                .next()
                .await
                .ok_or_else(|| anyhow::anyhow!("the consumer ended"))??;
            received.push(crate::sink::wall_ns());
            if received.len() as u64 % ACK_EVERY_AT_RATE == 0 || received.len() == events {
                delivery
                    .acker
                    .ack(BasicAckOptions { multiple: true })
                    .await?;
            }
        }
        anyhow::Ok(received)
    };
    let publisher =
        crate::publish::Child::spawn(args, Destination::Queue(&queue), 0, events, Some(rate))?;
    let sending = publisher.finish();
    let bound = std::time::Duration::from_secs(600 + events as u64 / 500);
    let outcome = tokio::time::timeout(bound, async { tokio::join!(receiving, sending) }).await;
    crate::settle_before_delete().await;
    let deleted = consuming
        .queue_delete(&queue, QueueDeleteOptions::default())
        .await;
    let _ = connection.close(200, "bare latency measured").await;
    let (received, sent) = outcome.map_err(|_| anyhow::anyhow!("not all {events} arrived"))?;
    let (received, sent) = (received?, sent?.sent);
    deleted?;
    crate::run::latencies(&sent, &received, 0).ok_or_else(|| anyhow::anyhow!("nothing received"))
}
