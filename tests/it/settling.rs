//! What happens to a message that cannot be settled at once: bounded redelivery into the dead
//! letters with a reason, failed outcomes published again alone (never the whole event), a
//! deleted queue declared again, and dead letters that survive being listed.

use std::time::Duration;

use lapin::{
    options::{BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions},
    types::{AMQPValue, FieldTable},
    BasicProperties,
};
use serde_json::json;
use uuid::Uuid;
use webhook_worker::{
    dead_letters,
    queue::job::{self, Job},
};

use crate::support::{event, eventually, InProcessWorker, TestReceiver};

const WAIT: Duration = Duration::from_secs(30);

fn text(headers: &FieldTable, name: &str) -> Option<String> {
    webhook_worker::queue::header_text(Some(headers), name)
}

/// Replaces the queue the first retry goes to with one that refuses every publish (nack), as a
/// full or broken queue would.
async fn make_first_retry_queue_refuse(worker: &InProcessWorker) -> String {
    let queue = worker.names.retry(Duration::from_millis(200));
    worker
        .channel
        .queue_delete(&queue, QueueDeleteOptions::default())
        .await
        .unwrap();
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongLongInt(0));
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    worker
        .channel
        .queue_declare(&queue, QueueDeclareOptions::default(), args)
        .await
        .unwrap();
    queue
}

#[tokio::test]
async fn a_retry_the_database_cannot_serve_is_redelivered_at_most_the_limit_then_dead_lettered() {
    let worker = InProcessWorker::start("[amqp]\ndelivery_limit = 3").await;
    // The database goes away; the job's webhook is not in the registry, so it must be read.
    worker.app().registry().store().close().await;
    let job = Job {
        webhook_id: Uuid::new_v4(),
        account_id: "acct".into(),
        attempt: 2,
        last_error: Some("http_503".into()),
        parks: 0,
        parked_since: None,
    };
    let (id, body) = event("business.updated");
    worker
        .channel
        .basic_publish(
            "",
            &worker.names.deliveries,
            BasicPublishOptions::default(),
            &body,
            BasicProperties::default()
                .with_delivery_mode(2)
                .with_message_id(id.as_str().into())
                .with_headers(job.headers()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    worker.wait_for_ready(&worker.names.dead, 1, WAIT).await;
    let listed = dead_letters::list(&worker.config, 10).await.unwrap();
    assert_eq!(listed[0].reason.as_deref(), Some("delivery_limit"));
    assert_eq!(listed[0].webhook_id, Some(job.webhook_id.to_string()));
    let dead = worker.dead_letters(1, WAIT).await;
    let (headers, dead_body) = &dead[0];
    assert_eq!(dead_body, &body);
    // Dead-lettered by the worker as it came round the last time, naming its webhook (not by
    // the broker, which names none).
    assert_eq!(
        text(headers, job::DEAD_REASON).as_deref(),
        Some("delivery_limit")
    );
    let requeued = "settles_total{outcome=\"requeued\"}";
    let handled = worker.metric(requeued);
    assert!(
        (1..=3).contains(&handled),
        "requeued {handled} times: at most the 3 the limit allows"
    );
    // Nothing loops: it is not seen again.
    worker.until_quiet(|| worker.metric(requeued)).await;
    assert_eq!(worker.metric(requeued), handled);
    worker
        .wait_for_ready(&worker.names.deliveries, 0, WAIT)
        .await;
    worker.stop().await;
}

#[tokio::test]
async fn listing_the_dead_letters_30_times_loses_none_of_them() {
    let worker = InProcessWorker::start("").await;
    for _ in 0..3 {
        worker
            .publish(Some("acct"), "business.updated", b"not json")
            .await;
    }
    let dead = worker.names.dead.clone();
    worker.wait_for_ready(&dead, 3, WAIT).await;
    for round in 0..30 {
        let listed = dead_letters::list(&worker.config, 10).await.unwrap();
        assert_eq!(listed.len(), 3, "listing {round}");
        assert!(listed
            .iter()
            .all(|l| l.reason.as_deref() == Some("invalid_json")));
    }
    worker.wait_for_ready(&dead, 3, WAIT).await;
    worker.stop().await;
}

#[tokio::test]
async fn a_deleted_retry_queue_is_declared_again_and_the_retry_still_happens() {
    let worker = InProcessWorker::start("").await;
    let receiver = TestReceiver::start().await;
    receiver.plan(&[503]);
    worker.subscribe(&receiver).await;
    worker
        .channel
        .queue_delete(
            &worker.names.retry(Duration::from_millis(200)),
            QueueDeleteOptions::default(),
        )
        .await
        .unwrap();
    let (id, _) = worker.publish_event().await;
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(got[1].json()["id"], id.as_str());
    assert_eq!(got[1].header("x-webhook-attempt").as_deref(), Some("2"));
    worker.until_quiet(|| receiver.count()).await;
    assert_eq!(receiver.count(), 2, "no attempt was made twice");
    worker.stop().await;
}

/// Three webhooks for every event: two that take it, one that answers 503 once, whose retry
/// job the broker refuses (see [`make_first_retry_queue_refuse`]; the refusing queue is
/// returned).
async fn two_delivered_one_refused(
    worker: &InProcessWorker,
) -> (Vec<TestReceiver>, TestReceiver, String) {
    let delivered = vec![TestReceiver::start().await, TestReceiver::start().await];
    let failing = TestReceiver::start().await;
    failing.plan(&[503]);
    for receiver in delivered.iter().chain([&failing]) {
        worker.subscribe(receiver).await;
    }
    let queue = make_first_retry_queue_refuse(worker).await;
    (delivered, failing, queue)
}

#[tokio::test]
async fn when_one_of_three_outcomes_fails_to_publish_only_it_is_published_again() {
    let worker = InProcessWorker::start("").await;
    let (delivered, failing, queue) = two_delivered_one_refused(&worker).await;
    let (id, _) = worker.publish_event().await;
    let republished = "settles_total{outcome=\"republished\"}";
    worker.wait_for_metric(republished, 2, WAIT).await;
    // The broker takes retry jobs again (the worker re-declares the queue it finds missing).
    worker
        .channel
        .queue_delete(&queue, QueueDeleteOptions::default())
        .await
        .unwrap();
    let got = failing.wait_for(2, WAIT).await;
    assert_eq!(got[1].json()["id"], id.as_str());
    assert_eq!(got[1].header("x-webhook-attempt").as_deref(), Some("2"));
    let counts = || [&delivered[0], &delivered[1], &failing].map(TestReceiver::count);
    worker.until_quiet(counts).await;
    for receiver in &delivered {
        assert_eq!(
            receiver.count(),
            1,
            "a delivered webhook gets the event once"
        );
    }
    assert_eq!(failing.count(), 2);
    assert_eq!(worker.metric("settles_total{outcome=\"requeued\"}"), 0);
    worker.stop().await;
}

#[tokio::test]
async fn outcomes_still_unpublishable_after_the_settle_timeout_go_to_the_dead_letters() {
    let worker =
        InProcessWorker::start("[amqp]\nconfirm_timeout = \"1s\"\nsettle_timeout = \"2s\"").await;
    let receiver = TestReceiver::start().await;
    receiver.always(503);
    worker
        .add_webhook(
            "acct",
            json!({"url": receiver.url(), "enabled_events": ["*"]}),
        )
        .await;
    make_first_retry_queue_refuse(&worker).await;
    let (id, body) = worker.publish_event().await;
    let dead = worker.dead_letters(1, WAIT).await;
    let (headers, dead_body) = &dead[0];
    assert_eq!(dead_body, &body);
    assert_eq!(
        text(headers, "x-first-death-reason").as_deref(),
        Some("rejected")
    );
    assert_eq!(worker.metric("settles_total{outcome=\"rejected\"}"), 1);
    worker.until_quiet(|| receiver.count()).await;
    let got = receiver.received();
    assert_eq!(got.len(), 1, "the attempt was not made again");
    assert_eq!(got[0].json()["id"], id.as_str());
    worker.stop().await;
}

#[tokio::test]
async fn a_message_a_crash_looping_worker_keeps_taking_ends_in_the_dead_letters() {
    // No worker: the test plays one that takes the event and dies before acking, again and again.
    let config = crate::support::test_config(
        &crate::support::unique_prefix(),
        "sqlite::memory:",
        "[amqp]\ndelivery_limit = 2",
    );
    let broker =
        crate::support::Broker::connect(webhook_worker::queue::Topology::from_config(&config))
            .await;
    let (_, body) = event("business.updated");
    broker
        .publish(Some("acct"), "business.updated", &body)
        .await;
    // Each round takes the message and "crashes" until the broker dead-letters it.
    let taken = std::cell::Cell::new(0);
    eventually(
        WAIT,
        "the message dead-lettered at the delivery limit",
        || async {
            if broker.queue_counts(&broker.names.dead).await.0 == 1 {
                return true;
            }
            let connection = lapin::Connection::connect(
                crate::support::AMQP_URL,
                lapin::ConnectionProperties::default(),
            )
            .await
            .unwrap();
            let channel = connection.create_channel().await.unwrap();
            let message = channel
                .basic_get(
                    &broker.names.incoming,
                    lapin::options::BasicGetOptions::default(),
                )
                .await
                .unwrap();
            // The "crash": the connection goes away with the message unacked.
            let _ = connection.close(320, "crashed").await;
            if message.is_some() {
                taken.set(taken.get() + 1);
            }
            false
        },
    )
    .await;
    let taken = taken.get();
    assert!(
        taken <= 3,
        "taken {taken} times: once plus at most 2 redeliveries"
    );
    let dead = broker.dead_letters(1, WAIT).await;
    assert_eq!(dead[0].1, body);
    assert_eq!(
        text(&dead[0].0, "x-first-death-reason").as_deref(),
        Some("delivery_limit")
    );
    broker.delete_topology().await;
}

#[tokio::test]
async fn outcomes_still_being_published_at_shutdown_are_settled_within_the_grace_period() {
    let mut worker = InProcessWorker::start("").await;
    let (delivered, _failing, queue) = two_delivered_one_refused(&worker).await;
    worker.publish_event().await;
    worker
        .wait_for_metric("settles_total{outcome=\"republished\"}", 1, WAIT)
        .await;
    // Shutdown begins while the retry job is refused; then the broker takes it again.
    let app = worker.app.take().expect("running");
    let stopping = tokio::spawn(app.stop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    worker
        .channel
        .queue_delete(&queue, QueueDeleteOptions::default())
        .await
        .unwrap();
    stopping.await.unwrap();
    // The event was acked, not handed back to be attempted again; the retry job waits in the
    // deliveries queue for the next worker.
    assert_eq!(worker.queue_counts(&worker.names.incoming).await.0, 0);
    worker
        .wait_for_ready(&worker.names.deliveries, 1, WAIT)
        .await;
    for receiver in &delivered {
        assert_eq!(receiver.count(), 1);
    }
    worker.stop().await;
}
