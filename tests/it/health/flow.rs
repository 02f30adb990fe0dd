//! Flow control per endpoint: the limit finds an endpoint's rate limit. (Bursts, capacity and
//! a hanging endpoint beside a healthy one are timed in the `throughput` test binary.)

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{publish_burst, Behaviour, InProcessWorker, PacedReceiver};

const WAIT: Duration = Duration::from_secs(60);

async fn subscribe(worker: &InProcessWorker, receiver: &PacedReceiver, events: &str) {
    worker
        .add_webhook(
            "acct",
            json!({"url": receiver.url(), "enabled_events": [events]}),
        )
        .await;
}

#[tokio::test]
async fn an_endpoint_that_answers_429_above_4_in_flight_is_kept_at_6_or_fewer() {
    let worker = InProcessWorker::start(
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
