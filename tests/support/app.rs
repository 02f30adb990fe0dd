//! The Webhooks API in-process: `spawn_app` serves the real router on `127.0.0.1:0` with its own
//! database and two accounts' tokens, and `TestApp` calls it over real HTTP.

use std::sync::Arc;

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use webhook_worker::{
    api::{self, ApiState},
    config::Config,
    health::Readiness,
    registry::Registry,
    store::Store,
    telemetry::Metrics,
};

use super::database::{Backend, TestDb};

/// How a test's app is configured.
pub struct Settings {
    /// Configure `database.encryption_key` (without it, secrets cannot be stored).
    pub encryption_key: bool,
    pub max_body_bytes: usize,
    /// Readiness waits for the broker, as in roles `all` and `worker`.
    pub needs_broker: bool,
    /// Serve only what a worker-only process serves (`api::ops_router`).
    pub worker_only: bool,
    pub max_webhooks_per_account: u32,
    /// `api.public_base_url`.
    pub public_base_url: &'static str,
    /// More TOML sections (not `[database]` or `[api]`), e.g. `[oidc]` settings.
    pub extra_toml: &'static str,
    /// More `[api]` keys, e.g. `write_burst = 3`.
    pub api_toml: &'static str,
    /// `api.header_read_timeout` and `api.max_connections`.
    pub limits: api::ConnectionLimits,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            encryption_key: true,
            max_body_bytes: 65536,
            needs_broker: false,
            worker_only: false,
            max_webhooks_per_account: 100,
            public_base_url: "",
            extra_toml: "",
            api_toml: "",
            limits: api::ConnectionLimits::default(),
        }
    }
}

pub const ACCOUNT_A: &str = "acct_a";
pub const ACCOUNT_B: &str = "acct_b";

/// A running API on its own port and database.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    /// Tokens of [`ACCOUNT_A`] and [`ACCOUNT_B`].
    pub token_a: String,
    pub token_b: String,
    pub registry: Arc<Registry>,
    pub readiness: Readiness,
    cancel: CancellationToken,
    /// Last: the database outlives the server that uses it.
    pub db: TestDb,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// One HTTP answer, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    /// The raw body: what secret-leak checks search.
    pub text: String,
    /// The body parsed as JSON, or `Value::Null`.
    pub json: Value,
}

impl Reply {
    /// The `field` of each entry of `{"errors":[...]}`, in order.
    pub fn error_fields(&self) -> Vec<String> {
        self.json["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no errors array in {}", self.text))
            .iter()
            .map(|e| e["field"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        self
    }
}

fn new_token() -> String {
    format!("whk_test_{}", hex::encode(rand::random::<[u8; 16]>()))
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, Settings::default()).await
}

pub async fn spawn_app_with(backend: Backend, settings: Settings) -> TestApp {
    let db = TestDb::new(backend).await;
    let (token_a, token_b) = (new_token(), new_token());
    let hash = |token: &str| hex::encode(Sha256::digest(token.as_bytes()));
    let key = if settings.encryption_key {
        base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
    } else {
        String::new()
    };
    let config = Config::from_toml(&format!(
        r#"
        [database]
        url = "{url}"
        encryption_key = "{key}"
        max_connections = 4
        [api]
        listen = "127.0.0.1:0"
        max_body_bytes = {max_body}
        max_webhooks_per_account = {max_webhooks}
        public_base_url = "{public_base_url}"
        {api_extra}
        [[api.tokens]]
        account_id = "{ACCOUNT_A}"
        token_sha256 = "{hash_a}"
        [[api.tokens]]
        account_id = "{ACCOUNT_B}"
        token_sha256 = "{hash_b}"
        {extra}
        "#,
        extra = settings.extra_toml,
        api_extra = settings.api_toml,
        max_webhooks = settings.max_webhooks_per_account,
        public_base_url = settings.public_base_url,
        url = db.url(),
        max_body = settings.max_body_bytes,
        hash_a = hash(&token_a),
        hash_b = hash(&token_b),
    ))
    .expect("a valid test configuration");
    let store = Store::connect(
        config.database.url.expose(),
        config.database.max_connections,
        config.encryption_key(),
    )
    .await
    .expect("the store opens");
    let metrics = Metrics::new();
    let registry = Registry::load(store, metrics.clone())
        .await
        .expect("the registry loads");
    let readiness = Readiness::new(settings.needs_broker);
    let state = ApiState::new(&config, registry.clone(), readiness.clone(), metrics)
        .expect("the API state builds");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let base = format!("http://{}", listener.local_addr().expect("an address"));
    let cancel = CancellationToken::new();
    let limits = settings.limits;
    if settings.worker_only {
        let router = api::ops_router(state);
        tokio::spawn(api::serve_router(listener, router, limits, cancel.clone()));
    } else {
        tokio::spawn(api::serve(listener, state, limits, cancel.clone()));
    }
    TestApp {
        base,
        client: reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .expect("a client"),
        token_a,
        token_b,
        registry,
        readiness,
        cancel,
        db,
    }
}

impl TestApp {
    /// Sends `body` (as JSON) with `token` (as a bearer token) and reads the whole answer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        Self::read(request).await
    }

    /// Sends a prepared request (for raw bodies and odd headers) and reads the whole answer.
    pub async fn read(request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("the request is answered");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a readable body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            text,
            json,
        }
    }

    pub fn raw(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> Reply {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: &Value) -> Reply {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn put(&self, path: &str, token: &str, body: &Value) -> Reply {
        self.call(Method::PUT, path, Some(token), Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// Creates a webhook for `token`'s account and returns its id; the test fails otherwise.
    pub async fn create(&self, token: &str, body: &Value) -> String {
        let reply = self.post("/v1/webhooks", token, body).await.expect(201);
        reply.json["id"]
            .as_str()
            .expect("the created webhook has an id")
            .to_string()
    }
}

/// The smallest valid webhook.
pub fn minimal() -> Value {
    serde_json::json!({
        "url": "https://example.com/hooks",
        "enabled_events": ["business.updated"],
    })
}

/// `minimal()` with the fields of `extra` added or replaced.
pub fn with(extra: Value) -> Value {
    let mut value = minimal();
    for (key, field) in extra.as_object().expect("an object") {
        value[key] = field.clone();
    }
    value
}
