//! The worker binary as a child process, configured only by environment variables as a container
//! would be: for tests that kill it, restart it, or run two replicas side by side. Every process
//! serves `/readyz` and `/metrics` on a port of its own, so a test can ask it how it is doing.

use std::{process::Stdio, time::Duration};

use tokio::process::{Child, Command};
use webhook_worker::{store::Store, webhook::Webhook};

use super::{broker::amqp_url, wait::eventually, worker::validated};

/// A worker process to be: the settings every test needs, then the test's own.
pub struct WorkerProcessBuilder {
    command: Command,
    port: u16,
}

impl WorkerProcessBuilder {
    /// Role `worker` on `prefix` and `database_url`, loopback receivers allowed, one retry after
    /// 500 ms, warnings only on stderr (stdout discarded).
    pub fn new(prefix: &str, database_url: &str, key: &str) -> Self {
        Self::new_as(prefix, database_url, key, "worker")
    }

    /// [`WorkerProcessBuilder::new`] in `role` (`all` also serves the API on its port).
    pub fn new_as(prefix: &str, database_url: &str, key: &str, role: &str) -> Self {
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_webhook-worker"));
        command
            .args(["run", "--role", role])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let worker = Self { command, port };
        worker
            .env("AMQP__URL", amqp_url())
            .env("AMQP__PREFIX", prefix)
            .env("DATABASE__URL", database_url)
            .env("DATABASE__ENCRYPTION_KEY", key)
            .env("DELIVERY__ALLOW_HTTP", "true")
            .env("DELIVERY__ALLOW_NETWORKS", "[\"127.0.0.0/8\"]")
            .env("DELIVERY__RETRY_SCHEDULE", "[\"500ms\"]")
            .env("API__LISTEN", format!("127.0.0.1:{port}"))
            .env("LOG__LEVEL", "warn")
    }

    /// Sets `WEBHOOK_WORKER__<key>`, e.g. `env("DELIVERY__TIMEOUT", "3s")`.
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.command.env(format!("WEBHOOK_WORKER__{key}"), value);
        self
    }

    /// Serves `/readyz` and `/metrics` on `port` (a restarted worker keeps its predecessor's).
    pub fn on_port(mut self, port: u16) -> Self {
        self.port = port;
        self.env("API__LISTEN", format!("127.0.0.1:{port}"))
    }

    /// The worker's stderr goes to the test's (shown when a test fails).
    pub fn show_stderr(mut self) -> Self {
        self.command.stderr(Stdio::inherit());
        self
    }

    /// The worker's stderr goes to `file`.
    pub fn stderr_to(mut self, file: std::fs::File) -> Self {
        self.command.stderr(file);
        self
    }

    /// The worker's stderr is piped, for the test to read.
    pub fn pipe_stderr(mut self) -> Self {
        self.command.stderr(Stdio::piped());
        self
    }

    pub fn spawn(mut self) -> WorkerProcess {
        let child = self.command.spawn().expect("start the worker binary");
        WorkerProcess {
            child,
            port: self.port,
        }
    }
}

/// A running worker binary; killed when dropped.
pub struct WorkerProcess {
    pub child: Child,
    /// Where it serves `/healthz`, `/readyz` and `/metrics`.
    pub port: u16,
}

impl WorkerProcess {
    /// The status `/readyz` answers, or `None` when nothing answers.
    pub async fn readyz(&self) -> Option<u16> {
        let answer = reqwest::get(format!("http://127.0.0.1:{}/readyz", self.port)).await;
        answer.ok().map(|a| a.status().as_u16())
    }

    /// Waits until `/readyz` answers `status`; panics after `limit`.
    pub async fn wait_for_readyz(&self, status: u16, limit: Duration) {
        let what = format!("/readyz to answer {status}");
        eventually(limit, what, || async {
            match self.readyz().await {
                Some(answer) if answer == status => Ok(()),
                answer => Err(format!("it answered {answer:?}")),
            }
        })
        .await
    }

    /// The `checks` member of its `/readyz` answer (e.g. `{"broker":"blocked",…}`), or `Null`.
    pub async fn readiness_checks(&self) -> serde_json::Value {
        let url = format!("http://127.0.0.1:{}/readyz", self.port);
        let answer = match reqwest::get(url).await {
            Ok(answer) => answer.json::<serde_json::Value>().await.ok(),
            Err(_) => None,
        };
        answer
            .map(|body| body["checks"].clone())
            .unwrap_or_default()
    }

    /// A counter from its `/metrics`, e.g. `deliveries_total{outcome="delivered"}` (0 when absent
    /// or when the worker does not answer).
    pub async fn metric(&self, name: &str) -> u64 {
        super::worker::metric(&self.metrics_text().await, name)
    }

    /// Messages it settled, all outcomes together (0 when it does not answer).
    pub async fn settles(&self) -> u64 {
        super::worker::settles(&self.metrics_text().await)
    }

    async fn metrics_text(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.port);
        match reqwest::get(url).await {
            Ok(answer) => answer.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL, and wait for it to be gone.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// Sends SIGTERM and asserts that it exits 0 within `limit`.
    pub async fn terminate_and_expect_clean_exit(&mut self, limit: Duration, why: &str) {
        terminate_and_expect_clean_exit(&mut self.child, limit, why).await
    }
}

/// Sends SIGTERM to `child` and asserts it exits 0 within `limit`.
pub async fn terminate_and_expect_clean_exit(child: &mut Child, limit: Duration, why: &str) {
    let pid = child.id().expect("running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
    let status = tokio::time::timeout(limit, child.wait())
        .await
        .expect(why)
        .expect("wait for the worker");
    assert!(status.success(), "{status}");
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Stores webhooks for `account` (API-style JSON, validated) in the database at `database_url`
/// before any worker runs on it.
pub async fn seed_webhooks(
    database_url: &str,
    key: &str,
    account: &str,
    hooks: &[serde_json::Value],
) -> Vec<Webhook> {
    let store = Store::connect(database_url, 1, Some(decode_key(key)))
        .await
        .expect("the test database");
    let mut stored = Vec::new();
    for hook in hooks {
        let webhook = validated(account, hook.clone());
        store.insert(&webhook).await.expect("insert a webhook");
        stored.push(webhook);
    }
    store.close().await;
    stored
}

/// The 32 bytes of a base64 `database.encryption_key`.
pub fn decode_key(key: &str) -> [u8; 32] {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(key)
        .expect("base64")
        .try_into()
        .expect("32 bytes")
}
