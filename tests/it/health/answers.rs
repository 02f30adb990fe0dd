//! What each answer means: Retry-After (seconds and HTTP date) delays the next attempt, 410
//! disables the webhook at once and dead-letters with `endpoint_gone`, and a webhook failing for
//! `delivery.disable_after` is disabled until re-enabled through the API.

use std::time::Duration;

use serde_json::json;

use crate::support::{eventually, Behaviour, InProcessWorker, PacedReceiver, RetryAfter};
use webhook_worker::queue::header_text;

const WAIT: Duration = Duration::from_secs(30);

async fn next_attempt_waits_for(retry_after: RetryAfter) {
    let worker =
        InProcessWorker::start("[delivery]\nretry_schedule = [\"200ms\", \"1s\", \"5s\"]").await;
    let receiver = PacedReceiver::start(Behaviour {
        status: 503,
        retry_after: Some(retry_after),
        ..Behaviour::default()
    })
    .await;
    worker
        .add_webhook(
            "acct",
            json!({"url": receiver.url(), "enabled_events": ["*"]}),
        )
        .await;
    worker.publish_event().await;
    eventually(Duration::from_secs(30), "the first attempt", || async {
        !receiver.arrivals().is_empty()
    })
    .await;
    receiver.change(|b| {
        b.status = 200;
        b.retry_after = None;
    });
    receiver.wait_for_delivered(1, WAIT).await;
    let arrivals = receiver.arrivals();
    assert_eq!(arrivals.len(), 2, "{arrivals:?}");
    let gap = arrivals[1].at.duration_since(arrivals[0].at);
    println!("{retry_after:?}: the next attempt came {gap:?} later");
    assert!(gap >= Duration::from_secs(3), "{retry_after:?}: {gap:?}");
    assert_eq!(arrivals[1].attempt, "2");
    worker.stop().await;
}

#[tokio::test]
async fn retry_after_in_seconds_on_a_503_delays_the_next_attempt() {
    next_attempt_waits_for(RetryAfter::Seconds(3)).await;
}

#[tokio::test]
async fn retry_after_as_an_http_date_on_a_503_delays_the_next_attempt() {
    next_attempt_waits_for(RetryAfter::DateIn(3)).await;
}

#[tokio::test]
async fn a_410_disables_the_webhook_at_once_and_dead_letters_with_endpoint_gone() {
    let worker = InProcessWorker::start("").await;
    let gone = PacedReceiver::start(Behaviour {
        status: 410,
        ..Behaviour::default()
    })
    .await;
    let webhook = worker
        .add_webhook("acct", json!({"url": gone.url(), "enabled_events": ["*"]}))
        .await;
    worker.publish_event().await;
    let (headers, _) = worker.dead_letters(1, WAIT).await.remove(0);
    assert_eq!(
        header_text(Some(&headers), "x-dead-reason").as_deref(),
        Some("endpoint_gone")
    );
    let stored = worker
        .app()
        .registry()
        .store()
        .get("acct", webhook.id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        stored.disabled_at.is_some(),
        "disabled_at is set in the database"
    );
    let registered = worker.app().registry().get(webhook.id).unwrap();
    assert!(registered.disabled_at.is_some(), "and in the registry");
    assert_eq!(
        worker.metric("webhooks_disabled_total{reason=\"endpoint_gone\"}"),
        1
    );
    worker.publish_event().await;
    worker.until_quiet(|| gone.arrivals().len()).await;
    assert_eq!(gone.arrivals().len(), 1, "no further attempt");
    worker.stop().await;
}
