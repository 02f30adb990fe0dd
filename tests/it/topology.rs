//! Starting against queues an older version declared with other arguments: the worker stops at
//! once with one error line naming the queue and the argument, instead of reconnecting for ever;
//! `migrate-queues` then declares them anew without losing a message.

use std::time::Duration;

use lapin::{
    options::{QueueDeclareOptions, QueueDeleteOptions},
    types::{AMQPValue, FieldTable},
    Connection, ConnectionProperties,
};
use tokio::io::AsyncReadExt;
use webhook_worker::queue::{self, migrate, Topology};

use crate::support::{random_key, test_config, unique_prefix, AMQP_URL};

#[tokio::test]
async fn a_queue_declared_with_older_arguments_stops_the_worker_with_one_clear_error_line() {
    let prefix = unique_prefix();
    let incoming = format!("{prefix}.incoming");
    let connection = Connection::connect(AMQP_URL, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    // What the previous version declared: a quorum queue, no delivery limit, no dead-lettering.
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(&incoming, durable, args)
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}/old.db", dir.path().display());
    let mut worker =
        crate::support::WorkerProcessBuilder::new(&prefix, &database_url, &random_key())
            .pipe_stderr()
            .spawn();
    let child = &mut worker.child;
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the worker stops on its own instead of reconnecting")
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert!(!status.success(), "{status}");
    let naming: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains(&incoming))
        .collect();
    assert_eq!(naming.len(), 1, "one line names the queue:\n{stderr}");
    // The broker reports the first argument that differs (here x-dead-letter-exchange).
    assert!(naming[0].contains("argument \"x-"), "{}", naming[0]);
    assert!(
        !stderr.contains("reconnecting"),
        "no reconnect loop:\n{stderr}"
    );

    // The worker declared the exchange before the queue it stopped on; remove both.
    channel
        .queue_delete(&incoming, QueueDeleteOptions::default())
        .await
        .unwrap();
    let _ = channel
        .exchange_delete(&format!("{prefix}.events"), Default::default())
        .await;
}

/// Declares what the previous version declared: the consumed and dead-letter queues as plain
/// quorum queues (no delivery limit, no dead-lettering).
async fn declare_old_topology(channel: &lapin::Channel, topology: &Topology) {
    let names = &topology.names;
    channel
        .exchange_declare(
            &names.events_exchange,
            lapin::ExchangeKind::Topic,
            lapin::options::ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    for queue in [&names.incoming, &names.deliveries, &names.dead] {
        let mut args = FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        channel.queue_declare(queue, durable, args).await.unwrap();
    }
    channel
        .queue_bind(
            &names.incoming,
            &names.events_exchange,
            "#",
            Default::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
}

async fn publish(channel: &lapin::Channel, exchange: &str, routing_key: &str, body: &[u8]) {
    let confirm = channel
        .basic_publish(
            exchange,
            routing_key,
            lapin::options::BasicPublishOptions::default(),
            body,
            lapin::BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(matches!(
        confirm,
        lapin::publisher_confirm::Confirmation::Ack(None)
    ));
}

async fn ready(channel: &lapin::Channel, queue: &str) -> u32 {
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue, passive, FieldTable::default())
        .await
        .unwrap()
        .message_count()
}

#[tokio::test]
async fn migrate_queues_redeclares_old_queues_and_keeps_every_message() {
    let prefix = unique_prefix();
    let config = test_config(&prefix, "sqlite::memory:", "");
    let topology = Topology::from_config(&config);
    let names = topology.names.clone();
    let connection = Connection::connect(AMQP_URL, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel.confirm_select(Default::default()).await.unwrap();
    declare_old_topology(&channel, &topology).await;
    for _ in 0..3 {
        publish(&channel, &names.events_exchange, "business.updated", b"{}").await;
    }
    for _ in 0..2 {
        publish(&channel, "", &names.deliveries, b"{}").await;
    }
    publish(&channel, "", &names.dead, b"{}").await;

    let migrated = migrate::run(&config).await.unwrap();
    let moved = |queue: &str| {
        migrated
            .iter()
            .find(|m| m.queue == queue)
            .map(|m| m.messages)
    };
    assert_eq!(moved(&names.incoming), Some(3), "{migrated:?}");
    assert_eq!(moved(&names.deliveries), Some(2), "{migrated:?}");
    assert_eq!(moved(&names.dead), Some(1), "{migrated:?}");

    // The new arguments are in place: declaring them is accepted, and nothing was lost.
    queue::declare(&channel, &topology).await.unwrap();
    assert_eq!(ready(&channel, &names.incoming).await, 3);
    assert_eq!(ready(&channel, &names.deliveries).await, 2);
    assert_eq!(ready(&channel, &names.dead).await, 1);
    // Events still reach the new queue, and only it.
    publish(&channel, &names.events_exchange, "business.updated", b"{}").await;
    assert_eq!(ready(&channel, &names.incoming).await, 4);
    assert!(
        migrate::run(&config).await.unwrap().is_empty(),
        "a second run has nothing to do"
    );
    queue::delete(&channel, &topology).await.unwrap();
}
