//! `delivery.threads`: the consuming side on several threads, each a current-thread runtime with
//! broker connections and consumers of its own, sharing the pipeline (its limits, endpoint
//! health, fairness and in-flight claims). A burst is delivered once per event across them, both
//! threads consume, and the worker is ready only while both are connected.

use std::{collections::HashMap, time::Duration};

use crate::support::{rabbitmqctl, InProcessWorker, TestReceiver};

const WAIT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_delivery_threads_share_a_burst_and_deliver_each_event_once() {
    const EVENTS: usize = 3_000;
    let worker = InProcessWorker::start("[delivery]\nthreads = 2\n[amqp]\nprefetch = 64").await;
    let receiver = TestReceiver::start().await;
    worker.subscribe(&receiver).await;
    let names = worker.names.clone();
    // Each thread consumes both queues on a connection of its own.
    for queue in [&names.incoming, &names.deliveries] {
        let (_, consumers) = worker.queue_counts(queue).await;
        assert_eq!(consumers, 2, "{queue} has one consumer per delivery thread");
    }
    assert!(worker.app().readiness().broker_ok());

    let ids = worker
        .publish_burst("acct", &vec!["business.updated"; EVENTS])
        .await;
    let wanted = ids.iter().cloned().collect();
    receiver.wait_for_event_ids(&wanted, WAIT).await;
    // A repeat would come after the first: wait until nothing more arrives.
    worker.until_quiet(|| receiver.count()).await;
    let mut arrivals: HashMap<String, usize> = HashMap::new();
    for received in receiver.received() {
        let id = received.header("x-webhook-event-id").unwrap_or_default();
        *arrivals.entry(id).or_default() += 1;
    }
    let repeated = arrivals.values().filter(|n| **n > 1).count();
    assert_eq!(repeated, 0, "an event was delivered more than once");
    assert_eq!(arrivals.len(), EVENTS);
    // Both threads took part: each one's consuming connection was sent a good share of the
    // burst (the broker hands out messages round-robin over consumers with room).
    let body_bytes = EVENTS as u64 * 1_000;
    for thread in 0..2 {
        let name = format!(
            "webhook-worker {} consuming {thread}",
            worker.config.amqp.prefix
        );
        let sent = bytes_sent_to(&name);
        assert!(
            sent > body_bytes / 4,
            "thread {thread}'s consumer got {sent} bytes of the burst's ~{body_bytes}"
        );
    }
    worker.stop().await;
}

/// Bytes the broker has sent on the connection named `name`.
fn bytes_sent_to(name: &str) -> u64 {
    let output = rabbitmqctl()
        .args(["-q", "--no-table-headers", "list_connections"])
        .args(["client_properties", "send_oct"])
        .output()
        .expect("rabbitmqctl");
    assert!(
        output.status.success(),
        "rabbitmqctl list_connections failed"
    );
    let needle = format!("{{\"connection_name\",\"{name}\"}}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.contains(&needle))
        .filter_map(|line| line.rsplit('\t').next()?.trim().parse::<u64>().ok())
        .sum()
}
