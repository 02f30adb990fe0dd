//! 10,000 events while three replicas drain them, and one node of the cluster SIGKILLed
//! mid-stream, then started again: the node that leads `<prefix>.incoming`, or the node one
//! replica consumes from. Every event is delivered, the duplicates are counted and printed
//! (only what replicas held unacked on a lost connection comes again), no message is left in
//! any queue of the prefix, and every replica is ready again.

use std::time::Instant;

use crate::cluster::{self, ClusterGuard};
use crate::deployment::{Deployment, READY_LIMIT, REPLICAS};
use crate::support::{
    eventually,
    fault_scenario::{hook, slow_receiver, Stream, PREFETCH},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_node_that_leads_incoming_mid_stream_loses_none_of_10000_events() {
    let cluster = ClusterGuard::running();
    let receiver = slow_receiver().await;
    let deployment = Deployment::start(&[hook(&receiver)], "[\"500ms\"]").await;
    let incoming = &deployment.topology.names.incoming;
    let victim = cluster::leader(incoming)
        .await
        .expect("incoming has a leader");
    // Which replicas lose their connection with it (their unacked messages come again).
    let mut nodes = Vec::new();
    for i in 0..REPLICAS {
        nodes.push(deployment.consuming_node(i).await);
    }
    let what = format!(
        "the incoming queue's leader (node {victim}; replicas on nodes {nodes:?}) SIGKILLed"
    );
    let broker = deployment.broker_on(cluster::other_than(victim)).await;
    let stream = Stream::publish(&broker, &receiver).await;
    stream.until_a_fifth_delivered().await;
    let before = stream.tally();
    let killed = Instant::now();
    cluster.kill(victim);
    assert!(!before.all_delivered(), "the kill came mid-stream");
    let new_leader = eventually(READY_LIMIT, "another node leading incoming", || async {
        cluster::leader(incoming).await.filter(|n| *n != victim)
    })
    .await;
    let restarted = cluster.restart(victim);

    let after = stream.until_all_delivered().await;
    let delivered_in = killed.elapsed();
    assert!(
        restarted.await.unwrap_or(false),
        "node {victim} started again"
    );
    deployment.assert_drained_and_ready(&broker).await;
    // Each replica that lost its connection gives back at most a prefetch of each queue.
    after.assert_duplicates_within(PREFETCH * REPLICAS);
    println!(
        "cluster suite: {what} after {} delivered: {} of {} events delivered, {} duplicates, \
         all delivered {:.1} s after the kill (node {new_leader} leads now)",
        before.delivered,
        after.delivered,
        after.published,
        after.duplicates,
        delivered_in.as_secs_f64()
    );
    deployment.stop(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_node_a_replica_consumes_from_makes_it_fail_over_and_loses_none() {
    let cluster = ClusterGuard::running();
    let receiver = slow_receiver().await;
    let deployment = Deployment::start(&[hook(&receiver)], "[\"500ms\"]").await;
    let incoming = &deployment.topology.names.incoming;
    let leader = cluster::leader(incoming)
        .await
        .expect("incoming has a leader");
    // A replica on a node that does not lead incoming, when there is one: then the loss is the
    // replica's own, not the queue's.
    let mut nodes = Vec::new();
    for i in 0..REPLICAS {
        nodes.push(deployment.consuming_node(i).await);
    }
    let replica = nodes.iter().position(|n| *n != leader).unwrap_or(0);
    let victim = nodes[replica];
    let what = format!(
        "node {victim}, replica {}'s (incoming led by node {leader}), SIGKILLed",
        replica + 1
    );
    let broker = deployment.broker_on(cluster::other_than(victim)).await;
    let stream = Stream::publish(&broker, &receiver).await;
    stream.until_a_fifth_delivered().await;
    let before = stream.tally();
    let killed = Instant::now();
    cluster.kill(victim);
    assert!(!before.all_delivered(), "the kill came mid-stream");
    let moved_to = deployment.until_moved_off(replica, victim).await;
    deployment.replicas[replica]
        .wait_for_readyz(200, READY_LIMIT)
        .await;
    let failed_over_in = killed.elapsed();
    let restarted = cluster.restart(victim);

    let after = stream.until_all_delivered().await;
    let delivered_in = killed.elapsed();
    assert!(
        restarted.await.unwrap_or(false),
        "node {victim} started again"
    );
    deployment.assert_drained_and_ready(&broker).await;
    after.assert_duplicates_within(PREFETCH * REPLICAS);
    println!(
        "cluster suite: {what} after {} delivered: {} of {} events delivered, {} duplicates; \
         the replica consumed from node {moved_to} and was ready {:.1} s after the kill, all \
         delivered {:.1} s after it",
        before.delivered,
        after.delivered,
        after.published,
        after.duplicates,
        failed_over_in.as_secs_f64(),
        delivered_in.as_secs_f64()
    );
    deployment.stop(&broker).await;
}
