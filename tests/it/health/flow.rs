//! Flow control per endpoint: a burst to a healthy endpoint is never parked, the limit finds
//! an endpoint's capacity and its rate limit, and a hanging endpoint neither slows a healthy one
//! nor churns: its parks back off and its deliveries end in the dead letters.

use std::time::{Duration, Instant};

use serde_json::json;

use webhook_worker::{app::Application, cli::Role};

use super::{
    publish_burst,
    receiver::{Behaviour, PacedReceiver},
    PARKED,
};
use crate::harness::TestWorker;

const WAIT: Duration = Duration::from_secs(60);

async fn subscribe(worker: &TestWorker, receiver: &PacedReceiver, events: &str) {
    worker
        .add_webhook(
            "acct",
            json!({"url": receiver.url(), "enabled_events": [events]}),
        )
        .await;
}

#[tokio::test]
async fn a_burst_of_2000_events_to_a_fast_endpoint_is_never_parked() {
    let worker = TestWorker::start("[amqp]\nprefetch = 256").await;
    let fast = PacedReceiver::start(Behaviour::default()).await;
    subscribe(&worker, &fast, "*").await;
    let (_, last_publish) = publish_burst(&worker, &["business.updated"; 2000]).await;
    let last_receipt = fast.wait_for_delivered(2000, WAIT).await;
    let after = last_receipt.saturating_duration_since(last_publish);
    println!("2,000 events: the last received {after:?} after the last publish");
    assert_eq!(worker.metric(PARKED), 0, "no delivery parked");
    assert!(
        after < Duration::from_secs(2),
        "all received {after:?} after the last publish"
    );
    worker.stop().await;
}

#[tokio::test]
async fn an_endpoint_serving_64_at_once_gets_a_burst_at_70_percent_of_its_capacity() {
    let worker = TestWorker::start(
        "[amqp]\nprefetch = 256\n[delivery]\nretry_schedule = [\"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\"]",
    )
    .await;
    let limited = PacedReceiver::start(Behaviour {
        latency: Duration::from_millis(50),
        capacity: 64,
        refuse_status: 503,
        ..Behaviour::default()
    })
    .await;
    subscribe(&worker, &limited, "*").await;
    // The burst waits in the queue while the worker is down, so that what is measured is the
    // worker and the endpoint, not how fast this test can publish.
    let mut worker = worker;
    worker.app.take().unwrap().stop().await;
    publish_burst(&worker, &["business.updated"; 5000]).await;
    let started = Instant::now();
    worker.app = Some(
        Application::start(worker.config.clone(), Role::Worker)
            .await
            .unwrap(),
    );
    let last = limited.wait_for_delivered(5000, WAIT).await;
    let first = limited.arrivals().iter().map(|a| a.at).min().unwrap();
    let rate = 5000.0 / last.duration_since(first).as_secs_f64();
    let refused = limited
        .arrivals()
        .iter()
        .filter(|a| a.status == 503)
        .count();
    println!(
        "5,000 events at {rate:.0}/s ({:.0} % of 1,280/s), {refused} refused, {:?} in all",
        rate / 12.8,
        started.elapsed()
    );
    assert_eq!(worker.metric(PARKED), 0, "no delivery parked");
    assert!(rate >= 0.7 * 1280.0, "{rate:.0} deliveries/s");
    worker.stop().await;
}

#[tokio::test]
async fn an_endpoint_that_answers_429_above_4_in_flight_is_kept_at_6_or_fewer() {
    let worker = TestWorker::start(
        "[amqp]\nprefetch = 256\n[delivery]\nretry_schedule = [\"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\"]",
    )
    .await;
    let limited = PacedReceiver::start(Behaviour {
        latency: Duration::from_millis(25),
        capacity: 4,
        refuse_status: 429,
        ..Behaviour::default()
    })
    .await;
    subscribe(&worker, &limited, "*").await;
    let started = Instant::now();
    let (ids, _) = publish_burst(&worker, &["business.updated"; 2500]).await;
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(started.elapsed())).await;
    limited.reset_max_in_flight();
    let before = limited.arrivals().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held = limited.max_in_flight();
    let during = limited.arrivals().len() - before;
    let refused = limited
        .arrivals()
        .iter()
        .filter(|a| a.status == 429)
        .count();
    println!("after 10 s: at most {held} in flight over 3 s ({during} requests); {refused} refused in all");
    assert!(
        during >= 100,
        "the stream was still flowing: {during} requests"
    );
    assert!(held <= 6, "{held} requests in flight at once");
    limited.wait_for_delivered(ids.len(), WAIT).await;
    worker.stop().await;
}

/// Publishes 2,000 events for `fast` and, between them, 200 `slow` ones; returns how long the
/// fast endpoint took to get its 2,000, from the first publish.
async fn fast_and_slow_round(worker: &TestWorker, fast: &PacedReceiver) -> Duration {
    let before = fast.delivered().len();
    let types: Vec<&str> = (0..2200)
        .map(|i| if i % 11 == 10 { "slow" } else { "fast" })
        .collect();
    let started = Instant::now();
    publish_burst(worker, &types).await;
    let last = fast.wait_for_delivered(before + 2000, WAIT).await;
    last.duration_since(started)
}

#[tokio::test]
async fn a_hanging_endpoint_beside_a_healthy_one_costs_it_at_most_20_percent() {
    let worker = TestWorker::start(
        "[amqp]\nprefetch = 256\n[delivery]\ntimeout = \"30s\"\nretry_schedule = [\"5s\", \"10s\"]",
    )
    .await;
    let fast = PacedReceiver::start(Behaviour::default()).await;
    subscribe(&worker, &fast, "fast").await;
    // Once to warm up (connections, the limit), once to measure, without and with the hanging
    // endpoint; its "slow" events are published either way (acked at once while unsubscribed).
    fast_and_slow_round(&worker, &fast).await;
    let alone = fast_and_slow_round(&worker, &fast).await;
    let hanging = PacedReceiver::hanging().await;
    subscribe(&worker, &hanging, "slow").await;
    let beside = fast_and_slow_round(&worker, &fast).await;
    let initial = worker.config.delivery.concurrency_initial as usize;
    println!(
        "2,000 events: {alone:?} alone, {beside:?} beside a hanging endpoint ({:+.0} %); \
         it held {} at once; parked {}",
        (beside.as_secs_f64() / alone.as_secs_f64() - 1.0) * 100.0,
        hanging.max_in_flight(),
        worker.metric(PARKED)
    );
    assert!(
        hanging.max_in_flight() <= initial,
        "the hanging endpoint held {} requests (limit {initial})",
        hanging.max_in_flight()
    );
    assert!(worker.metric(PARKED) > 0, "its deliveries were parked");
    assert!(
        beside.as_secs_f64() <= alone.as_secs_f64() * 1.2,
        "{beside:?} beside a hanging endpoint, {alone:?} alone"
    );
    worker.stop().await;
}
