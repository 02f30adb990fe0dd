//! What `--registered-webhooks` runs against: a database of its own ([`crate::database`]), N
//! webhooks bulk-inserted into it,
//! and `webhook-worker` replicas as child processes (the binary beside the bench's), so that
//! their memory and CPU are their own.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context;
use sha2::Digest;
use webhook_worker::{
    net::AddressPolicy,
    store::Store,
    webhook::{Draft, UrlRules, Webhook, WebhookPatch},
};

use crate::sink;

/// A validated webhook of `account` to the sink's `/hook`, signing with [`sink::SECRET`].
pub fn webhook(account: &str, sink: std::net::SocketAddr, events: &str) -> anyhow::Result<Webhook> {
    let patch: WebhookPatch = serde_json::from_value(serde_json::json!({
        "url": format!("http://{sink}/hook"), "enabled_events": [events], "secret": sink::SECRET,
    }))?;
    let rules = UrlRules {
        allow_http: true,
        addresses: AddressPolicy::new(vec!["127.0.0.0/8".parse()?]),
    };
    let now = chrono::Utc::now();
    Draft::default()
        .apply(patch)
        .validate(&rules, uuid::Uuid::new_v4(), account, now, now)
        .map_err(|e| anyhow::anyhow!("{e:?}"))
}

/// Registers `n` webhooks through the store, in bulk: one in the bench's account subscribed to
/// the bench's events, the others each in an account of its own, subscribed to another type.
pub async fn register(
    url: &str,
    key: [u8; 32],
    n: usize,
    sink: std::net::SocketAddr,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let store = Store::connect(url, 4, Some(key)).await?;
    // Not "*": the probes of the cross-replica latency must reach only their own webhook.
    let mut webhooks = vec![webhook(
        crate::publish::DEFAULT_ACCOUNT,
        sink,
        "business.updated",
    )?];
    for i in 1..n {
        webhooks.push(webhook(&format!("account-{i}"), sink, "other.event")?);
    }
    for chunk in webhooks.chunks(10_000) {
        store.insert_bulk(chunk).await?;
    }
    store.close().await;
    Ok(started.elapsed())
}

/// The settings every replica shares; each adds its own `[api] listen`.
pub struct Shared {
    pub amqp_url: String,
    pub prefix: String,
    pub database_url: String,
    pub key: String,
    pub token_sha256: String,
    pub delivery_log: String,
    pub dir: PathBuf,
}

impl Shared {
    pub fn new(args: &crate::Args, prefix: &str, database_url: &str, dir: &Path) -> Self {
        Shared {
            amqp_url: args.amqp_url.clone(),
            prefix: prefix.to_string(),
            database_url: database_url.to_string(),
            key: crate::base64_key(),
            token_sha256: hex::encode(sha2::Sha256::digest(TOKEN.as_bytes())),
            delivery_log: args.delivery_log.clone(),
            dir: dir.to_path_buf(),
        }
    }

    pub fn key_bytes(&self) -> anyhow::Result<[u8; 32]> {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD.decode(&self.key)?;
        bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("the bench's key is not 32 bytes"))
    }

    pub fn toml(&self, listen: &str) -> String {
        format!(
            r#"
            [amqp]
            url = "{amqp}"
            prefix = "{prefix}"
            [api]
            listen = "{listen}"
            [[api.tokens]]
            account_id = "default"
            token_sha256 = "{sha}"
            [database]
            url = "{db}"
            encryption_key = "{key}"
            [delivery]
            allow_http = true
            allow_networks = ["127.0.0.0/8"]
            [log]
            level = "warn"
            [delivery_log]
            record = "{record}"
            "#,
            amqp = self.amqp_url,
            prefix = self.prefix,
            sha = self.token_sha256,
            db = self.database_url,
            key = self.key,
            record = self.delivery_log,
        )
    }
}

/// The bench's API token (account `default`), for the replica that serves the API.
pub const TOKEN: &str = "bench-registered-webhooks-token";

/// A `webhook-worker run` child process.
pub struct Replica {
    child: tokio::process::Child,
    pub pid: String,
}

impl Replica {
    /// Starts `webhook-worker run --role <role>` with the shared settings and `listen`.
    pub fn spawn(shared: &Shared, name: &str, role: &str, listen: &str) -> anyhow::Result<Self> {
        let config = shared.dir.join(format!("{name}.toml"));
        std::fs::write(&config, shared.toml(listen))?;
        let log = std::fs::File::create(shared.dir.join(format!("{name}.log")))?;
        let binary = std::env::current_exe()?.with_file_name("webhook-worker");
        let child = tokio::process::Command::new(&binary)
            .arg("--config")
            .arg(&config)
            .args(["run", "--role", role])
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id().context("the replica exited at once")?;
        Ok(Replica {
            child,
            pid: pid.to_string(),
        })
    }

    /// Peak resident memory so far (`VmHWM`), in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid));
        status
            .ok()
            .and_then(|s| {
                let line = s.lines().find(|l| l.starts_with("VmHWM:"))?.to_string();
                line["VmHWM:".len()..]
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map_or(0.0, |kib| kib / 1024.0)
    }

    pub fn cpu_seconds(&self) -> f64 {
        crate::procfs::cpu_seconds(&self.pid).unwrap_or(0.0)
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A free local port (bound, then released) for a replica whose API the bench calls.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
