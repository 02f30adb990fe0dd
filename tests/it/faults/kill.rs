//! SIGKILL mid-stream: the worker binary is killed with 10,000 events in flight, then started
//! again on the same queues and database.

use std::time::Duration;

use crate::support::fault_scenario::{assert_settled, hook, slow_receiver, Stream, PREFETCH};
use crate::support::{
    random_key, seed_webhooks, unique_prefix, InProcessWorker, WorkerProcess, WorkerProcessBuilder,
};

fn worker(prefix: &str, database_url: &str, key: &str) -> WorkerProcess {
    WorkerProcessBuilder::new(prefix, database_url, key)
        .env("AMQP__PREFETCH", PREFETCH.to_string())
        .spawn()
}

#[tokio::test]
async fn a_worker_killed_with_10000_events_in_flight_loses_none_once_started_again() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}/kill.db", dir.path().display());
    let key = random_key();
    let prefix = unique_prefix();
    let receiver = slow_receiver().await;
    seed_webhooks(&database_url, &key, "acct", &[hook(&receiver)]).await;
    // The whole backlog is queued before the worker starts, so the kill lands mid-stream.
    let broker = InProcessWorker::publisher_for(&prefix).await;
    let stream = Stream::publish(&broker, &receiver).await;

    let mut first = worker(&prefix, &database_url, &key);
    stream.until_a_fifth_delivered().await;
    first.kill().await;
    let before = stream.tally();
    assert!(!before.all_delivered(), "the kill came mid-stream");

    let mut second = worker(&prefix, &database_url, &key);
    let after = stream.until_all_delivered().await;
    assert_settled(&broker, Duration::from_secs(30)).await;
    assert!(second.is_running(), "the second worker still runs");
    after.assert_duplicates_within(PREFETCH);
    after.report(&format!(
        "SIGKILL after {} delivered, then a restart",
        before.delivered
    ));
    second.kill().await;
    broker.delete_topology().await;
}
