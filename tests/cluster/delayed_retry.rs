//! A retry waiting out its delay in `<prefix>.retry.3s` when the node that leads that queue is
//! SIGKILLed: the queue's new leader lets it expire into `deliveries` on time, and a replica
//! delivers it.

use std::time::Duration;

use serde_json::json;

use crate::cluster::{self, ClusterGuard};
use crate::deployment::{Deployment, READY_LIMIT};
use crate::support::{event, eventually, Behaviour, PacedReceiver};

/// The one delay of the schedule.
const DELAY: Duration = Duration::from_secs(3);
/// What a node's loss may add to the delay: the queue's election and the expiry's move to
/// `deliveries` on the new leader, a replica's reconnect when it was on that node.
const FAILOVER_ALLOWANCE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_parked_in_a_delay_queue_whose_leader_dies_is_still_delivered_on_time() {
    let cluster = ClusterGuard::running();
    let receiver = PacedReceiver::start(Behaviour {
        status: 503,
        ..Behaviour::default()
    })
    .await;
    let hook = json!({"url": receiver.url(), "enabled_events": ["*"], "secret": "s"});
    let deployment = Deployment::start(&[hook], "[\"3s\"]").await;
    let delay_queue = deployment.topology.names.retry(DELAY);
    let victim = cluster::leader(&delay_queue)
        .await
        .expect("the delay queue has a leader");
    let broker = deployment.broker_on(cluster::other_than(victim)).await;
    let (_, body) = event("business.updated");
    broker
        .publish(Some("acct"), "business.updated", &body)
        .await;

    let first = eventually(READY_LIMIT, "the first attempt", || async {
        receiver.arrivals().first().map(|a| a.at)
    })
    .await;
    receiver.change(|b| b.status = 200);
    broker.wait_for_ready(&delay_queue, 1, DELAY).await;
    cluster.kill(victim);
    let killed_after = first.elapsed();
    let restarted = cluster.restart(victim);

    let delivered = receiver
        .wait_for_delivered(1, DELAY + FAILOVER_ALLOWANCE + READY_LIMIT)
        .await;
    let waited = delivered - first;
    assert!(
        restarted.await.unwrap_or(false),
        "node {victim} started again"
    );
    deployment.assert_drained_and_ready(&broker).await;
    println!(
        "cluster suite: a 3 s retry, its delay queue's leader (node {victim}) SIGKILLed {} ms \
         into the wait: delivered {} ms after the first attempt",
        killed_after.as_millis(),
        waited.as_millis()
    );
    assert!(waited >= DELAY, "not before its delay: {waited:?}");
    assert!(
        waited <= DELAY + FAILOVER_ALLOWANCE,
        "on time: {waited:?} after the first attempt"
    );
    deployment.stop(&broker).await;
}
