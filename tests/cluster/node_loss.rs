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
    fault_scenario::{hook, slow_receiver, Stream, Tally, PREFETCH},
    Broker, PacedReceiver,
};

/// Where each test starts: the cluster up, a receiver taking 100 ms a request, three replicas
/// delivering to it, the node leading `incoming` and the node each replica consumes from.
struct Scene {
    cluster: ClusterGuard,
    receiver: PacedReceiver,
    deployment: Deployment,
    leader: usize,
    nodes: Vec<usize>,
}

/// The stream a node's loss cut: published through a node that stays, its tally when the node
/// was killed, and when that was.
struct Cut<'a> {
    broker: Broker,
    stream: Stream<'a>,
    before: Tally,
    killed: Instant,
}

impl Scene {
    async fn start() -> Self {
        let cluster = ClusterGuard::running();
        let receiver = slow_receiver().await;
        let deployment = Deployment::start(&[hook(&receiver)], "[\"500ms\"]").await;
        let leader = cluster::leader(&deployment.topology.names.incoming)
            .await
            .expect("incoming has a leader");
        let mut nodes = Vec::new();
        for i in 0..REPLICAS {
            nodes.push(deployment.consuming_node(i).await);
        }
        Self {
            cluster,
            receiver,
            deployment,
            leader,
            nodes,
        }
    }

    /// Publishes the 10,000 events through a node other than `victim`, and SIGKILLs `victim`
    /// once a fifth of them are delivered.
    async fn kill_mid_stream(&self, victim: usize) -> Cut<'_> {
        let broker = self.deployment.broker_on(cluster::other_than(victim)).await;
        let stream = Stream::publish(&broker, &self.receiver).await;
        stream.until_a_fifth_delivered().await;
        let before = stream.tally();
        let killed = Instant::now();
        self.cluster.kill(victim);
        assert!(!before.all_delivered(), "the kill came mid-stream");
        Cut {
            broker,
            stream,
            before,
            killed,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_node_that_leads_incoming_mid_stream_loses_none_of_10000_events() {
    let scene = Scene::start().await;
    let (victim, deployment) = (scene.leader, &scene.deployment);
    let incoming = &deployment.topology.names.incoming;
    // Which replicas lose their connection with it (their unacked messages come again).
    let what = format!(
        "the incoming queue's leader (node {victim}; replicas on nodes {:?}) SIGKILLed",
        scene.nodes
    );
    let Cut {
        broker,
        stream,
        before,
        killed,
    } = scene.kill_mid_stream(victim).await;
    let new_leader = eventually(READY_LIMIT, "another node leading incoming", || async {
        cluster::leader(incoming).await.filter(|n| *n != victim)
    })
    .await;
    let restarted = scene.cluster.restart(victim);

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
    drop(stream);
    scene.deployment.stop(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_node_a_replica_consumes_from_makes_it_fail_over_and_loses_none() {
    let scene = Scene::start().await;
    let (leader, deployment) = (scene.leader, &scene.deployment);
    // A replica on a node that does not lead incoming, when there is one: then the loss is the
    // replica's own, not the queue's.
    let replica = scene.nodes.iter().position(|n| *n != leader).unwrap_or(0);
    let victim = scene.nodes[replica];
    let what = format!(
        "node {victim}, replica {}'s (incoming led by node {leader}), SIGKILLed",
        replica + 1
    );
    let Cut {
        broker,
        stream,
        before,
        killed,
    } = scene.kill_mid_stream(victim).await;
    let moved_to = deployment.until_moved_off(replica, victim).await;
    deployment.replicas[replica]
        .wait_for_readyz(200, READY_LIMIT)
        .await;
    let failed_over_in = killed.elapsed();
    let restarted = scene.cluster.restart(victim);

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
    drop(stream);
    scene.deployment.stop(&broker).await;
}
