//! The test's own connection to RabbitMQ: declaring a worker's topology, publishing as a
//! producer would, reading dead letters and queue depths, and deleting what a test declared.
//! Also the event fixture and the unique queue prefix every test runs under.

use std::time::Duration;

use lapin::{
    options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions},
    types::{AMQPValue, FieldTable},
    BasicProperties, Channel, Connection, ConnectionProperties,
};
use uuid::Uuid;
use webhook_worker::queue::{self, Names, Topology};

use super::wait::eventually;

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The broker the harness and worker processes use: `TEST_AMQP_URL`, or the machine's
/// ([`AMQP_URL`]). The shared-service tests run against a private node this way.
pub fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL").unwrap_or_else(|_| AMQP_URL.to_string())
}
pub const FIXTURE: &str = include_str!("../fixtures/business.updated.json");

/// `rabbitmqctl`, aimed at `TEST_RABBITMQ_NODE` when it is set (the shared-service tests run
/// against a private node this way).
pub fn rabbitmqctl() -> std::process::Command {
    let mut command = std::process::Command::new("rabbitmqctl");
    if let Ok(node) = std::env::var("TEST_RABBITMQ_NODE") {
        command.args(["-n", &node]);
    }
    command
}

pub fn unique_prefix() -> String {
    format!("test-{}", Uuid::new_v4().simple())
}

/// The fixture with a fresh event id (and, optionally, another type).
pub fn event(event_type: &str) -> (String, Vec<u8>) {
    let mut value: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
    let id = Uuid::new_v4().to_string();
    value["id"] = id.clone().into();
    value["type"] = event_type.into();
    (id, serde_json::to_vec(&value).unwrap())
}

/// A connection of the test's own to the broker, for publishing as a producer would and for
/// reading dead letters. It declares the worker's topology too, so that nothing published
/// before the worker is up gets lost.
pub struct Broker {
    pub names: Names,
    pub channel: Channel,
    pub topology: Topology,
    /// The node it connected to, and connects to again after a broker restart.
    url: String,
    _connection: Connection,
}

impl Broker {
    pub async fn connect(topology: Topology) -> Self {
        Self::connect_to(&amqp_url(), topology).await
    }

    /// [`Broker::connect`] to the node at `url` (a node of the test cluster, say).
    pub async fn connect_to(url: &str, topology: Topology) -> Self {
        let connection = Connection::connect(url, ConnectionProperties::default())
            .await
            .expect("RabbitMQ at TEST_AMQP_URL or 127.0.0.1:5672 (or the cluster's node)");
        let channel = connection.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        queue::declare(&channel, &topology).await.unwrap();
        Self {
            names: topology.names.clone(),
            channel,
            topology,
            url: url.to_string(),
            _connection: connection,
        }
    }

    /// Publishes to the events exchange as a producer would, and waits for the confirm.
    pub async fn publish(&self, account: Option<&str>, routing_key: &str, body: &[u8]) {
        let mut headers = FieldTable::default();
        if let Some(account) = account {
            headers.insert("account_id".into(), AMQPValue::LongString(account.into()));
        }
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_headers(headers);
        self.channel
            .basic_publish(
                &self.names.events_exchange,
                routing_key,
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    /// Publishes fresh events of the given types for `account` as fast as the broker confirms
    /// them: in batches of 250, each batch's confirms awaited together. Returns the ids in order.
    pub async fn publish_burst(&self, account: &str, types: &[&str]) -> Vec<String> {
        let mut ids = Vec::with_capacity(types.len());
        for batch in types.chunks(250) {
            let mut confirms = Vec::with_capacity(batch.len());
            for event_type in batch {
                let (id, body) = event(event_type);
                ids.push(id);
                let mut headers = FieldTable::default();
                headers.insert("account_id".into(), AMQPValue::LongString(account.into()));
                let properties = BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_content_type("application/json".into())
                    .with_headers(headers);
                let confirm = self
                    .channel
                    .basic_publish(
                        &self.names.events_exchange,
                        event_type,
                        BasicPublishOptions::default(),
                        &body,
                        properties,
                    )
                    .await
                    .unwrap();
                confirms.push(confirm);
            }
            for confirm in futures_util::future::join_all(confirms).await {
                confirm.unwrap();
            }
        }
        ids
    }

    /// Waits for `n` dead letters and takes them off the queue.
    pub async fn dead_letters(&self, n: usize, limit: Duration) -> Vec<(FieldTable, Vec<u8>)> {
        let letters = std::cell::RefCell::new(Vec::new());
        eventually(limit, format_args!("{n} dead letters"), || async {
            let message = self
                .channel
                .basic_get(&self.names.dead, BasicGetOptions::default())
                .await
                .unwrap();
            if let Some(message) = message {
                message.ack(BasicAckOptions::default()).await.unwrap();
                let headers = message.properties.headers().clone().unwrap_or_default();
                letters.borrow_mut().push((headers, message.data.clone()));
            }
            let got = letters.borrow().len();
            if got >= n {
                Ok(())
            } else {
                Err(format!("got {got}"))
            }
        })
        .await;
        letters.into_inner()
    }

    /// The queue's (ready messages, consumers), asked without declaring anything.
    pub async fn queue_counts(&self, queue: &str) -> (u32, u32) {
        let (channel, _connection) = self.live_channel().await;
        let queue = channel
            .queue_declare(
                queue,
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        (queue.message_count(), queue.consumer_count())
    }

    /// Waits until `queue` holds exactly `n` ready messages; panics after `limit`.
    pub async fn wait_for_ready(&self, queue: &str, n: u32, limit: Duration) {
        let what = format!("{queue} to hold {n} ready messages");
        eventually(limit, what, || async {
            let (ready, _) = self.queue_counts(queue).await;
            if ready == n {
                Ok(())
            } else {
                Err(format!("it holds {ready}"))
            }
        })
        .await
    }

    /// The queues the worker takes work from or parks it in: every queue of the topology but the
    /// dead-letter queue, where letters stay until someone replays them.
    pub fn work_queues(&self) -> Vec<String> {
        let mut queues = self.topology.queues();
        queues.retain(|queue| *queue != self.names.dead);
        queues
    }

    /// Messages ready in the [`work_queues`](Self::work_queues), all together.
    pub async fn ready_in_work_queues(&self) -> u64 {
        let mut ready = 0;
        for queue in self.work_queues() {
            ready += u64::from(self.queue_counts(&queue).await.0);
        }
        ready
    }

    /// Deletes what the test declared, over a new connection if the broker restarted meanwhile.
    pub async fn delete_topology(&self) {
        let (channel, _connection) = self.live_channel().await;
        queue::delete(&channel, &self.topology).await.unwrap();
    }

    /// The test's channel, or, when the broker restarted since, one on a new connection (returned
    /// with it: the channel lives as long as the connection is held).
    async fn live_channel(&self) -> (Channel, Option<Connection>) {
        if self.channel.status().connected() {
            return (self.channel.clone(), None);
        }
        let connection = Connection::connect(&self.url, ConnectionProperties::default())
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        (channel, Some(connection))
    }
}
