//! Two tenants side by side, one misbehaving: its endpoint fails slowly with a backlog queued,
//! dozens of its endpoints hang, or its endpoint answers, but only after 5 s. The other
//! account's 100 events, published one every 50 ms behind the noisy backlog, must each arrive
//! within 5 s of their publish (issue 16). Each test prints the quiet account's p50 / p99 / max.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use serde_json::json;

use crate::support::{event, Behaviour, InProcessWorker, PacedReceiver};

const QUIET: &str = "quiet";
const NOISY: &str = "noisy";
const QUIET_EVENTS: usize = 100;
const WITHIN: Duration = Duration::from_secs(5);

/// A worker with the default window and limits, a realistic retry schedule, and a short grace
/// (hanging requests are not waited for at the end).
async fn worker() -> InProcessWorker {
    InProcessWorker::start(
        "[amqp]\nprefetch = 256\n[delivery]\ntimeout = \"30s\"\n\
         retry_schedule = [\"5s\", \"30s\", \"2m\"]\n[shutdown]\ngrace = \"1s\"",
    )
    .await
}

async fn subscribe(worker: &InProcessWorker, account: &str, url: String, events: &str) {
    worker
        .add_webhook(account, json!({"url": url, "enabled_events": [events]}))
        .await;
}

/// Publishes the quiet account's events one every 50 ms and returns each one's latency from
/// its publish (confirmed) to its first 2xx at `receiver`, sorted.
async fn quiet_latencies(worker: &InProcessWorker, receiver: &PacedReceiver) -> Vec<Duration> {
    let mut published = HashMap::new();
    let mut pace = tokio::time::interval(Duration::from_millis(50));
    for _ in 0..QUIET_EVENTS {
        pace.tick().await;
        let (id, body) = event("business.updated");
        worker.publish(Some(QUIET), "business.updated", &body).await;
        published.insert(id, Instant::now());
    }
    receiver
        .wait_for_delivered(QUIET_EVENTS, Duration::from_secs(120))
        .await;
    let mut first: HashMap<String, Instant> = HashMap::new();
    for arrival in receiver.arrivals().into_iter().filter(|a| a.status == 200) {
        let at = first.entry(arrival.event_id).or_insert(arrival.at);
        *at = (*at).min(arrival.at);
    }
    let mut latencies: Vec<Duration> = published
        .iter()
        .map(|(id, sent)| first[id].saturating_duration_since(*sent))
        .collect();
    latencies.sort();
    latencies
}

fn report(scenario: &str, latencies: &[Duration], worker: &InProcessWorker) {
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    println!(
        "{scenario}: the quiet account's {} events p50 {:?}, p99 {:?}, max {:?}; parked {} \
         (endpoint busy {}, account busy {}, stalled {}, circuit open {})",
        latencies.len(),
        at(0.5),
        at(0.99),
        at(1.0),
        worker.metric("deliveries_total{outcome=\"parked\"}"),
        worker.metric("parks_total{reason=\"endpoint_busy\"}"),
        worker.metric("parks_total{reason=\"account_busy\"}"),
        worker.metric("parks_total{reason=\"stalled\"}"),
        worker.metric("parks_total{reason=\"circuit_open\"}"),
    );
    let worst = at(1.0);
    assert!(
        worst <= WITHIN,
        "{scenario}: a quiet account's event took {worst:?} (p50 {:?})",
        at(0.5)
    );
}

#[tokio::test]
async fn beside_an_account_failing_slowly_with_a_backlog_another_gets_its_events_within_5s() {
    let worker = worker().await;
    let failing = PacedReceiver::start(Behaviour {
        latency: Duration::from_millis(300),
        status: 503,
        ..Behaviour::default()
    })
    .await;
    let quiet = PacedReceiver::start(Behaviour::default()).await;
    subscribe(&worker, NOISY, failing.url(), "*").await;
    subscribe(&worker, QUIET, quiet.url(), "*").await;
    worker
        .publish_burst(NOISY, &["business.updated"; 3000])
        .await;
    let latencies = quiet_latencies(&worker, &quiet).await;
    report(
        "3,000 events failing slowly (503 after 300 ms)",
        &latencies,
        &worker,
    );
    assert!(
        !failing.arrivals().is_empty(),
        "the failing endpoint was tried"
    );
    worker.stop().await;
}

#[tokio::test]
async fn beside_an_account_with_dozens_of_hanging_webhooks_another_gets_its_events_within_5s() {
    const HANGING: usize = 60;
    let worker = worker().await;
    let hanging = PacedReceiver::hanging().await;
    let quiet = PacedReceiver::start(Behaviour::default()).await;
    for n in 0..HANGING {
        subscribe(
            &worker,
            NOISY,
            format!("{}?n={n}", hanging.url()),
            &format!("hang.{n}"),
        )
        .await;
    }
    subscribe(&worker, QUIET, quiet.url(), "*").await;
    let types: Vec<String> = (0..HANGING * 20)
        .map(|i| format!("hang.{}", i % HANGING))
        .collect();
    let types: Vec<&str> = types.iter().map(String::as_str).collect();
    worker.publish_burst(NOISY, &types).await;
    let latencies = quiet_latencies(&worker, &quiet).await;
    report("60 hanging webhooks, 20 events each", &latencies, &worker);
    let share = worker.config.account_share();
    assert!(
        hanging.max_in_flight() <= share,
        "the hanging account held {} requests (its share {share})",
        hanging.max_in_flight()
    );
    worker.stop().await;
}

#[tokio::test]
async fn beside_an_account_whose_endpoint_takes_5s_another_gets_its_events_within_5s() {
    let worker = worker().await;
    let slow = PacedReceiver::start(Behaviour {
        latency: Duration::from_secs(5),
        ..Behaviour::default()
    })
    .await;
    let quiet = PacedReceiver::start(Behaviour::default()).await;
    subscribe(&worker, NOISY, slow.url(), "*").await;
    subscribe(&worker, QUIET, quiet.url(), "*").await;
    worker
        .publish_burst(NOISY, &["business.updated"; 2000])
        .await;
    let latencies = quiet_latencies(&worker, &quiet).await;
    report(
        "2,000 events to an endpoint answering after 5 s",
        &latencies,
        &worker,
    );
    worker.stop().await;
}
