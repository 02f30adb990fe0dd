//! RabbitMQ: the names and topology the worker declares, the confirmed publisher, and the
//! headers a retry job carries.
//!
//! Topology (prefix `webhooks`):
//! - exchange `webhooks.events` (topic, durable): producers publish events here, routing key =
//!   event type.
//! - queue `webhooks.incoming` (quorum), bound with `#`: every event, consumed directly: the first
//!   attempt is made straight from here, so most events are never copied. A message handed out
//!   `amqp.delivery_limit` times is dead-lettered by the worker, for each webhook it is owed to
//!   (`pipeline::dead`); one that names none, by the broker into `webhooks.dead`.
//! - queues `webhooks.retry.<delay>` (quorum, one per distinct delay of the schedule, no
//!   consumers): a message waits out the queue's TTL, then RabbitMQ dead-letters it (at least
//!   once) into
//! - queue `webhooks.deliveries` (quorum): retries and parked deliveries, and the first attempts
//!   of an event split by fan-out (in [`batch`]es: the event once, the webhooks in a header),
//!   consumed like events, with the same delivery limit.
//! - queue `webhooks.dead` (quorum): dead letters, with the reason in headers (ours, or the
//!   broker's `x-first-death-reason`); never consumed by the worker.
//!
//! [`connect`] opens the broker connections every part uses (worker, tools, migrations), to one
//! of the nodes `amqp.url` lists; [`nodes`] says which one.
//!
//! [`account`] reads an event's `account_id` header, fail-closed.
//!
//! [`topology`] declares all of it; [`migrate`] moves queues an older version declared with other
//! arguments.

pub mod account;
pub mod batch;
pub mod connect;
pub mod depths;
pub mod job;
pub mod migrate;
pub mod nodes;
pub mod outlet;
pub mod publisher;
pub mod topology;

use std::time::Duration;

use lapin::{
    options::QueueDeclareOptions,
    types::{AMQPValue, FieldTable, ShortString},
    Channel,
};

use crate::retry::label;

pub use account::{account_header, BadAccount};
pub use connect::{connect, connect_next, connection_properties};
pub use nodes::NodeRing;
pub use outlet::{Outlet, OutletSender};
pub use publisher::{PublishError, Publisher};
pub use topology::{declare, delete, DeclareError, Topology};

/// (ready messages, consumers) of a queue that exists, from a passive declare. Asking for one
/// that does not exist closes `channel`.
pub async fn counts(channel: &Channel, queue: &str) -> lapin::Result<(u32, u32)> {
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let queue = channel
        .queue_declare(queue, passive, FieldTable::default())
        .await?;
    Ok((queue.message_count(), queue.consumer_count()))
}

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
