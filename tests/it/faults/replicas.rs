//! Two replicas on one PostgreSQL and one RabbitMQ share 10,000 events for two webhooks: each
//! event reaches each webhook once (not once per replica), both replicas deliver, and when one
//! is killed mid-stream the other delivers the rest.

use std::time::Duration;

use crate::support::fault_scenario::{assert_settled, hook, slow_receiver, Stream, PREFETCH};
use crate::support::{
    random_key, seed_webhooks, unique_prefix, Backend, InProcessWorker, TestDb, WorkerProcess,
    WorkerProcessBuilder,
};

const DELIVERED: &str = "deliveries_total{outcome=\"delivered\"}";

fn replica(prefix: &str, database_url: &str, key: &str) -> WorkerProcess {
    WorkerProcessBuilder::new(prefix, database_url, key)
        .env("AMQP__PREFETCH", PREFETCH.to_string())
        .spawn()
}

#[tokio::test]
async fn two_replicas_share_10000_events_and_one_killed_mid_stream_loses_none() {
    let db = TestDb::new(Backend::Postgres).await;
    let key = random_key();
    let prefix = unique_prefix();
    let (a, b) = (slow_receiver().await, slow_receiver().await);
    seed_webhooks(db.url(), &key, "acct", &[hook(&a), hook(&b)]).await;
    let broker = InProcessWorker::publisher_for(&prefix).await;
    let mut first = replica(&prefix, db.url(), &key);
    let mut second = replica(&prefix, db.url(), &key);
    for worker in [&first, &second] {
        worker.wait_for_readyz(200, Duration::from_secs(60)).await;
    }
    let at_a = Stream::publish(&broker, &a).await;
    let at_b = at_a.at(&b);
    at_a.until_a_fifth_delivered().await;
    let (by_first, by_second) = (
        first.metric(DELIVERED).await,
        second.metric(DELIVERED).await,
    );
    assert!(
        by_first > 0 && by_second > 0,
        "both replicas deliver: {by_first} and {by_second}"
    );
    first.kill().await;
    let before = at_a.tally();
    assert!(!before.all_delivered(), "the kill came mid-stream");

    for (name, stream) in [("a", &at_a), ("b", &at_b)] {
        let after = stream.until_all_delivered().await;
        // Never a second copy per replica: only what the killed one held unacked.
        after.assert_duplicates_within(PREFETCH);
        after.report(&format!(
            "two replicas (they had delivered {by_first} and {by_second}), one SIGKILLed after \
             {} delivered, webhook {name}",
            before.delivered
        ));
    }
    assert_settled(&broker, Duration::from_secs(30)).await;
    assert!(second.is_running(), "the other replica still runs");
    assert_eq!(second.readyz().await, Some(200), "and is ready");
    assert_eq!(second.readiness_checks().await["broker"], "ok");
    second.kill().await;
    broker.delete_topology().await;
}
