//! Moving queues that an older version declared with other arguments (before the delivery limit
//! and dead-letter route, or with another `amqp.delivery_limit`) to the arguments this version
//! declares, keeping every message: `webhook-worker migrate-queues`, run once with the workers
//! stopped (producers may keep publishing).
//!
//! RabbitMQ cannot change a queue's arguments, so each such queue is emptied into a transit
//! queue `<queue>.migrating`, deleted, declared anew, and refilled. The order closes every gap:
//! - events: the transit queue is bound to the events exchange before the old queue is unbound,
//!   so nothing published meanwhile is unroutable (it may reach both queues for a moment after
//!   the new one is bound: a duplicate, never a loss);
//! - retry jobs: the delay queues dead-letter into the deliveries queue by name, so when that
//!   queue must move, the delay queues are parked first (emptied into transit queues without a
//!   TTL) and nothing flows into it while it is away;
//! - every move publishes with a confirm and only then acks the original.

use lapin::{
    options::{
        BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
        QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
    },
    publisher_confirm::Confirmation,
    types::FieldTable,
    Channel, Connection,
};
use serde::Serialize;

use super::topology::{self, queue_arguments, DeclareError, Topology};

/// One queue that was declared anew, and how many messages went through the move.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Migrated {
    pub queue: String,
    pub messages: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("queue {queue:?} has {consumers} consumers: stop every worker before migrating")]
    InUse { queue: String, consumers: u32 },
    #[error("the broker did not confirm a message moved into {queue:?}; nothing was acked")]
    NotConfirmed { queue: String },
    #[error("declaring the new topology failed: {0}")]
    Declare(#[from] DeclareError),
    #[error(transparent)]
    Broker(#[from] lapin::Error),
}

/// `webhook-worker migrate-queues`: connects with the configuration and migrates.
pub async fn run(config: &crate::config::Config) -> Result<Vec<Migrated>, MigrateError> {
    let connection = crate::queue::connect(&config.amqp.url).await?;
    let migrated = migrate(&connection, &Topology::from_config(config)).await;
    let _ = connection.close(200, "migration over").await;
    migrated
}

/// Migrates every queue whose arguments differ; returns what moved (empty: all matched).
pub async fn migrate(
    connection: &Connection,
    topology: &Topology,
) -> Result<Vec<Migrated>, MigrateError> {
    let stale = stale_queues(connection, topology).await?;
    if stale.is_empty() {
        return Ok(Vec::new());
    }
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let names = &topology.names;
    for consumed in [&names.incoming, &names.deliveries] {
        let (_, consumers) = super::counts(&channel, consumed).await?;
        if consumers > 0 {
            return Err(MigrateError::InUse {
                queue: consumed.clone(),
                consumers,
            });
        }
    }
    let mut moving = stale.clone();
    if stale.contains(&names.deliveries) {
        // Park every delay queue first, so that none dead-letters into the deliveries queue
        // while it is away.
        let delays = topology.queues().into_iter().skip(3);
        let parked: Vec<String> = delays.filter(|q| !stale.contains(q)).collect();
        moving.splice(0..0, parked);
        moving.sort_by_key(|q| q == &names.deliveries);
    }
    let mut migrated = Vec::new();
    for queue in &moving {
        let transit = format!("{queue}.migrating");
        declare_plain(&channel, &transit).await?;
        if queue == &names.incoming {
            bind(&channel, &transit, &names.events_exchange).await?;
            channel
                .queue_unbind(queue, &names.events_exchange, "#", FieldTable::default())
                .await?;
        }
        let messages = move_all(&channel, queue, &transit).await?;
        channel
            .queue_delete(queue, QueueDeleteOptions::default())
            .await?;
        migrated.push(Migrated {
            queue: queue.clone(),
            messages,
        });
    }
    topology::declare(&channel, topology).await?;
    for queue in &moving {
        let transit = format!("{queue}.migrating");
        if queue == &names.incoming {
            channel
                .queue_unbind(&transit, &names.events_exchange, "#", FieldTable::default())
                .await?;
        }
        move_all(&channel, &transit, queue).await?;
        channel
            .queue_delete(&transit, QueueDeleteOptions::default())
            .await?;
    }
    let _ = channel.close(200, "queues migrated").await;
    Ok(migrated)
}

/// The queues whose declared arguments differ from this version's. Declaring is the only way to
/// compare; it also creates the queues that are missing, so every queue exists afterwards.
async fn stale_queues(
    connection: &Connection,
    topology: &Topology,
) -> Result<Vec<String>, MigrateError> {
    let mut stale = Vec::new();
    for (queue, args) in queue_arguments(topology) {
        // A refused declare closes its channel: one channel per queue.
        let channel = connection.create_channel().await?;
        match channel.queue_declare(&queue, durable(), args).await {
            Ok(_) => {
                let _ = channel.close(200, "checked").await;
            }
            Err(lapin::Error::ProtocolError(error)) if error.get_id() == 406 => stale.push(queue),
            Err(error) => return Err(error.into()),
        }
    }
    Ok(stale)
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

/// A transit queue: durable, replicated, no TTL, no limit, no dead-lettering.
async fn declare_plain(channel: &Channel, queue: &str) -> lapin::Result<()> {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        lapin::types::AMQPValue::LongString("quorum".into()),
    );
    channel.queue_declare(queue, durable(), args).await?;
    Ok(())
}

async fn bind(channel: &Channel, queue: &str, exchange: &str) -> lapin::Result<()> {
    channel
        .queue_bind(
            queue,
            exchange,
            "#",
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
}

/// Moves every message of `from` into `to`, each confirmed before the original is acked, with
/// its properties and headers as they were.
async fn move_all(channel: &Channel, from: &str, to: &str) -> Result<usize, MigrateError> {
    let mut moved = 0;
    while let Some(message) = channel
        .basic_get(from, BasicGetOptions { no_ack: false })
        .await?
    {
        let confirmation = channel
            .basic_publish(
                "",
                to,
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &message.data,
                message.properties.clone(),
            )
            .await?
            .await?;
        if !matches!(confirmation, Confirmation::Ack(None)) {
            return Err(MigrateError::NotConfirmed { queue: to.into() });
        }
        message.ack(BasicAckOptions::default()).await?;
        moved += 1;
    }
    Ok(moved)
}
