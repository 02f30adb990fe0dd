//! Queue depths for `/metrics`: every [`EVERY`], the ready-message count of each queue of the
//! topology (`incoming`, `deliveries`, `dead`, the delay queues), asked with a passive declare on
//! a connection of its own, so a slow or blocked consuming connection never hides the backlog.
//! A growing `incoming` or `dead` is what an operator alerts on.

use std::time::Duration;

use lapin::{options::QueueDeclareOptions, types::FieldTable, Connection};
use tokio_util::sync::CancellationToken;

use super::topology::Topology;
use crate::{
    telemetry::{Metrics, QueueLabels},
    worker::connection_properties,
};

pub const EVERY: Duration = Duration::from_secs(5);

/// Polls until `cancel` fires; reconnects after a failure at the next tick.
pub async fn run(
    amqp_url: String,
    topology: Topology,
    metrics: Metrics,
    cancel: CancellationToken,
) {
    let queues = topology.queues();
    let mut connection: Option<Connection> = None;
    loop {
        // A broker that accepts TCP and never answers would hold a connect (or a declare) for
        // ever: shutdown must not wait for it.
        tokio::select! {
            _ = cancel.cancelled() => break,
            () = refresh(&amqp_url, &mut connection, &queues, &metrics) => {}
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

/// Connects when not connected, then reads every queue's depth; a failure drops the connection.
async fn refresh(
    amqp_url: &str,
    connection: &mut Option<Connection>,
    queues: &[String],
    metrics: &Metrics,
) {
    if connection.as_ref().is_none_or(|c| !c.status().connected()) {
        *connection = Connection::connect(amqp_url, connection_properties())
            .await
            .ok();
    }
    if let Some(open) = connection.as_ref() {
        if poll(open, queues, metrics).await.is_err() {
            *connection = None;
        }
    }
}

async fn poll(connection: &Connection, queues: &[String], metrics: &Metrics) -> lapin::Result<()> {
    let mut channel = connection.create_channel().await?;
    for queue in queues {
        // Asking for a queue that does not exist (yet) closes the channel: open another.
        if !channel.status().connected() {
            channel = connection.create_channel().await?;
        }
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        if let Ok(declared) = channel
            .queue_declare(queue, passive, FieldTable::default())
            .await
        {
            metrics
                .queue_messages
                .get_or_create(&QueueLabels {
                    queue: queue.clone(),
                })
                .set(i64::from(declared.message_count()));
        }
    }
    let _ = channel.close(200, "polled").await;
    Ok(())
}
