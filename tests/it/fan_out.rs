//! One event for 1,000 webhooks: split into one job per webhook, delivered to all of them, while
//! another account's events keep flowing. Prints the other account's delivery times and the test
//! process's peak memory (worker, receivers and test together) for the record.

use std::time::Duration;

use serde_json::json;

use crate::support::{event, eventually, until_stable, InProcessWorker, TestReceiver};

const WEBHOOKS: usize = 1_000;
const OTHER_EVENTS: usize = 20;

/// Peak resident memory of this process (VmHWM), in MiB.
fn peak_memory_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_for_1000_webhooks_reaches_all_while_other_accounts_keep_flowing() {
    let worker = InProcessWorker::start("[delivery]\nfan_out_threshold = 32").await;
    // The 1,000 endpoints answer about 500 requests a second in all, so the fan-out lasts a
    // couple of seconds and the other account's events are published while it runs.
    let many = std::sync::Arc::new(TestReceiver::gated().await);
    for _ in 0..WEBHOOKS {
        worker
            .add_webhook("big", json!({"url": many.url(), "enabled_events": ["*"]}))
            .await;
    }
    let other = TestReceiver::start().await;
    worker.subscribe(&other).await;
    let before = peak_memory_mib();

    let (big_id, big_body) = event("business.updated");
    worker
        .publish(Some("big"), "business.updated", &big_body)
        .await;
    let releaser = {
        let many = many.clone();
        tokio::spawn(async move {
            loop {
                many.release(25);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    many.wait_for(1, Duration::from_secs(30)).await;
    let mut times = Vec::new();
    for n in 1..=OTHER_EVENTS {
        let published = tokio::time::Instant::now();
        worker.publish_event().await;
        other.wait_for(n, Duration::from_secs(60)).await;
        times.push(published.elapsed());
    }
    let fanned_by_then = many.count();
    let got = many.wait_for(WEBHOOKS, Duration::from_secs(120)).await;
    assert!(got
        .iter()
        .all(|r| r.header("x-webhook-event-id").as_deref() == Some(big_id.as_str())));
    assert_eq!(
        worker.metric("settles_total{outcome=\"fanned_out\"}"),
        1,
        "the event was split into jobs"
    );
    worker.until_quiet(|| many.count()).await;
    assert_eq!(many.count(), WEBHOOKS, "each webhook got it once");
    releaser.abort();
    times.sort();
    eprintln!(
        "fan-out to {WEBHOOKS}: other account's {OTHER_EVENTS} events took min {:?}, median {:?}, \
         max {:?}; {fanned_by_then} of {WEBHOOKS} fan-out deliveries made when the last arrived; \
         peak memory of the test process {:?} MiB before the event, {:?} MiB after",
        times[0],
        times[OTHER_EVENTS / 2],
        times[OTHER_EVENTS - 1],
        before,
        peak_memory_mib(),
    );
    assert!(
        fanned_by_then < WEBHOOKS,
        "the other account's events arrived while the fan-out was still under way"
    );
    worker.stop().await;
}

#[tokio::test]
async fn an_event_below_the_threshold_has_at_most_its_share_of_requests_in_flight() {
    let worker = InProcessWorker::start(
        "[delivery]\nfan_out_threshold = 32\nmax_in_flight_per_event = 2\ntimeout = \"30s\"",
    )
    .await;
    let hanging = TestReceiver::gated().await;
    for _ in 0..5 {
        worker.subscribe(&hanging).await;
    }
    worker.publish_event().await;
    hanging.wait_for(2, Duration::from_secs(30)).await;
    // The requests hang, so the worker is never quiet: the count must hold still instead.
    until_stable(Duration::from_secs(30), || async { hanging.count() }).await;
    assert_eq!(
        hanging.count(),
        2,
        "two requests in flight, the others wait"
    );
    hanging.release(100);
    hanging.wait_for(5, Duration::from_secs(30)).await;
    assert_eq!(worker.metric("settles_total{outcome=\"fanned_out\"}"), 0);
    worker.stop().await;
}

/// The worker as its own process (the binary), for a figure of its memory alone: peak resident
/// memory (VmHWM) before and after one event fans out to 1,000 webhooks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_process_fans_out_to_1000_webhooks_and_its_peak_memory_is_printed() {
    use crate::{
        support::{random_key, unique_prefix},
        support::{seed_webhooks, WorkerProcessBuilder},
    };

    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}/fan.db", dir.path().display());
    let key = random_key();
    let prefix = unique_prefix();
    let many = TestReceiver::start().await;
    let hooks = vec![json!({"url": many.url(), "enabled_events": ["*"]}); WEBHOOKS];
    seed_webhooks(&database_url, &key, "big", &hooks).await;
    let broker = InProcessWorker::publisher_for(&prefix).await;
    let mut worker = WorkerProcessBuilder::new(&prefix, &database_url, &key).spawn();
    let pid = worker.child.id().expect("running");
    let peak = || {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map(|kib| kib / 1024)
    };
    // Ready: it consumes.
    eventually(Duration::from_secs(30), "the worker to consume", || async {
        broker.queue_counts(&broker.names.incoming).await.1 > 0
    })
    .await;
    let before = peak();
    let (id, body) = event("business.updated");
    let published = tokio::time::Instant::now();
    broker.publish(Some("big"), "business.updated", &body).await;
    let got = many.wait_for(WEBHOOKS, Duration::from_secs(120)).await;
    let took = published.elapsed();
    assert!(got
        .iter()
        .all(|r| r.header("x-webhook-event-id").as_deref() == Some(id.as_str())));
    eprintln!(
        "worker process: peak memory {before:?} MiB before the event, {:?} MiB after it reached \
         {WEBHOOKS} webhooks ({took:?})",
        peak()
    );
    worker.kill().await;
    broker.delete_topology().await;
}
