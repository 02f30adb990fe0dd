//! What every cluster test runs: three worker replicas (the binary, as processes) on one
//! PostgreSQL database and one queue prefix, each given the cluster's three node URLs (in an
//! order of its own), logging at info to a file the test reads to learn which node each one
//! consumes from.

use std::{path::PathBuf, time::Duration};

use webhook_worker::queue::Topology;

use crate::cluster::{self, consuming_node};
use crate::support::{
    eventually, fault_scenario::PREFETCH, random_key, seed_webhooks, test_config, unique_prefix,
    Backend, Broker, TestDb, WorkerProcess, WorkerProcessBuilder,
};

pub const REPLICAS: usize = 3;
/// Long enough for a replica to start and connect, and for one to reconnect after its node died.
pub const READY_LIMIT: Duration = Duration::from_secs(60);

pub struct Deployment {
    pub topology: Topology,
    pub replicas: Vec<WorkerProcess>,
    logs: Vec<PathBuf>,
    _logs_dir: tempfile::TempDir,
    _db: TestDb,
}

impl Deployment {
    /// Seeds `hooks` for account `acct`, declares the topology through node 1 (so the queues'
    /// leaders start there: RabbitMQ places a new quorum queue's leader on the declaring
    /// client's node), checks that every queue has a replica on each of the three nodes, and
    /// starts the replicas with `retry_schedule` (a TOML list); returns once all are ready.
    pub async fn start(hooks: &[serde_json::Value], retry_schedule: &str) -> Self {
        let db = TestDb::new(Backend::Postgres).await;
        let key = random_key();
        let prefix = unique_prefix();
        seed_webhooks(db.url(), &key, "acct", hooks).await;
        let overrides = format!("[delivery]\nretry_schedule = {retry_schedule}");
        let topology = Topology::from_config(&test_config(&prefix, "sqlite::memory:", &overrides));
        drop(Broker::connect_to(&cluster::url(1), topology.clone()).await);
        assert_replicated_on_three_nodes(&prefix, &topology).await;
        let logs_dir = tempfile::tempdir().expect("a temp dir");
        let urls = cluster::urls();
        let mut replicas = Vec::new();
        let mut logs = Vec::new();
        for i in 0..REPLICAS {
            let log = logs_dir.path().join(format!("replica-{}.log", i + 1));
            let file = std::fs::File::create(&log).expect("a log file");
            let mut nodes = urls.clone();
            nodes.rotate_left(i);
            let replica = WorkerProcessBuilder::new(&prefix, db.url(), &key)
                .env("AMQP__URL", nodes.join(","))
                .env("AMQP__PREFETCH", PREFETCH.to_string())
                .env("AMQP__RECONNECT_MAX_BACKOFF", "1s")
                .env("DELIVERY__RETRY_SCHEDULE", retry_schedule)
                .env("LOG__LEVEL", "info")
                .stderr_to(file)
                .spawn();
            replicas.push(replica);
            logs.push(log);
        }
        cluster::all_ready(&replicas, READY_LIMIT).await;
        Self {
            topology,
            replicas,
            logs,
            _logs_dir: logs_dir,
            _db: db,
        }
    }

    /// The node replica `i` (from 0) consumes from now.
    pub async fn consuming_node(&self, i: usize) -> usize {
        let log = &self.logs[i];
        eventually(
            READY_LIMIT,
            format!("replica {} connected", i + 1),
            || async { consuming_node(log) },
        )
        .await
    }

    /// Waits until replica `i` consumes from a node other than `gone`; returns that node.
    pub async fn until_moved_off(&self, i: usize, gone: usize) -> usize {
        let log = &self.logs[i];
        let what = format!("replica {} consuming from another node than {gone}", i + 1);
        eventually(READY_LIMIT, what, || async {
            consuming_node(log).filter(|node| *node != gone)
        })
        .await
    }

    /// A connection of the test's own to node `n`, for publishing and counting.
    pub async fn broker_on(&self, n: usize) -> Broker {
        Broker::connect_to(&cluster::url(n), self.topology.clone()).await
    }

    /// Waits until no queue of the prefix holds a message (ready ones; the replicas hold none
    /// unacked once they are quiet) and every replica answers `/readyz` with 200.
    pub async fn assert_drained_and_ready(&self, broker: &Broker) {
        eventually(READY_LIMIT, "every queue of the prefix empty", || async {
            let mut left = Vec::new();
            for queue in broker.topology.queues() {
                let (ready, _) = broker.queue_counts(&queue).await;
                if ready > 0 {
                    left.push(format!("{ready} in {queue}"));
                }
            }
            if left.is_empty() {
                Ok(())
            } else {
                Err(left.join(", "))
            }
        })
        .await;
        cluster::all_ready(&self.replicas, READY_LIMIT).await;
    }

    /// Stops the replicas and deletes the prefix's queues.
    pub async fn stop(mut self, broker: &Broker) {
        for replica in &mut self.replicas {
            replica.kill().await;
        }
        broker.delete_topology().await;
    }
}

/// Every queue of the prefix has a member on each of the three nodes: RabbitMQ 3.10 gives a
/// quorum queue min(3, nodes) members by default (`quorum_cluster_size`), so the worker declares
/// no `x-quorum-initial-group-size`.
async fn assert_replicated_on_three_nodes(prefix: &str, topology: &Topology) {
    let queues = cluster::queues(prefix).await;
    assert_eq!(queues.len(), topology.queues().len(), "{queues:?}");
    for (name, _, members) in queues {
        assert_eq!(members, 3, "{name} has {members} members");
    }
}
