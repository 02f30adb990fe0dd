//! A whole worker in-process for tests: its own queue prefix, its own SQLite database in a
//! temporary folder, the machine's RabbitMQ, and 127.0.0.0/8 allowed so that loopback
//! receivers can be reached. Everything it declared is deleted when the test stops it.

use std::time::Duration;

use base64::Engine;
use chrono::Utc;
use lapin::{
    options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions},
    types::{AMQPValue, FieldTable},
    BasicProperties, Channel, Connection, ConnectionProperties,
};
use uuid::Uuid;
use webhook_worker::{
    app::Application,
    cli::Role,
    config::Config,
    net::AddressPolicy,
    queue::{self, Names, Topology},
    webhook::{Draft, UrlRules, Webhook, WebhookPatch},
};

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The broker the harness and worker processes use: `TEST_AMQP_URL`, or the machine's
/// ([`AMQP_URL`]). The shared-service tests run against a private node this way.
pub fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL").unwrap_or_else(|_| AMQP_URL.to_string())
}
pub const FIXTURE: &str = include_str!("../fixtures/business.updated.json");

pub fn unique_prefix() -> String {
    format!("test-{}", Uuid::new_v4().simple())
}

pub fn random_key() -> String {
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
}

/// The fixture with a fresh event id (and, optionally, another type).
pub fn event(event_type: &str) -> (String, Vec<u8>) {
    let mut value: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
    let id = Uuid::new_v4().to_string();
    value["id"] = id.clone().into();
    value["type"] = event_type.into();
    (id, serde_json::to_vec(&value).unwrap())
}

/// Test settings: the overrides go last, so a test can change any of them.
pub fn test_config(prefix: &str, database_url: &str, overrides: &str) -> Config {
    let base = format!(
        r#"
        [amqp]
        url = "{amqp_url}"
        prefix = "{prefix}"
        prefetch = 64
        [api]
        listen = "127.0.0.1:0"
        [database]
        url = "{database_url}"
        encryption_key = "{key}"
        [delivery]
        allow_http = true
        allow_networks = ["127.0.0.0/8"]
        retry_schedule = ["200ms", "400ms"]
        timeout = "5s"
        [registry]
        refresh = "1s"
        [shutdown]
        grace = "5s"
        "#,
        key = random_key(),
        amqp_url = amqp_url(),
    );
    let merged = merge_toml(&base, overrides);
    Config::from_toml(&merged).expect("valid test configuration")
}

fn merge_toml(base: &str, overrides: &str) -> String {
    let mut base: toml::Table = base.parse().unwrap();
    let overrides: toml::Table = overrides.parse().unwrap();
    for (section, values) in overrides {
        match (base.get_mut(&section), values) {
            (Some(toml::Value::Table(target)), toml::Value::Table(values)) => target.extend(values),
            (_, values) => {
                base.insert(section, values);
            }
        }
    }
    base.to_string()
}

/// A connection of the test's own to the broker, for publishing as a producer would and for
/// reading dead letters. It declares the worker's topology too, so that nothing published
/// before the worker is up gets lost.
pub struct Broker {
    pub names: Names,
    pub channel: Channel,
    pub topology: Topology,
    _connection: Connection,
}

impl Broker {
    pub async fn connect(topology: Topology) -> Self {
        let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .expect("RabbitMQ at TEST_AMQP_URL or 127.0.0.1:5672");
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
        let deadline = tokio::time::Instant::now() + limit;
        let mut letters = Vec::new();
        while letters.len() < n {
            let message = self
                .channel
                .basic_get(&self.names.dead, BasicGetOptions::default())
                .await
                .unwrap();
            match message {
                Some(message) => {
                    message.ack(BasicAckOptions::default()).await.unwrap();
                    let headers = message.properties.headers().clone().unwrap_or_default();
                    letters.push((headers, message.data.clone()));
                }
                None if tokio::time::Instant::now() > deadline => {
                    panic!("expected {n} dead letters, got {}", letters.len())
                }
                None => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        letters
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
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let (ready, _) = self.queue_counts(queue).await;
            if ready == n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{queue} holds {ready} ready messages, not {n}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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
        let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        (channel, Some(connection))
    }
}

/// A worker in-process plus the test's broker connection.
pub struct TestWorker {
    pub app: Option<Application>,
    pub config: Config,
    pub broker: Broker,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for TestWorker {
    type Target = Broker;

    fn deref(&self) -> &Broker {
        &self.broker
    }
}

impl TestWorker {
    pub async fn start(overrides: &str) -> Self {
        Self::start_as(overrides, Role::Worker).await
    }

    /// A worker in `role` (`Role::All` also serves the API and the public JWKS).
    pub async fn start_as(overrides: &str, role: Role) -> Self {
        Self::start_on(None, overrides, role).await
    }

    /// A worker in `role` on the database at `database_url` (which the caller keeps while the
    /// worker runs), or on a SQLite file of its own.
    pub async fn start_on(database_url: Option<&str>, overrides: &str, role: Role) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let prefix = unique_prefix();
        let database_url = match database_url {
            Some(url) => url.to_string(),
            None => format!("sqlite://{}/test.db", dir.path().display()),
        };
        let config = test_config(&prefix, &database_url, overrides);
        let broker = Broker::connect(Topology::from_config(&config)).await;
        let app = Application::start(config.clone(), role)
            .await
            .expect("the worker starts");
        let worker = Self {
            app: Some(app),
            config,
            broker,
            _dir: dir,
        };
        worker.wait_until_ready().await;
        worker
    }

    /// A broker connection for a worker that runs as a separate process.
    pub async fn publisher_for(prefix: &str) -> Broker {
        let config = test_config(
            prefix,
            "sqlite::memory:",
            "[delivery]\nretry_schedule = [\"500ms\"]",
        );
        Broker::connect(Topology::from_config(&config)).await
    }

    pub fn app(&self) -> &Application {
        self.app.as_ref().expect("running")
    }

    async fn wait_until_ready(&self) {
        for _ in 0..500 {
            if self.app().readiness().broker_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the worker did not connect to RabbitMQ");
    }

    /// Registers a webhook for `account` from API-style JSON, as the API would (validated).
    pub async fn add_webhook(&self, account: &str, json: serde_json::Value) -> Webhook {
        let webhook = validated(account, json);
        self.insert(webhook.clone()).await;
        webhook
    }

    /// Subscribes `receiver` to every event of account `acct`: what most tests need.
    pub async fn subscribe(&self, receiver: &crate::receiver::TestReceiver) -> Webhook {
        self.add_webhook(
            "acct",
            serde_json::json!({"url": receiver.url(), "enabled_events": ["*"]}),
        )
        .await
    }

    /// Publishes a fresh `business.updated` event for account `acct`; returns its id and body.
    pub async fn publish_event(&self) -> (String, Vec<u8>) {
        let (id, body) = event("business.updated");
        self.publish(Some("acct"), "business.updated", &body).await;
        (id, body)
    }

    /// Stores a webhook as given, bypassing validation (e.g. a URL the rules now refuse).
    pub async fn insert(&self, webhook: Webhook) {
        let registry = self.app().registry();
        registry.store().insert(&webhook).await.unwrap();
        registry.upsert(webhook);
    }

    /// A counter from /metrics, e.g. `deliveries_total{outcome="delivered"}`.
    pub fn metric(&self, name: &str) -> u64 {
        metric(&self.app().metrics().render(), name)
    }

    /// Waits until the counter reaches `n`; panics after `limit`.
    pub async fn wait_for_metric(&self, name: &str, n: u64, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.metric(name) < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} stayed at {} (wanted {n})",
                self.metric(name)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.stop().await;
        }
        self.broker.delete_topology().await;
    }
}

/// A webhook for `account` from API-style JSON, validated as the API would (loopback allowed).
pub fn validated(account: &str, json: serde_json::Value) -> Webhook {
    let patch: WebhookPatch = serde_json::from_value(json).unwrap();
    let rules = UrlRules {
        allow_http: true,
        addresses: AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]),
    };
    let now = Utc::now();
    Draft::default()
        .apply(patch)
        .validate(&rules, Uuid::new_v4(), account, now, now)
        .expect("a valid webhook")
}

pub fn metric(text: &str, name: &str) -> u64 {
    let full = format!("webhook_worker_{name}");
    text.lines()
        .find_map(|line| line.strip_prefix(&full)?.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0)
}
