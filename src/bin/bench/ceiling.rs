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

use crate::procfs::Sample;

const PREFETCH: u16 = 2000;
const ACK_EVERY: u64 = 500;

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
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel.queue_declare(&queue, durable, args).await?;
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
