//! The development tools, as built binaries against a running worker: `listen` checks each
//! delivery's signature and prints it; `publish` puts an event on the exchange that the worker
//! then delivers.

use std::{process::Stdio, time::Duration};

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};

use crate::support::{InProcessWorker, TestReceiver, AMQP_URL};

const WAIT: Duration = Duration::from_secs(30);

async fn next_line(lines: &mut StdoutLines) -> String {
    tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("a line in time")
        .expect("stdout readable")
        .expect("the listener is still running")
}

type StdoutLines = Lines<BufReader<tokio::process::ChildStdout>>;

/// `webhook-worker listen --port 0 <args>`: the process (killed when dropped), its output
/// lines, its banner and the URL the banner names.
async fn spawn_listen(args: &[&str]) -> (tokio::process::Child, StdoutLines, String, String) {
    let mut listener = tokio::process::Command::new(env!("CARGO_BIN_EXE_webhook-worker"))
        .args(["listen", "--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("listen starts");
    let mut lines = BufReader::new(listener.stdout.take().expect("stdout")).lines();
    let banner = next_line(&mut lines).await;
    let url = banner
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .expect("the banner names the address")
        .to_string();
    (listener, lines, banner, url)
}

#[tokio::test]
async fn listen_accepts_a_correctly_signed_delivery_and_flags_one_signed_with_another_secret() {
    let (_listener, mut lines, banner, url) =
        spawn_listen(&["--secret", "whsec_listen_right"]).await;
    assert!(banner.contains("checking signatures"), "{banner}");

    let worker = InProcessWorker::start("").await;
    for secret in ["whsec_listen_right", "whsec_listen_wrong"] {
        worker
            .add_webhook(
                "acct",
                json!({"url": url, "enabled_events": ["*"], "secret": secret}),
            )
            .await;
    }
    let (event_id, _) = worker.publish_event().await;
    let mut seen = vec![next_line(&mut lines).await, next_line(&mut lines).await];
    seen.sort();
    for line in &seen {
        assert!(
            line.contains(&format!("business.updated {event_id} attempt 1 ")),
            "{line}"
        );
        assert!(
            !line.contains("whsec_"),
            "the secret is never printed: {line}"
        );
    }
    assert!(seen.iter().any(|l| l.contains("signature ok ")), "{seen:?}");
    assert!(
        seen.iter().any(|l| l.contains("signature BAD ")),
        "{seen:?}"
    );
    worker.stop().await;
}

#[tokio::test]
async fn listen_checks_a_standard_webhooks_delivery_and_refuses_it_replayed() {
    let secret = webhook_worker::signing::new_standard_secret();
    let (_listener, mut lines, banner, url) =
        spawn_listen(&["--tolerance", "2m", "--secret", &secret]).await;
    assert!(banner.contains("tolerance 120s"), "{banner}");
    // The worker's delivery is checked both ways and accepted.
    let receiver = TestReceiver::start().await;
    let worker = InProcessWorker::start("").await;
    for url in [url.clone(), receiver.url()] {
        let body = json!({"url": url, "enabled_events": ["*"], "secret": secret,
            "signature_format": "standard_webhooks"});
        worker.add_webhook("acct", body).await;
    }
    let (event_id, _) = worker.publish_event().await;
    let line = next_line(&mut lines).await;
    assert!(
        line.contains(&format!("{event_id} attempt 1 signature ok ")),
        "{line}"
    );
    assert!(line.contains("webhook-signature ok"), "{line}");
    assert!(!line.contains(&secret["whsec_".len()..]), "{line}");
    // The same request again, as captured by the other receiver: refused as a replay.
    let captured = receiver.wait_for(1, WAIT).await.remove(0);
    let mut replay = reqwest::Client::new()
        .post(&url)
        .body(captured.body.clone());
    for (name, value) in &captured.headers {
        replay = replay.header(name, value);
    }
    let status = replay.send().await.expect("listen answers").status();
    assert_eq!(status.as_u16(), 400);
    let line = next_line(&mut lines).await;
    assert!(line.contains("REJECTED (400): replayed"), "{line}");
    worker.stop().await;
}

#[tokio::test]
async fn publish_puts_an_event_on_the_exchange_that_a_running_worker_delivers() {
    let worker = InProcessWorker::start("").await;
    let receiver = TestReceiver::start().await;
    worker.subscribe(&receiver).await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_webhook-worker"))
        .args(["publish", "--account-id", "acct"])
        .env("WEBHOOK_WORKER__AMQP__URL", AMQP_URL)
        .env("WEBHOOK_WORKER__AMQP__PREFIX", &*worker.config.amqp.prefix)
        .output()
        .await
        .expect("publish runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let event_id = stdout
        .split_whitespace()
        .nth(2)
        .expect("the event id is printed")
        .to_string();
    let received = receiver.wait_for(1, WAIT).await;
    assert_eq!(
        received[0].header("x-webhook-event-id").as_deref(),
        Some(event_id.as_str())
    );
    assert_eq!(received[0].json()["data"]["object"]["object"], "business");
    worker.stop().await;
}

#[tokio::test]
async fn publish_says_so_when_no_queue_would_keep_the_event() {
    let prefix = crate::support::unique_prefix();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_webhook-worker"))
        .args(["publish"])
        .env("WEBHOOK_WORKER__AMQP__URL", AMQP_URL)
        .env("WEBHOOK_WORKER__AMQP__PREFIX", &prefix)
        .output()
        .await
        .expect("publish runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("start the worker once"), "{stderr}");
    // The exchange it declared is the test's to remove.
    let connection = lapin::Connection::connect(AMQP_URL, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .exchange_delete(&format!("{prefix}.events"), Default::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn healthcheck_exits_0_against_a_ready_worker_and_non_zero_against_a_stopped_one() {
    let worker = InProcessWorker::start("").await;
    let url = format!("http://{}/readyz", worker.app().api_addr());
    let healthcheck = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_webhook-worker"))
            .args(["healthcheck", "--url", &url])
            .output()
    };
    let ready = healthcheck().await.expect("healthcheck runs");
    assert!(
        ready.status.success(),
        "{}",
        String::from_utf8_lossy(&ready.stderr)
    );
    assert!(String::from_utf8_lossy(&ready.stdout).contains("\"ready\""));
    worker.stop().await;
    let stopped = healthcheck().await.expect("healthcheck runs");
    assert!(!stopped.status.success());
    assert!(
        String::from_utf8_lossy(&stopped.stderr).contains("did not answer"),
        "{}",
        String::from_utf8_lossy(&stopped.stderr)
    );
}
