//! What the worker declares on the broker, and with which arguments: the events exchange, the
//! consumed queues with their delivery limit and dead-letter route, the delay queues, and the
//! dead-letter queue.
//!
//! Every argument here is part of the queue's identity on the broker: declaring an existing
//! queue with other arguments fails with `PRECONDITION_FAILED` (406). [`declare`] turns that into
//! [`DeclareError::Mismatch`], naming the queue and the argument, which the worker treats as fatal
//! (one clear log line and a stop) instead of reconnecting in a loop.
//!
//! The arguments are chosen to behave the same on RabbitMQ 3.x and 4.x: 4.x gives quorum queues a
//! default delivery limit of 20 and drops what exceeds it when there is nowhere to dead-letter
//! to, 3.x has no limit at all. Declaring the limit and the dead-letter route explicitly makes
//! both versions count, and both move an over-delivered message to the dead letters.

use lapin::{
    options::{
        ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
        QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable},
    Channel, ExchangeKind,
};

use super::Names;
use crate::{config::Config, retry::RetrySchedule};

/// The dead-letter queue's own delivery limit: high enough never to be reached by listing (each
/// `dead-letters list` hands every message back, which RabbitMQ counts as a delivery), explicit so
/// that RabbitMQ 4.x's default of 20 does not apply.
pub const DEAD_DELIVERY_LIMIT: i64 = 1_000_000;

/// Everything [`declare`] needs: the names, the delay queues, and the delivery limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub names: Names,
    pub schedule: RetrySchedule,
    /// How many times a message of `incoming` or `deliveries` may be delivered again (requeued,
    /// or returned by a consumer that went away) before the broker dead-letters it.
    pub delivery_limit: u32,
}

impl Topology {
    pub fn new(names: Names, schedule: RetrySchedule, delivery_limit: u32) -> Self {
        Self {
            names,
            schedule,
            delivery_limit,
        }
    }

    pub fn from_config(config: &Config) -> Self {
        Self::new(
            Names::new(&config.amqp.prefix),
            RetrySchedule::from_config(&config.delivery),
            config.amqp.delivery_limit,
        )
    }

    /// Every queue name, consumed queues first.
    pub fn queues(&self) -> Vec<String> {
        let names = &self.names;
        let mut queues = vec![
            names.incoming.clone(),
            names.deliveries.clone(),
            names.dead.clone(),
        ];
        queues.extend(
            self.schedule
                .distinct_delays()
                .into_iter()
                .map(|d| names.retry(d)),
        );
        queues
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeclareError {
    /// The queue exists with other arguments: an older version declared it. Not retryable.
    #[error(
        "queue {queue:?} exists with other arguments than this version declares \
         (argument {argument:?}; the broker said: {detail}); stop every worker and run \
         `webhook-worker migrate-queues` (docs/operations.md, \"Upgrading the queues\")"
    )]
    Mismatch {
        queue: String,
        argument: String,
        detail: String,
    },
    #[error(transparent)]
    Broker(#[from] lapin::Error),
}

impl DeclareError {
    /// A lost connection or channel is worth another try; a mismatch is not.
    pub fn is_fatal(&self) -> bool {
        matches!(self, DeclareError::Mismatch { .. })
    }

    fn of(queue: &str, error: lapin::Error) -> Self {
        if let lapin::Error::ProtocolError(amqp) = &error {
            if amqp.get_id() == 406 {
                let detail = amqp.get_message().as_str().to_string();
                return DeclareError::Mismatch {
                    queue: queue.to_string(),
                    argument: argument_named(&detail).unwrap_or("unknown").to_string(),
                    detail,
                };
            }
        }
        DeclareError::Broker(error)
    }
}

/// The argument a 406 is about: RabbitMQ says "inequivalent arg 'x-delivery-limit' for queue …".
fn argument_named(detail: &str) -> Option<&str> {
    let rest = &detail[detail.find("arg '")? + "arg '".len()..];
    Some(&rest[..rest.find('\'')?])
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(value.into())
}

fn quorum() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), text("quorum"));
    args
}

/// At-least-once dead-lettering into `routing_key` of the default exchange: the move is confirmed
/// inside the broker, so a dead-lettered message cannot be lost on its way (at-most-once, the
/// default, can). RabbitMQ requires `reject-publish` overflow for it.
fn dead_letter_to(args: &mut FieldTable, routing_key: &str) {
    args.insert("x-dead-letter-strategy".into(), text("at-least-once"));
    args.insert("x-overflow".into(), text("reject-publish"));
    args.insert("x-dead-letter-exchange".into(), text(""));
    args.insert("x-dead-letter-routing-key".into(), text(routing_key));
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

/// The arguments of each queue, by name, in the order of [`Topology::queues`].
pub(super) fn queue_arguments(topology: &Topology) -> Vec<(String, FieldTable)> {
    let names = &topology.names;
    let mut queues = Vec::new();
    for consumed in [&names.incoming, &names.deliveries] {
        let mut args = quorum();
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(i64::from(topology.delivery_limit)),
        );
        dead_letter_to(&mut args, &names.dead);
        queues.push((consumed.clone(), args));
    }
    let mut dead = quorum();
    dead.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(DEAD_DELIVERY_LIMIT),
    );
    queues.push((names.dead.clone(), dead));
    for delay in topology.schedule.distinct_delays() {
        // A job waits out the queue's TTL, then moves into the deliveries queue.
        let mut args = quorum();
        let ttl = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
        dead_letter_to(&mut args, &names.deliveries);
        queues.push((names.retry(delay), args));
    }
    queues
}

/// Declares the events exchange (durable, topic), idempotently: what producers publish to.
pub async fn declare_exchange(channel: &Channel, names: &Names) -> lapin::Result<()> {
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
        .await
}

/// Declares everything, idempotently. Safe to run by every replica at every start.
pub async fn declare(channel: &Channel, topology: &Topology) -> Result<(), DeclareError> {
    let names = &topology.names;
    declare_exchange(channel, names).await?;
    for (queue, args) in queue_arguments(topology) {
        channel
            .queue_declare(&queue, durable(), args)
            .await
            .map_err(|error| DeclareError::of(&queue, error))?;
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
    Ok(())
}

/// Deletes everything [`declare`] made. For tests and for tearing down a prefix.
pub async fn delete(channel: &Channel, topology: &Topology) -> lapin::Result<()> {
    for queue in topology.queues() {
        channel
            .queue_delete(&queue, QueueDeleteOptions::default())
            .await?;
    }
    channel
        .exchange_delete(
            &topology.names.events_exchange,
            ExchangeDeleteOptions::default(),
        )
        .await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use lapin::types::ShortString;

    use super::*;

    #[test]
    fn the_argument_is_read_from_the_brokers_406() {
        let detail = "PRECONDITION_FAILED - inequivalent arg 'x-delivery-limit' for queue \
                      'webhooks.incoming' in vhost '/': received the value '10' of type \
                      'longlong' but current is none";
        assert_eq!(argument_named(detail), Some("x-delivery-limit"));
        assert_eq!(argument_named("PRECONDITION_FAILED - something else"), None);
    }

    #[test]
    fn consumed_queues_have_a_limit_and_dead_letter_at_least_once() {
        let topology = Topology::new(
            Names::new("p"),
            RetrySchedule::new(vec![Duration::from_secs(5)]),
            7,
        );
        let queues = queue_arguments(&topology);
        let (name, args) = &queues[0];
        assert_eq!(name, "p.incoming");
        let arg = |name: &str| args.inner().get(&ShortString::from(name)).cloned();
        assert_eq!(arg("x-delivery-limit"), Some(AMQPValue::LongLongInt(7)));
        assert_eq!(arg("x-dead-letter-routing-key"), Some(text("p.dead")));
        assert_eq!(arg("x-dead-letter-strategy"), Some(text("at-least-once")));
        let names: Vec<_> = queues.iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(names, topology.queues());
    }

    #[test]
    fn the_dead_letters_have_a_limit_listing_never_reaches() {
        let topology = Topology::new(
            Names::new("p"),
            RetrySchedule::new(vec![Duration::from_secs(5)]),
            7,
        );
        let queues = queue_arguments(&topology);
        let (name, args) = &queues[2];
        assert_eq!(name, "p.dead");
        let arg = |name: &str| args.inner().get(&ShortString::from(name)).cloned();
        // Explicit, so that RabbitMQ 4.x's default of 20 (with nowhere to dead-letter to: dropped)
        // never applies to letters listed again and again.
        assert_eq!(
            arg("x-delivery-limit"),
            Some(AMQPValue::LongLongInt(DEAD_DELIVERY_LIMIT))
        );
        assert_eq!(arg("x-dead-letter-exchange"), None, "the end of the line");
    }
}
