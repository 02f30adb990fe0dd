//! The test cluster, as `scripts/rabbitmq-cluster.sh` runs it: its node URLs, which node leads
//! a queue or holds its replicas (asked with `rabbitmqctl`), and a guard that kills nodes for a
//! test and starts every node again when the test ends, passed or failed.

use std::{process::Command, time::Duration};

use serde_json::Value;

use crate::support::{eventually, WorkerProcess};

/// The nodes of the test cluster: 1, 2 and 3.
pub const NODES: [usize; 3] = [1, 2, 3];

fn script() -> Command {
    Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/rabbitmq-cluster.sh"
    ))
}

/// The AMQP URL of each node, node 1 first (`rabbitmq-cluster.sh urls`).
pub fn urls() -> Vec<String> {
    let output = script()
        .arg("urls")
        .output()
        .expect("scripts/rabbitmq-cluster.sh");
    let text = String::from_utf8_lossy(&output.stdout);
    let urls: Vec<String> = text.trim().split(',').map(str::to_string).collect();
    assert_eq!(urls.len(), 3, "rabbitmq-cluster.sh urls: {text}");
    urls
}

/// The URL of node `n`.
pub fn url(n: usize) -> String {
    urls()[n - 1].clone()
}

/// Node `n`'s number from its AMQP port (`127.0.0.1:5702` is node 2).
pub fn node_of_address(address: &str) -> Option<usize> {
    let port = address.rsplit(':').next()?;
    urls()
        .iter()
        .position(|u| u.contains(&format!(":{port}/")))
        .map(|i| i + 1)
}

/// Node `n`'s number from its name (`wwc2@host` is node 2).
fn node_of_name(name: &str) -> Option<usize> {
    name.strip_prefix("wwc")?.split('@').next()?.parse().ok()
}

/// `rabbitmqctl ARGS --formatter json`, asked of the first node that answers.
fn ctl_json(args: &[&str]) -> Value {
    for n in NODES {
        let output = script()
            .args(["ctl", &n.to_string()])
            .args(args)
            .args(["--formatter", "json", "-q"])
            .output()
            .expect("scripts/rabbitmq-cluster.sh ctl");
        if output.status.success() {
            if let Ok(value) = serde_json::from_slice(&output.stdout) {
                return value;
            }
        }
    }
    panic!("no node of the cluster answers rabbitmqctl {args:?}");
}

/// Every queue of the cluster: (name, leader node, number of members).
fn listed_queues() -> Vec<(String, Option<usize>, usize)> {
    let listed = ctl_json(&["list_queues", "name", "leader", "members"]);
    let rows = listed.as_array().cloned().unwrap_or_default();
    rows.iter()
        .filter_map(|row| {
            let name = row["name"].as_str()?.to_string();
            let leader = row["leader"].as_str().and_then(node_of_name);
            let members = row["members"].as_array().map_or(0, Vec::len);
            Some((name, leader, members))
        })
        .collect()
}

/// The queues whose names start with `prefix.`: (name, leader node, number of members).
/// `rabbitmqctl` takes a second or two: it runs on a blocking thread, not the test's runtime.
pub async fn queues(prefix: &str) -> Vec<(String, Option<usize>, usize)> {
    let start = format!("{prefix}.");
    let mut queues = tokio::task::spawn_blocking(listed_queues)
        .await
        .expect("rabbitmqctl list_queues");
    queues.retain(|(name, _, _)| name.starts_with(&start));
    queues
}

/// The node that leads `queue`, or `None` while none does (an election).
pub async fn leader(queue: &str) -> Option<usize> {
    let prefix = queue.rsplit_once('.').map_or(queue, |(prefix, _)| prefix);
    let queues = queues(prefix).await;
    let found = queues.into_iter().find(|(name, _, _)| name == queue);
    found.and_then(|(_, leader, _)| leader)
}

/// A node other than `n`: the next one.
pub fn other_than(n: usize) -> usize {
    n % 3 + 1
}

/// The node a worker's consuming connection went to last, from its log (it logs at info, as
/// JSON, to the file it was given).
pub fn consuming_node(log: &std::path::Path) -> Option<usize> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["message"] == "connected to the broker")
        .filter(|line| {
            line["connection"]
                .as_str()
                .is_some_and(|c| c.ends_with("consuming"))
        })
        .find_map(|line| node_of_address(line["node"].as_str()?))
}

/// Kills nodes for a test; when dropped, starts every node again (a node that runs is left as
/// it is), so the next test finds three nodes whatever happened in this one.
pub struct ClusterGuard;

impl ClusterGuard {
    /// Checks that the cluster runs its three nodes (`scripts/test.sh` starts it).
    pub fn running() -> Self {
        let status = script()
            .arg("status")
            .output()
            .expect("rabbitmq-cluster.sh");
        let text = String::from_utf8_lossy(&status.stdout);
        let running = NODES
            .iter()
            .filter(|n| text.contains(&format!("wwc{n}@")))
            .count();
        assert_eq!(
            running, 3,
            "the test cluster is not running its three nodes ({text}); start it with \
             scripts/rabbitmq-cluster.sh start"
        );
        ClusterGuard
    }

    /// SIGKILLs node `n` and waits until its AMQP port is closed.
    pub fn kill(&self, n: usize) {
        let status = script().args(["kill", &n.to_string()]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill node {n}");
    }

    /// Starts node `n` again, in the background (a start takes about 25 s); the handle says
    /// whether it came up.
    pub fn restart(&self, n: usize) -> tokio::task::JoinHandle<bool> {
        tokio::task::spawn_blocking(move || restart(n))
    }
}

fn restart(n: usize) -> bool {
    let status = script().args(["restart", &n.to_string()]).status();
    status.is_ok_and(|s| s.success())
}

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        for n in NODES {
            if !restart(n) {
                eprintln!("cluster guard: node {n} did not start again");
            }
        }
    }
}

/// Waits until every replica answers `/readyz` with 200.
pub async fn all_ready(replicas: &[WorkerProcess], limit: Duration) {
    for (i, replica) in replicas.iter().enumerate() {
        eventually(limit, format!("replica {} ready", i + 1), || async {
            replica.readyz().await == Some(200)
        })
        .await;
    }
}
