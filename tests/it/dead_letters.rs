//! The dead-letter tools: listing changes nothing; replaying sends exhausted deliveries back for
//! a fresh first attempt and leaves poison where it is; the built binary's list and replay say
//! what they found, and its replay, off a terminal, shows its progress in plain lines and why it
//! skipped each letter.

use std::{process::Stdio, time::Duration};

use webhook_worker::tools::dead_letters;

use crate::support::{eventually, InProcessWorker, TestReceiver, AMQP_URL};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn exhausted_deliveries_are_listed_then_replayed_once_the_endpoint_is_fixed() {
    let worker = InProcessWorker::start("[delivery]\nretry_schedule = []").await;
    let receiver = TestReceiver::start().await;
    receiver.always(503);
    let webhook = worker.subscribe(&receiver).await;
    let (id, _) = worker.publish_event().await;
    worker
        .publish(Some("acct"), "business.updated", b"not json")
        .await;
    worker
        .wait_for_metric("deliveries_total{outcome=\"dead_lettered\"}", 1, WAIT)
        .await;
    worker
        .wait_for_metric("poison_events_total{reason=\"invalid_json\"}", 1, WAIT)
        .await;
    let dead = worker.names.dead.clone();
    worker.wait_for_ready(&dead, 2, WAIT).await;

    let listed = dead_letters::list(&worker.config, 10).await.unwrap();
    assert_eq!(listed.len(), 2);
    let exhausted = listed
        .iter()
        .find(|l| l.reason.as_deref() == Some("retries_exhausted"))
        .expect("the exhausted delivery is listed");
    assert_eq!(exhausted.event_id.as_deref(), Some(id.as_str()));
    assert_eq!(exhausted.webhook_id, Some(webhook.id.to_string()));
    assert_eq!(exhausted.detail.as_deref(), Some("http_503"));
    assert_eq!(exhausted.last_status, Some(503));
    let poison = listed
        .iter()
        .find(|l| l.reason.as_deref() == Some("invalid_json"))
        .expect("the poison message is listed");
    assert_eq!(poison.event_id, None, "a poison message has no event id");
    let detail = poison.detail.as_deref().unwrap_or_default();
    assert!(
        detail.starts_with("not JSON") && !detail.contains("invalid_json"),
        "the reason is said once: {detail}"
    );
    // The listing's connection hands every message back: none was taken.
    worker.wait_for_ready(&dead, 2, WAIT).await;

    // Recorded by webhook as well (the writer batches off the delivery path).
    let store = worker.app().registry().store().clone();
    let pending = || store.count_pending_dead_letters("acct", webhook.id);
    eventually(WAIT, "the letter recorded by webhook", || async {
        pending().await.unwrap() >= 1
    })
    .await;

    receiver.always(200);
    let summary = dead_letters::replay(&worker.config, 10, None)
        .await
        .unwrap();
    assert_eq!((summary.replayed, summary.skipped), (1, 1));
    // The replay told the letters by webhook: the tenant's redrive will not send it again.
    assert_eq!(pending().await.unwrap(), 0);
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(got[1].json()["id"], id.as_str());
    assert_eq!(got[1].header("x-webhook-attempt").as_deref(), Some("1"));
    // Only the poison message stays.
    worker.wait_for_ready(&dead, 1, WAIT).await;
    worker.stop().await;
}

#[tokio::test]
async fn the_replay_command_off_a_terminal_shows_plain_progress_lines_and_replays() {
    let worker = InProcessWorker::start("[delivery]\nretry_schedule = []").await;
    let receiver = TestReceiver::start().await;
    receiver.always(503);
    worker.subscribe(&receiver).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(worker.publish_event().await.0);
    }
    worker
        .publish(Some("acct"), "business.updated", b"not json")
        .await;
    let dead = worker.names.dead.clone();
    worker.wait_for_ready(&dead, 4, WAIT).await;

    let listed = dead_letters_command(&worker.config.amqp.prefix, "list").await;
    let stderr = String::from_utf8_lossy(&listed.stderr);
    assert!(listed.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&listed.stdout).lines().count(), 4);
    assert_eq!(
        stderr.trim(),
        format!(
            "dead-letters: 4 in {dead}, 4 shown (by reason: invalid_json 1, retries_exhausted 3)"
        )
    );

    receiver.always(200);
    // stderr is a pipe here, as in a cron job or a CI log: no bar, lines.
    let output = dead_letters_command(&worker.config.amqp.prefix, "replay").await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let summary: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("the summary on stdout is JSON");
    assert_eq!(summary, serde_json::json!({"replayed": 3, "skipped": 1}));
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some(format!("replay: 4 dead letters to look at in {dead}").as_str()),
        "{stderr}"
    );
    assert_eq!(
        lines.last().copied(),
        Some(
            format!(
                "replay: done: 4 looked at in {dead}, replayed 3, skipped 1 (not_replayable 1)"
            )
            .as_str()
        ),
        "{stderr}"
    );
    assert!(
        stderr.lines().any(|line| line
            == "replay: skipped a message with no event id (dead: invalid_json): not a delivery \
                owed to a webhook (poison stays where it is)"),
        "the poison message's skip is explained: {stderr}"
    );
    assert!(
        !stderr.contains('\r') && !stderr.contains('\u{1b}'),
        "no bar drawn off a terminal: {stderr:?}"
    );
    assert!(!stderr.contains("guest"), "the broker's URL is not shown");

    // 3 failed first attempts, then the 3 replayed ones, as fresh first attempts.
    let got = receiver.wait_for(6, WAIT).await;
    let mut replayed: Vec<String> = got[3..]
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap_or_default().to_string())
        .collect();
    replayed.sort();
    ids.sort();
    assert_eq!(replayed, ids);
    assert!(got[3..]
        .iter()
        .all(|r| r.header("x-webhook-attempt").as_deref() == Some("1")));
    worker.wait_for_ready(&dead, 1, WAIT).await;
    worker.stop().await;
}

#[tokio::test]
async fn a_replay_skips_a_letter_its_owner_already_redrove() {
    let worker = InProcessWorker::start("[delivery]\nretry_schedule = []").await;
    let receiver = TestReceiver::start().await;
    receiver.always(503);
    let webhook = worker.subscribe(&receiver).await;
    let (id, _) = worker.publish_event().await;
    let dead = worker.names.dead.clone();
    worker.wait_for_ready(&dead, 1, WAIT).await;
    let store = worker.app().registry().store().clone();
    eventually(WAIT, "the letter recorded by webhook", || async {
        store
            .count_pending_dead_letters("acct", webhook.id)
            .await
            .unwrap()
            >= 1
    })
    .await;

    receiver.always(200);
    let background = webhook_worker::redrive::Background::default();
    webhook_worker::redrive::start(&store, &worker.config, &background, "acct", webhook.id)
        .await
        .unwrap();
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(got[1].json()["id"], id.as_str());
    background.tasks.close();
    background.tasks.wait().await;

    // The broker's copy is still in the dead letters: the operator's replay leaves it.
    let summary = dead_letters::replay(&worker.config, 10, None)
        .await
        .unwrap();
    assert_eq!((summary.replayed, summary.skipped), (0, 1));
    worker.wait_for_ready(&dead, 1, WAIT).await;
    let received = worker.until_quiet(|| receiver.count()).await;
    assert_eq!(received, 2, "not sent a second time");
    worker.stop().await;
}

#[tokio::test]
async fn dead_letters_older_than_their_retention_are_pruned() {
    let worker = InProcessWorker::start(
        "[delivery]\nretry_schedule = []\n\
         [delivery_log]\ndead_letter_retention = \"2s\"\nprune_interval = \"200ms\"\n",
    )
    .await;
    let receiver = TestReceiver::start().await;
    receiver.always(503);
    let webhook = worker.subscribe(&receiver).await;
    worker.publish_event().await;
    let store = worker.app().registry().store().clone();
    let total = || async {
        let (_, total) = store
            .list_dead_letters("acct", webhook.id, 0, 1)
            .await
            .unwrap();
        total
    };
    eventually(WAIT, "the letter recorded", || async { total().await >= 1 }).await;
    eventually(WAIT, "the letter pruned", || async { total().await == 0 }).await;
    worker.stop().await;
}

#[tokio::test]
async fn the_list_command_says_so_when_the_queue_is_empty() {
    let worker = InProcessWorker::start("").await;
    let output = dead_letters_command(&worker.config.amqp.prefix, "list").await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(output.stdout.is_empty());
    assert_eq!(
        stderr.trim(),
        format!("dead-letters: {} is empty", worker.names.dead)
    );
    worker.stop().await;
}

/// `webhook-worker dead-letters <action>` on the queues of `prefix`, with stderr a pipe.
async fn dead_letters_command(prefix: &str, action: &str) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_webhook-worker"))
        .args(["dead-letters", action])
        .env_clear()
        .env("WEBHOOK_WORKER__AMQP__URL", AMQP_URL)
        .env("WEBHOOK_WORKER__AMQP__PREFIX", prefix)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("the binary runs")
}
