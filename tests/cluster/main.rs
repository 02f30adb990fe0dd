//! The worker on a three-node RabbitMQ cluster (`scripts/rabbitmq-cluster.sh`, AMQP on 5701–5703):
//! three replicas (the binary, as processes) on one PostgreSQL database, given the nodes' URLs
//! as `amqp.url`, while a node is SIGKILLed and started again:
//!
//! - [`node_loss`]: 10,000 events in flight when the node that leads `<prefix>.incoming` dies,
//!   and when the node a replica consumes from dies (the replica fails over to another);
//! - [`delayed_retry`]: a retry parked in a delay queue whose leader dies is delivered on time.
//!
//! [`deployment`] starts the replicas (and checks that each queue has a member on every node);
//! [`cluster`] asks the cluster which node leads a queue, and its guard starts every node again
//! when a test ends, passed or failed.
//!
//! The suite runs alone, last, one test at a time, against a cluster `scripts/test.sh` starts
//! before it and stops after it:
//!
//! ```sh
//! scripts/rabbitmq-cluster.sh start
//! cargo test --test cluster -- --test-threads=1 --nocapture
//! scripts/rabbitmq-cluster.sh stop
//! ```

#[path = "../support/mod.rs"]
mod support;

mod cluster;
mod delayed_retry;
mod deployment;
mod node_loss;
