//! The consuming side: holds a broker connection, declares the topology, consumes
//! `<prefix>.incoming` and `<prefix>.deliveries`, hands each message to the [`Pipeline`] in a task
//! of its own, and acks or requeues it by the pipeline's answer.
//!
//! In-flight work is bounded by the prefetch of each consumer (the broker stops sending once that
//! many messages are unacknowledged). When the connection is lost the worker reports not ready,
//! reconnects with capped exponential backoff, and resumes; messages it had not acked are
//! redelivered by the broker. On shutdown it stops consuming, waits for in-flight messages up to
//! the grace period, and closes the connection, which returns anything unacked to the queue.

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use lapin::{
    message::Delivery,
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    },
    types::FieldTable,
    Channel, Connection, ConnectionProperties, Consumer,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{info, warn};

use crate::{
    config::Config,
    health::Readiness,
    pipeline::{Disposition, Pipeline},
    queue::{self, Publisher},
    telemetry::Metrics,
};

const FIRST_BACKOFF: Duration = Duration::from_millis(200);

#[derive(Clone, Copy, Debug)]
enum Source {
    Incoming,
    Deliveries,
}

pub struct Worker {
    config: Arc<Config>,
    pipeline: Arc<Pipeline>,
    readiness: Readiness,
    metrics: Metrics,
}

impl Worker {
    pub fn new(
        config: Arc<Config>,
        pipeline: Arc<Pipeline>,
        readiness: Readiness,
        metrics: Metrics,
    ) -> Self {
        Self {
            config,
            pipeline,
            readiness,
            metrics,
        }
    }

    /// Runs until `cancel` fires and in-flight work is drained (or the grace period ends).
    pub async fn run(self, cancel: CancellationToken) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let result = self.session(&cancel, &mut backoff).await;
            self.readiness.set_broker_ready(false);
            self.metrics.amqp_connected.set(0);
            match result {
                Ok(()) => return,
                Err(error) => {
                    warn!(%error, retry_in = ?backoff, "broker connection lost; reconnecting");
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.config.amqp.reconnect_max_backoff.0);
                }
            }
        }
    }

    /// One connection's life. `Ok` means shut down on request; `Err` means the broker went away.
    async fn session(
        &self,
        cancel: &CancellationToken,
        backoff: &mut Duration,
    ) -> lapin::Result<()> {
        let connection =
            Connection::connect(self.config.amqp.url.expose(), connection_properties()).await?;
        let setup = connection.create_channel().await?;
        queue::declare(&setup, self.pipeline.names(), self.pipeline.schedule()).await?;
        let _ = setup.close(200, "topology declared").await;
        let publisher = Publisher::open(&connection).await?;
        let prefetch = self.config.amqp.prefetch;
        let names = self.pipeline.names().clone();
        let (incoming_channel, mut incoming) =
            consume(&connection, &names.incoming, prefetch).await?;
        let (deliveries_channel, mut deliveries) =
            consume(&connection, &names.deliveries, prefetch).await?;
        self.readiness.set_broker_ready(true);
        self.metrics.amqp_connected.set(1);
        *backoff = FIRST_BACKOFF;
        info!(incoming = %names.incoming, deliveries = %names.deliveries, "consuming");

        let tracker = TaskTracker::new();
        // Without its confirm channel the worker can settle nothing (every outcome would be
        // requeued), so a closed publisher ends the session like a lost connection.
        let mut publisher_check = tokio::time::interval(Duration::from_secs(1));
        let lost = loop {
            let (source, next) = tokio::select! {
                _ = cancel.cancelled() => break None,
                _ = publisher_check.tick() => {
                    if publisher.is_open() {
                        continue;
                    }
                    break Some(lapin::Error::InvalidChannelState(lapin::ChannelState::Closed));
                }
                next = incoming.next() => (Source::Incoming, next),
                next = deliveries.next() => (Source::Deliveries, next),
            };
            match next {
                Some(Ok(delivery)) => {
                    let pipeline = self.pipeline.clone();
                    let publisher = publisher.clone();
                    tracker.spawn(handle(pipeline, publisher, source, delivery));
                }
                Some(Err(error)) => break Some(error),
                None => {
                    break Some(lapin::Error::InvalidChannelState(
                        lapin::ChannelState::Closed,
                    ))
                }
            }
        };
        if let Some(error) = lost {
            // Tasks still running will fail to ack; the broker redelivers what they held.
            tracker.close();
            return Err(error);
        }

        info!("shutdown: no longer consuming; finishing in-flight messages");
        // Stop the broker sending more; what it already sent stays ours to settle.
        for (channel, consumer) in [
            (&incoming_channel, &incoming),
            (&deliveries_channel, &deliveries),
        ] {
            let _ = channel
                .basic_cancel(consumer.tag().as_str(), BasicCancelOptions::default())
                .await;
        }
        tracker.close();
        let grace = self.config.shutdown.grace.0;
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            warn!(
                left = tracker.len(),
                ?grace,
                "grace period over; unfinished messages go back to the queue"
            );
        }
        let _ = connection.close(200, "shutting down").await;
        Ok(())
    }
}

/// lapin on the application's tokio runtime instead of an executor and reactor of its own:
/// measured with the bench binary, this is what lets one event cost one wake-up, not a hop
/// between two thread pools.
pub fn connection_properties() -> ConnectionProperties {
    ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio)
}

async fn consume(
    connection: &Connection,
    queue: &str,
    prefetch: u16,
) -> lapin::Result<(Channel, Consumer)> {
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let consumer = channel
        .basic_consume(
            queue,
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok((channel, consumer))
}

async fn handle(pipeline: Arc<Pipeline>, publisher: Publisher, source: Source, delivery: Delivery) {
    let headers = delivery.properties.headers().as_ref();
    let disposition = match source {
        Source::Incoming => {
            pipeline
                .handle_event(
                    &publisher,
                    &delivery.data,
                    headers,
                    delivery.routing_key.as_str(),
                )
                .await
        }
        Source::Deliveries => {
            pipeline
                .handle_job(&publisher, &delivery.data, headers)
                .await
        }
    };
    let result = match disposition {
        Disposition::Ack => delivery.acker.ack(BasicAckOptions::default()).await,
        Disposition::Requeue => {
            // Give the broker a moment before the message comes round again.
            tokio::time::sleep(Duration::from_secs(1)).await;
            delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    multiple: false,
                })
                .await
        }
    };
    if let Err(error) = result {
        warn!(%error, "could not settle a message; the broker will redeliver it");
    }
}
