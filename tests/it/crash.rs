//! Crash safety: the worker binary killed with SIGKILL mid-stream, then started again, delivers
//! every event at least once.

use std::{collections::HashSet, process::Stdio, time::Duration};

use serde_json::json;
use tokio::process::{Child, Command};
use webhook_worker::store::Store;

use crate::{
    harness::{event, random_key, unique_prefix, TestWorker, AMQP_URL},
    receiver::TestReceiver,
};

pub fn spawn_worker(prefix: &str, database_url: &str, key: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_webhook-worker"))
        .args(["run", "--role", "worker"])
        .env("WEBHOOK_WORKER__AMQP__URL", AMQP_URL)
        .env("WEBHOOK_WORKER__AMQP__PREFIX", prefix)
        .env("WEBHOOK_WORKER__DATABASE__URL", database_url)
        .env("WEBHOOK_WORKER__DATABASE__ENCRYPTION_KEY", key)
        .env("WEBHOOK_WORKER__DELIVERY__ALLOW_HTTP", "true")
        .env(
            "WEBHOOK_WORKER__DELIVERY__ALLOW_NETWORKS",
            "[\"127.0.0.0/8\"]",
        )
        .env("WEBHOOK_WORKER__DELIVERY__RETRY_SCHEDULE", "[\"500ms\"]")
        .env("WEBHOOK_WORKER__API__LISTEN", "127.0.0.1:0")
        .env("WEBHOOK_WORKER__LOG__LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the worker binary")
}

#[tokio::test]
async fn a_worker_killed_mid_stream_loses_no_event() {
    const EVENTS: usize = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}/crash.db", dir.path().display());
    let key = random_key();
    let prefix = unique_prefix();
    let receiver = TestReceiver::start().await;
    {
        let store = Store::connect(&database_url, 1, Some(decode(&key)))
            .await
            .unwrap();
        let hook = json!({"url": receiver.url(), "enabled_events": ["*"], "secret": "s"});
        let webhook = crate::harness::validated("acct", hook);
        store.insert(&webhook).await.unwrap();
        store.close().await;
    }
    // A publisher of our own; it also declares the topology the worker will use. The whole
    // backlog is queued before the worker starts, so the kill lands mid-stream.
    let publisher = TestWorker::publisher_for(&prefix).await;
    let mut ids = HashSet::new();
    for _ in 0..EVENTS {
        let (id, body) = event("business.updated");
        publisher
            .publish(Some("acct"), "business.updated", &body)
            .await;
        ids.insert(id);
    }
    let mut first = spawn_worker(&prefix, &database_url, &key);
    receiver.wait_for(EVENTS / 5, Duration::from_secs(60)).await;
    first.start_kill().unwrap(); // SIGKILL
    first.wait().await.unwrap();
    let before_kill: HashSet<String> = receiver
        .received()
        .iter()
        .filter_map(|r| r.header("x-webhook-event-id"))
        .collect();
    assert!(before_kill.len() < EVENTS, "the kill came mid-stream");

    let mut second = spawn_worker(&prefix, &database_url, &key);
    receiver
        .wait_for_event_ids(&ids, Duration::from_secs(120))
        .await;
    second.start_kill().unwrap();
    second.wait().await.unwrap();
    publisher.delete_topology().await;
}

/// Sends SIGTERM to `child` and asserts it exits 0 within `limit`.
async fn terminate_and_expect_clean_exit(child: &mut Child, limit: Duration, why: &str) {
    let pid = child.id().expect("running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = tokio::time::timeout(limit, child.wait())
        .await
        .expect(why)
        .unwrap();
    assert!(status.success(), "{status}");
}

pub fn decode(key: &str) -> [u8; 32] {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(key)
        .unwrap()
        .try_into()
        .unwrap()
}

#[tokio::test]
async fn the_worker_binary_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}/term.db", dir.path().display());
    let prefix = unique_prefix();
    let broker = TestWorker::publisher_for(&prefix).await;
    let mut child = spawn_worker(&prefix, &database_url, &random_key());
    // Wait until it consumes, so that SIGTERM meets a running worker.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, consumers) = broker.queue_counts(&broker.names.incoming).await;
        if consumers > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker never consumed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    terminate_and_expect_clean_exit(
        &mut child,
        Duration::from_secs(30),
        "exits within the grace period",
    )
    .await;
    broker.delete_topology().await;
}

#[tokio::test]
async fn sigterm_interrupts_a_connect_to_a_broker_that_never_answers() {
    // Accepts TCP connections and never speaks AMQP: a connect that would hang.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("amqp://guest:guest@{}/%2f", silent.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            sockets.push(socket);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_webhook-worker"))
        .args(["run", "--role", "worker"])
        .env("WEBHOOK_WORKER__AMQP__URL", &url)
        .env(
            "WEBHOOK_WORKER__DATABASE__URL",
            format!("sqlite://{}/hang.db", dir.path().display()),
        )
        .env("WEBHOOK_WORKER__DATABASE__ENCRYPTION_KEY", random_key())
        .env("WEBHOOK_WORKER__API__LISTEN", "127.0.0.1:0")
        .env("WEBHOOK_WORKER__LOG__LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the worker binary");
    tokio::time::sleep(Duration::from_secs(2)).await;
    terminate_and_expect_clean_exit(
        &mut child,
        Duration::from_secs(10),
        "exits although the connect never finished",
    )
    .await;
    held.abort();
}
