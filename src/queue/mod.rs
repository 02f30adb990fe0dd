//! RabbitMQ: the names and topology the worker declares, the confirmed publisher, and the
//! headers a retry job carries.
//!
//! Topology (prefix `webhooks`):
//! - exchange `webhooks.events` (topic, durable): producers publish events here, routing key =
//!   event type.
//! - queue `webhooks.incoming` (quorum), bound with `#`: every event, consumed directly: the first
//!   attempt is made straight from here, so most events are never copied.
//! - queues `webhooks.retry.<delay>` (quorum, one per distinct delay of the schedule, no
//!   consumers): a message waits out the queue's TTL, then RabbitMQ dead-letters it (at least
//!   once) into
//! - queue `webhooks.deliveries` (quorum): retries and parked deliveries, consumed like events.
//! - queue `webhooks.dead` (quorum): dead letters, with the reason in headers; never consumed by
//!   the worker.

pub mod job;
pub mod publisher;

use std::time::Duration;

use lapin::{
    options::{
        ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
        QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable, ShortString},
    Channel, ExchangeKind,
};

use crate::retry::{label, RetrySchedule};

pub use publisher::{PublishError, Publisher};

/// Every exchange and queue name, derived from `amqp.prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub events_exchange: String,
    pub incoming: String,
    pub deliveries: String,
    pub dead: String,
    prefix: String,
}

impl Names {
    pub fn new(prefix: &str) -> Self {
        Self {
            events_exchange: format!("{prefix}.events"),
            incoming: format!("{prefix}.incoming"),
            deliveries: format!("{prefix}.deliveries"),
            dead: format!("{prefix}.dead"),
            prefix: prefix.to_string(),
        }
    }

    pub fn retry(&self, delay: Duration) -> String {
        format!("{}.retry.{}", self.prefix, label(delay))
    }
}

fn quorum() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

/// Declares everything, idempotently. Safe to run by every replica at every start.
pub async fn declare(
    channel: &Channel,
    names: &Names,
    schedule: &RetrySchedule,
) -> lapin::Result<()> {
    channel
        .exchange_declare(
            &names.events_exchange,
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    for queue in [&names.incoming, &names.deliveries, &names.dead] {
        channel.queue_declare(queue, durable(), quorum()).await?;
    }
    channel
        .queue_bind(
            &names.incoming,
            &names.events_exchange,
            "#",
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    for delay in schedule.distinct_delays() {
        // Quorum, with at-least-once dead-lettering: the move from a delay queue into the
        // deliveries queue is then confirmed inside the broker, so an expiring job cannot be
        // lost on its way (classic queues dead-letter at most once).
        let mut args = quorum();
        args.insert(
            "x-dead-letter-strategy".into(),
            AMQPValue::LongString("at-least-once".into()),
        );
        args.insert(
            "x-overflow".into(),
            AMQPValue::LongString("reject-publish".into()),
        );
        let ttl = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(names.deliveries.as_str().into()),
        );
        channel
            .queue_declare(&names.retry(delay), durable(), args)
            .await?;
    }
    Ok(())
}

/// Deletes everything [`declare`] made. For tests and for tearing down a prefix.
pub async fn delete(
    channel: &Channel,
    names: &Names,
    schedule: &RetrySchedule,
) -> lapin::Result<()> {
    let mut queues = vec![
        names.incoming.clone(),
        names.deliveries.clone(),
        names.dead.clone(),
    ];
    queues.extend(
        schedule
            .distinct_delays()
            .into_iter()
            .map(|d| names.retry(d)),
    );
    for queue in queues {
        channel
            .queue_delete(&queue, QueueDeleteOptions::default())
            .await?;
    }
    channel
        .exchange_delete(&names.events_exchange, ExchangeDeleteOptions::default())
        .await
}

/// A header as text, whichever string type the producer used.
pub fn header_text(headers: Option<&FieldTable>, name: &str) -> Option<String> {
    let value = headers?.inner().get(&ShortString::from(name))?;
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        AMQPValue::ByteArray(b) => Some(String::from_utf8_lossy(b.as_slice()).into_owned()),
        _ => None,
    }
}

/// A header as an integer, whichever integer type the producer used.
pub fn header_int(headers: Option<&FieldTable>, name: &str) -> Option<i64> {
    let value = headers?.inner().get(&ShortString::from(name))?;
    match value {
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prefix() {
        let names = Names::new("webhooks");
        assert_eq!(names.events_exchange, "webhooks.events");
        assert_eq!(names.dead, "webhooks.dead");
        assert_eq!(names.retry(Duration::from_secs(30)), "webhooks.retry.30s");
    }
}
