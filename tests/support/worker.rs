//! A whole worker in-process for tests: its own queue prefix, its own SQLite database in a
//! temporary folder, the machine's RabbitMQ, and 127.0.0.0/8 allowed so that loopback
//! receivers can be reached. Everything it declared is deleted when the test stops it.

use std::{fmt::Debug, time::Duration};

use base64::Engine;
use chrono::Utc;
use uuid::Uuid;
use webhook_worker::{
    app::Application,
    cli::Role,
    config::Config,
    queue::Topology,
    safety::AddressPolicy,
    webhook::{Draft, UrlRules, Webhook, WebhookPatch},
};

use super::{
    broker::{amqp_url, event, unique_prefix, Broker},
    receiver::TestReceiver,
    wait::{eventually, until_quiet},
};

/// How long a worker may take to become quiet.
const QUIET_LIMIT: Duration = Duration::from_secs(60);

pub fn random_key() -> String {
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
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

/// A worker in-process plus the test's broker connection.
pub struct InProcessWorker {
    pub app: Option<Application>,
    pub config: Config,
    pub broker: Broker,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for InProcessWorker {
    type Target = Broker;

    fn deref(&self) -> &Broker {
        &self.broker
    }
}

impl InProcessWorker {
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
        let limit = Duration::from_secs(10);
        eventually(limit, "the worker to connect to RabbitMQ", || async {
            self.app().readiness().broker_ok()
        })
        .await
    }

    /// Registers a webhook for `account` from API-style JSON, as the API would (validated).
    pub async fn add_webhook(&self, account: &str, json: serde_json::Value) -> Webhook {
        let webhook = validated(account, json);
        self.insert(webhook.clone()).await;
        webhook
    }

    /// Subscribes `receiver` to every event of account `acct`: what most tests need.
    pub async fn subscribe(&self, receiver: &TestReceiver) -> Webhook {
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
        eventually(limit, format_args!("{name} to reach {n}"), || async {
            let now = self.metric(name);
            if now >= n {
                Ok(())
            } else {
                Err(format!("it is {now}"))
            }
        })
        .await
    }

    /// Messages the worker settled (acknowledged, rejected or requeued), all outcomes together.
    pub fn settles(&self) -> u64 {
        settles(&self.app().metrics().render())
    }

    /// Waits until the worker is quiet: its work queues empty (nothing ready, nothing
    /// unacknowledged) and `count` (e.g. a receiver's requests) and its settles unchanged over
    /// [`QUIET_WINDOW`](super::wait::QUIET_WINDOW); returns `count`'s value. Call it before
    /// asserting that nothing more arrived.
    pub async fn until_quiet<T: PartialEq + Debug>(&self, count: impl Fn() -> T) -> T {
        let counts = || async { (count(), self.settles()) };
        until_quiet(&self.broker, QUIET_LIMIT, counts).await.0
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

/// The `settles_total` counters in a `/metrics` text, all outcomes together.
pub fn settles(text: &str) -> u64 {
    text.lines()
        .filter(|line| line.starts_with("webhook_worker_settles_total"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|settled| settled as u64)
        .sum()
}
