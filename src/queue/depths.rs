//! Queue depths for `/metrics`: every [`EVERY`], the ready-message count of each queue of the
//! topology (`incoming`, `deliveries`, `dead`, the delay queues), asked with a passive declare on
//! a connection of its own, so a slow or blocked consuming connection never hides the backlog.
//! A growing `incoming` or `dead` is what an operator alerts on.

use std::time::Duration;

use lapin::Connection;
use tokio_util::sync::CancellationToken;

use super::topology::Topology;
use crate::telemetry::{Metrics, QueueLabels};

pub const EVERY: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Polls until `cancel` fires; reconnects after a failure at the next tick, to the next node.
pub async fn run(
    nodes: super::NodeRing,
    topology: Topology,
    metrics: Metrics,
    cancel: CancellationToken,
) {
    let queues = topology.queues();
    let mut connection: Option<Connection> = None;
    loop {
        if connection.as_ref().is_none_or(|c| !c.status().connected()) {
            // A broker that accepts and never answers must not hold shutdown: the connect is
            // given up when asked to stop, and after a while anyway.
            let connect = crate::queue::connect_next(&nodes, None);
            connection = tokio::select! {
                _ = cancel.cancelled() => break,
                connected = tokio::time::timeout(CONNECT_TIMEOUT, connect) => {
                    connected.ok().and_then(Result::ok)
                }
            };
        }
        if let Some(open) = &connection {
            let polled = tokio::select! {
                _ = cancel.cancelled() => break,
                polled = tokio::time::timeout(CONNECT_TIMEOUT, poll(open, &queues, &metrics)) => polled,
            };
            if !matches!(polled, Ok(Ok(()))) {
                connection = None;
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
    if let Some(connection) = connection {
        let _ =
            tokio::time::timeout(Duration::from_secs(2), connection.close(200, "stopping")).await;
    }
}

async fn poll(connection: &Connection, queues: &[String], metrics: &Metrics) -> lapin::Result<()> {
    let mut channel = connection.create_channel().await?;
    for queue in queues {
        // Asking for a queue that does not exist (yet) closes the channel: open another.
        if !channel.status().connected() {
            channel = connection.create_channel().await?;
        }
        if let Ok((ready, _)) = super::counts(&channel, queue).await {
            metrics
                .queue_messages
                .get_or_create(&QueueLabels {
                    queue: queue.clone(),
                })
                .set(i64::from(ready));
        }
    }
    let _ = channel.close(200, "polled").await;
    Ok(())
}
