//! Fan-out in batches (`delivery.fan_out_batch`): an event for 250 webhooks travels as a few
//! batch jobs, each carrying the event once, and reaches each webhook once; a failing webhook
//! among them gets its own retries; a worker killed mid-batch loses nothing and repeats at most
//! that batch; a batch over the delivery limit (or whose handling panics) becomes one dead letter
//! per webhook; no batch's headers outgrow a frame; and a first-attempt job of the kind older
//! versions made still works.

use std::{collections::HashMap, time::Duration};

use lapin::{options::BasicPublishOptions, BasicProperties};
use serde_json::json;
use uuid::Uuid;
use webhook_worker::{
    queue::{batch::Batch, job::Job},
    tools::dead_letters,
};

use crate::support::{
    event, random_key, seed_webhooks, unique_prefix, until_quiet, InProcessWorker, Received,
    TestReceiver, WorkerProcess, WorkerProcessBuilder,
};

const WAIT: Duration = Duration::from_secs(60);
const WEBHOOKS: usize = 250;
const BATCHES: &str = "fan_out_batches_total";

/// Requests by path: each webhook of these tests has a path of its own (`/hook/<n>`).
fn by_path(received: &[Received]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for request in received {
        *counts.entry(request.path.clone()).or_default() += 1;
    }
    counts
}

/// `n` webhooks of `receiver`, each at a path of its own.
fn hooks(receiver: &TestReceiver, n: usize) -> Vec<serde_json::Value> {
    (0..n)
        .map(|i| json!({"url": format!("{}/{i}", receiver.url()), "enabled_events": ["*"]}))
        .collect()
}

async fn add_hooks(worker: &InProcessWorker, account: &str, receiver: &TestReceiver, n: usize) {
    for hook in hooks(receiver, n) {
        worker.add_webhook(account, hook).await;
    }
}

#[tokio::test]
async fn an_event_for_250_webhooks_goes_as_three_batches_and_reaches_each_once() {
    let worker =
        InProcessWorker::start("[delivery]\nfan_out_threshold = 32\nfan_out_batch = 100").await;
    let receiver = TestReceiver::start().await;
    add_hooks(&worker, "acct", &receiver, WEBHOOKS).await;
    let (id, body) = event("business.updated");
    worker
        .publish(Some("acct"), "business.updated", &body)
        .await;
    receiver.wait_for(WEBHOOKS, WAIT).await;
    worker.until_quiet(|| receiver.count()).await;
    let received = receiver.received();
    let counts = by_path(&received);
    assert_eq!(counts.len(), WEBHOOKS, "every webhook");
    assert!(counts.values().all(|&n| n == 1), "each once: {counts:?}");
    assert!(received
        .iter()
        .all(
            |r| r.header("x-webhook-event-id").as_deref() == Some(id.as_str())
                && r.header("x-webhook-attempt").as_deref() == Some("1")
        ));
    assert_eq!(
        worker.metric(BATCHES),
        3,
        "250 webhooks in batches of at most 100"
    );
    assert_eq!(worker.metric("settles_total{outcome=\"fanned_out\"}"), 1);
    worker.stop().await;
}

#[tokio::test]
async fn a_failing_webhook_in_a_batch_gets_its_retries_and_the_others_one_delivery() {
    let worker =
        InProcessWorker::start("[delivery]\nfan_out_threshold = 32\nfan_out_batch = 100").await;
    let healthy = TestReceiver::start().await;
    add_hooks(&worker, "acct", &healthy, WEBHOOKS - 1).await;
    let failing = TestReceiver::start().await;
    // Two failures, then delivered: attempts 1, 2 and 3 (the test schedule: 200 ms, 400 ms).
    failing.plan(&[503, 503]);
    worker
        .add_webhook(
            "acct",
            json!({"url": failing.url(), "enabled_events": ["*"]}),
        )
        .await;
    let (_, body) = event("business.updated");
    worker
        .publish(Some("acct"), "business.updated", &body)
        .await;
    failing.wait_for(3, WAIT).await;
    healthy.wait_for(WEBHOOKS - 1, WAIT).await;
    worker
        .until_quiet(|| (healthy.count(), failing.count()))
        .await;
    let attempts: Vec<_> = failing
        .received()
        .iter()
        .map(|r| r.header("x-webhook-attempt").unwrap_or_default())
        .collect();
    assert_eq!(attempts, ["1", "2", "3"], "its own retries, then delivered");
    let counts = by_path(&healthy.received());
    assert_eq!(counts.len(), WEBHOOKS - 1);
    assert!(
        counts.values().all(|&n| n == 1),
        "the others once each: {counts:?}"
    );
    assert_eq!(worker.metric(BATCHES), 3);
    worker.stop().await;
}

/// A batch for webhooks whose rows must be read while the database is gone: put back until
/// the delivery limit, then one dead letter per webhook, each naming it.
#[tokio::test]
async fn a_batch_over_the_delivery_limit_becomes_a_dead_letter_for_each_webhook() {
    let worker = InProcessWorker::start("[amqp]\ndelivery_limit = 2").await;
    worker.app().registry().store().close().await;
    let batch = Batch {
        account_id: "acct".into(),
        webhook_ids: (0..3).map(|_| Uuid::new_v4()).collect(),
    };
    let (id, body) = event("business.updated");
    publish_job(&worker, &id, &body, batch.headers()).await;
    worker.wait_for_ready(&worker.names.dead, 3, WAIT).await;
    let listed = dead_letters::list(&worker.config, 10).await.unwrap();
    let mut named: Vec<_> = listed.iter().filter_map(|l| l.webhook_id.clone()).collect();
    named.sort();
    let mut owed: Vec<_> = batch.webhook_ids.iter().map(Uuid::to_string).collect();
    owed.sort();
    assert_eq!(named, owed, "one letter per webhook of the batch");
    assert!(listed
        .iter()
        .all(|l| l.reason.as_deref() == Some("delivery_limit")));
    // Nothing loops: no more letters once it is quiet.
    worker
        .until_quiet(|| worker.metric("settles_total{outcome=\"requeued\"}"))
        .await;
    assert_eq!(
        dead_letters::list(&worker.config, 10).await.unwrap().len(),
        3
    );
    worker.stop().await;
}

/// Needs the `test-hooks` feature (a message with `x-test-panic` makes its handling panic).
#[tokio::test]
async fn a_batch_whose_handling_panics_becomes_a_panic_letter_for_each_webhook() {
    let worker = InProcessWorker::start("").await;
    let batch = Batch {
        account_id: "acct".into(),
        webhook_ids: (0..3).map(|_| Uuid::new_v4()).collect(),
    };
    let mut headers = batch.headers();
    headers.insert(
        "x-test-panic".into(),
        lapin::types::AMQPValue::LongString("1".into()),
    );
    let (id, body) = event("business.updated");
    publish_job(&worker, &id, &body, headers).await;
    worker.wait_for_ready(&worker.names.dead, 3, WAIT).await;
    let listed = dead_letters::list(&worker.config, 10).await.unwrap();
    let mut named: Vec<_> = listed.iter().filter_map(|l| l.webhook_id.clone()).collect();
    named.sort();
    let mut owed: Vec<_> = batch.webhook_ids.iter().map(Uuid::to_string).collect();
    owed.sort();
    assert_eq!(named, owed, "one letter per webhook of the batch");
    assert!(listed.iter().all(|l| l.reason.as_deref() == Some("panic")));
    worker
        .until_quiet(|| worker.metric("handler_panics_total"))
        .await;
    assert_eq!(worker.metric("handler_panics_total"), 1);
    worker.stop().await;
}

#[tokio::test]
async fn a_first_attempt_job_of_an_older_version_is_still_delivered() {
    let worker = InProcessWorker::start("").await;
    let receiver = TestReceiver::start().await;
    let webhook = worker.subscribe(&receiver).await;
    let job = Job {
        webhook_id: webhook.id,
        account_id: webhook.account_id.clone(),
        attempt: 1,
        last_error: None,
        parks: 0,
        parked_since: None,
    };
    let (id, body) = event("business.updated");
    publish_job(&worker, &id, &body, job.headers()).await;
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(
        got[0].header("x-webhook-event-id").as_deref(),
        Some(id.as_str())
    );
    assert_eq!(got[0].header("x-webhook-attempt").as_deref(), Some("1"));
    worker.until_quiet(|| receiver.count()).await;
    assert_eq!(receiver.count(), 1);
    worker.stop().await;
}

/// An account id so long (12,000 bytes) that no batch leaves half the 16 KiB frame free: the
/// two batches of 125 that `fan_out_batch = 200` would make take 16.6 KB of headers, more than
/// a frame, and RabbitMQ would close the publishing connection at each try. None is made: each
/// webhook gets a job of its own (12 KB of headers, as the event had), and every one is
/// delivered.
#[tokio::test]
async fn an_account_id_too_long_for_a_batch_fans_out_one_job_per_webhook() {
    let worker =
        InProcessWorker::start("[delivery]\nfan_out_threshold = 32\nfan_out_batch = 200").await;
    let receiver = TestReceiver::start().await;
    let account = "a".repeat(12_000);
    add_hooks(&worker, &account, &receiver, WEBHOOKS).await;
    let (_, body) = event("business.updated");
    worker
        .publish(Some(&account), "business.updated", &body)
        .await;
    receiver.wait_for(WEBHOOKS, WAIT).await;
    worker.until_quiet(|| receiver.count()).await;
    assert_eq!(by_path(&receiver.received()).len(), WEBHOOKS);
    assert_eq!(receiver.count(), WEBHOOKS, "each once");
    assert_eq!(worker.metric(BATCHES), 0, "no batch");
    assert_eq!(worker.metric("settles_total{outcome=\"rejected\"}"), 0);
    worker.stop().await;
}

async fn publish_job(
    worker: &InProcessWorker,
    id: &str,
    body: &[u8],
    headers: lapin::types::FieldTable,
) {
    worker
        .channel
        .basic_publish(
            "",
            &worker.names.deliveries,
            BasicPublishOptions::default(),
            body,
            BasicProperties::default()
                .with_delivery_mode(2)
                .with_message_id(id.into())
                .with_headers(headers),
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

fn fan_out_worker(prefix: &str, database_url: &str, key: &str) -> WorkerProcess {
    WorkerProcessBuilder::new(prefix, database_url, key)
        .env("AMQP__PREFETCH", "1")
        .env("DELIVERY__FAN_OUT_BATCH", "50")
        .spawn()
}

/// One batch at a time (prefetch 1), the worker killed while its first batch of 50 is part
/// answered: started again, it delivers to every webhook, and repeats at most that batch (each
/// of its webhooks at most once more).
#[tokio::test]
async fn a_worker_killed_mid_batch_loses_nothing_and_repeats_at_most_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}/batch.db", dir.path().display());
    let (prefix, key) = (unique_prefix(), random_key());
    let receiver = TestReceiver::gated().await;
    seed_webhooks(&database_url, &key, "acct", &hooks(&receiver, WEBHOOKS)).await;
    let broker = InProcessWorker::publisher_for(&prefix).await;
    let mut first = fan_out_worker(&prefix, &database_url, &key);
    let (_, body) = event("business.updated");
    broker
        .publish(Some("acct"), "business.updated", &body)
        .await;
    // Prefetch 1 also makes the account's share of requests 1: they go one at a time. 40 are
    // answered, the 41st hangs (the rest of its batch waits, or is parked after 500 ms).
    receiver.release(40);
    receiver.wait_for(41, WAIT).await;
    first.kill().await;
    let before = by_path(&receiver.received()).len();
    assert!(
        before < WEBHOOKS,
        "killed mid-way ({before} webhooks reached)"
    );

    receiver.release(10_000);
    let mut second = fan_out_worker(&prefix, &database_url, &key);
    crate::support::eventually(WAIT, "every webhook reached", || async {
        let reached = by_path(&receiver.received()).len();
        if reached == WEBHOOKS {
            Ok(())
        } else {
            Err(format!("{reached} reached"))
        }
    })
    .await;
    let total = until_quiet(&broker, WAIT, || async {
        (receiver.count(), second.settles().await)
    })
    .await
    .0;
    eprintln!("killed mid-batch: {total} requests for {WEBHOOKS} webhooks");
    assert!(
        total <= WEBHOOKS + 50,
        "{total} requests: at most the batch of 50 repeated"
    );
    second.kill().await;
    broker.delete_topology().await;
}
