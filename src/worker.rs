//! The consuming side: holds the broker connections, declares the topology, consumes
//! `<prefix>.incoming` and `<prefix>.deliveries`, hands each message to the [`Pipeline`] in a task
//! of its own, and settles it by the pipeline's answer.
//!
//! Two connections, as RabbitMQ recommends: one consumes and acks, the other publishes retry jobs
//! and dead letters. Under a memory or disk alarm the broker blocks connections that publish; on
//! a shared connection that would stop the acks too. The blocked state shows in `/readyz` and in
//! the `amqp_blocked` metric.
//!
//! In-flight work is bounded by the prefetch of each consumer (the broker stops sending once that
//! many messages are unacknowledged). Each consumer's channel has an ack batcher ([`acks`]): the
//! only sender of its acks and nacks, it acks runs of consecutive settled messages with one
//! `multiple` ack and never passes a message still in flight or still to be nacked. When a
//! connection is lost the worker reports not ready, reconnects with capped, jittered exponential
//! backoff (reset only after a session that lasted), each attempt to the next node of a cluster
//! (`amqp.url` a list; [`connect`]), and resumes; messages it had not acked
//! (the batchers' unsent acks included) are redelivered by the broker. On shutdown it stops
//! consuming, waits for in-flight messages up to the grace period, sends the acks still held,
//! and closes the connections, which returns anything unacked to the queue. Every step of that is bounded in time, and so is
//! a connect to an unreachable broker: SIGTERM interrupts it.

mod acks;
mod connect;
mod handle;
mod publishing;
pub mod thread;

use std::{sync::Arc, time::Duration};

use acks::{Acks, Limits};
use futures_util::StreamExt;
use handle::handle;
use lapin::{options::BasicCancelOptions, Channel, Connection, Consumer};
use publishing::Publishing;
use tokio::{task::JoinHandle, time::Instant};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{info, warn};

use crate::{
    config::Config,
    health::Readiness,
    pipeline::Pipeline,
    queue::{self, DeclareError, NodeRing, Topology},
    retry::jittered,
    telemetry::Metrics,
};

const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// A session that lasted this long was a working one: the next reconnect starts from
/// [`FIRST_BACKOFF`] again. A broker that accepts connections and drops them at once keeps the
/// backoff growing instead.
const STABLE_SESSION: Duration = Duration::from_secs(30);
/// At most this much of the grace period is kept for cancelling consumers and closing the
/// connections (a blocked broker does not read what we send, so a close can hang).
const CLOSE_RESERVE: Duration = Duration::from_secs(2);
/// How often the connections' state (closed, blocked) is looked at.
const CHECK_EVERY: Duration = Duration::from_millis(250);
/// At most this much of the time for in-flight messages is kept for sending the acks the
/// batchers still hold.
const FLUSH_RESERVE: Duration = Duration::from_millis(500);

#[derive(Clone, Copy, Debug)]
enum Source {
    Incoming,
    Deliveries,
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Lost(#[from] lapin::Error),
    #[error(transparent)]
    Declare(#[from] DeclareError),
}

/// One consumer, its channel, and the batcher that settles what it delivers.
struct Stream {
    channel: Channel,
    consumer: Consumer,
    acks: Acks,
    batcher: JoinHandle<()>,
}

impl Stream {
    async fn open(connection: &Connection, queue: &str, prefetch: u16) -> lapin::Result<Self> {
        let (channel, consumer) = queue::connect::consume(connection, queue, prefetch).await?;
        let (acks, batcher) = Acks::spawn(channel.clone(), Limits::for_prefetch(prefetch));
        Ok(Self {
            channel,
            consumer,
            acks,
            batcher,
        })
    }
}

/// What one session holds open.
struct Session {
    consuming: Connection,
    publishing: Publishing,
    outlet: crate::queue::Outlet,
    incoming: Stream,
    deliveries: Stream,
}

pub struct Worker {
    config: Arc<Config>,
    pipeline: Arc<Pipeline>,
    topology: Topology,
    readiness: Readiness,
    metrics: Metrics,
    /// Where the consuming connection goes next; kept across sessions, so that the attempt
    /// after a lost node goes to another (see [`queue::nodes`]).
    consuming_nodes: NodeRing,
    /// The publishing connection's own ring: it fails over apart from the consuming one.
    publishing_nodes: NodeRing,
    /// Which delivery thread this worker runs on (see [`thread`]), from 0.
    thread: usize,
}

impl Worker {
    /// The worker of delivery thread `thread`; `readiness` is that thread's handle
    /// ([`Readiness::for_thread`]).
    pub fn new(
        config: Arc<Config>,
        pipeline: Arc<Pipeline>,
        readiness: Readiness,
        metrics: Metrics,
        thread: usize,
    ) -> Self {
        Self {
            thread,
            topology: Topology::from_config(&config),
            consuming_nodes: NodeRing::new(&config.amqp.url),
            publishing_nodes: NodeRing::new(&config.amqp.url),
            config,
            pipeline,
            readiness,
            metrics,
        }
    }

    /// Runs until `cancel` fires and in-flight work is drained (or the grace period ends).
    /// Returns an error only for what reconnecting cannot fix: queues declared with other
    /// arguments.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), DeclareError> {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let started = Instant::now();
            let result = self.session(&cancel).await;
            self.set_state(false, false);
            let error = match result {
                Ok(()) => return Ok(()),
                Err(SessionError::Declare(error)) if error.is_fatal() => return Err(error),
                Err(error) => error,
            };
            if started.elapsed() >= STABLE_SESSION {
                backoff = FIRST_BACKOFF;
            }
            let wait = jittered(backoff);
            warn!(%error, retry_in = ?wait, "broker connection lost; reconnecting");
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = tokio::time::sleep(wait) => {}
            }
            backoff = (backoff * 2).min(self.config.amqp.reconnect_max_backoff.0);
        }
    }

    /// This thread's connection state; the metrics show every delivery thread's together.
    fn set_state(&self, connected: bool, blocked: bool) {
        self.readiness.set_broker_ready(connected);
        self.readiness.set_broker_blocked(blocked);
        let readiness = &self.readiness;
        self.metrics
            .amqp_connected
            .set(i64::from(readiness.broker_connected()));
        self.metrics
            .amqp_blocked
            .set(i64::from(readiness.broker_blocked()));
    }

    /// One session's life. `Ok` means shut down on request; `Err` means the broker went away
    /// (or refused the topology).
    async fn session(&self, cancel: &CancellationToken) -> Result<(), SessionError> {
        let Some(mut session) = self.open_session(cancel).await? else {
            return Ok(());
        };
        let tracker = TaskTracker::new();
        // Fired when the session is lost: every task of it stops (see [`handle`]).
        let lost = CancellationToken::new();
        match self.consume(&mut session, cancel, &tracker, &lost).await {
            Some(error) => {
                self.end_lost(session, &tracker, &lost, cancel).await;
                Err(error.into())
            }
            None => {
                self.drain([session.incoming, session.deliveries], &tracker)
                    .await;
                close_both(session.consuming, session.publishing, "shutting down").await;
                Ok(())
            }
        }
    }

    /// Connects, declares the topology, and opens the publisher and both consumers.
    async fn open_session(
        &self,
        cancel: &CancellationToken,
    ) -> Result<Option<Session>, SessionError> {
        let Some(connections) = self.connect(cancel).await? else {
            return Ok(None);
        };
        let setup = connections.publishing.create_channel().await?;
        queue::declare(&setup, &self.topology).await?;
        let _ = setup.close(200, "topology declared").await;
        let amqp = &self.config.amqp;
        let (publishing, outlet) = Publishing::open(
            connections.publishing,
            self.publishing_nodes.clone(),
            self.connection_name("publishing"),
            amqp.confirm_timeout.0,
            self.topology.clone(),
            amqp.reconnect_max_backoff.0,
        )
        .await?;
        let consuming = connections.consuming;
        let names = &self.topology.names;
        let incoming = Stream::open(&consuming, &names.incoming, amqp.prefetch).await?;
        let deliveries = Stream::open(&consuming, &names.deliveries, amqp.prefetch).await?;
        self.set_state(true, false);
        info!(thread = self.thread, incoming = %names.incoming, deliveries = %names.deliveries, "consuming");
        Ok(Some(Session {
            consuming,
            publishing,
            outlet,
            incoming,
            deliveries,
        }))
    }

    /// Hands each message to a task of its own until shutdown (`None`) or until the session is
    /// lost (the error).
    async fn consume(
        &self,
        session: &mut Session,
        cancel: &CancellationToken,
        tracker: &TaskTracker,
        lost: &CancellationToken,
    ) -> Option<lapin::Error> {
        let mut check = tokio::time::interval(CHECK_EVERY);
        loop {
            let (source, next) = tokio::select! {
                _ = cancel.cancelled() => return None,
                _ = check.tick() => {
                    if !session.consuming.status().connected() {
                        return Some(closed());
                    }
                    let publishing_ok = session.publishing.check().await;
                    let blocked =
                        session.publishing.is_blocked() || session.consuming.status().blocked();
                    self.follow(publishing_ok, blocked);
                    continue;
                }
                next = session.incoming.consumer.next() => (Source::Incoming, next),
                next = session.deliveries.consumer.next() => (Source::Deliveries, next),
            };
            match next {
                Some(Ok(delivery)) => {
                    let acks = match source {
                        Source::Incoming => &session.incoming.acks,
                        Source::Deliveries => &session.deliveries.acks,
                    };
                    acks.delivered(delivery.delivery_tag);
                    // Boxed: the task then holds a pointer, not the ~4 KB future, which tokio
                    // otherwise copies as it builds the task and again as the future's stage
                    // changes (memcpy was 3-7 % of the worker's samples).
                    tracker.spawn(Box::pin(handle(
                        self.pipeline.clone(),
                        session.outlet.clone(),
                        source,
                        delivery,
                        acks.clone(),
                        lost.clone(),
                    )));
                }
                Some(Err(error)) => return Some(error),
                None => return Some(closed()),
            }
        }
    }

    /// Ends a lost session. Nothing the batchers hold is sent now: the broker redelivers every
    /// message it had not been told to ack. Every task of this session ends before the next
    /// session takes a message, so no request of this one is still in flight when the broker
    /// hands its message to the next (see `pipeline::session`).
    async fn end_lost(
        &self,
        session: Session,
        tracker: &TaskTracker,
        lost: &CancellationToken,
        cancel: &CancellationToken,
    ) {
        session.incoming.batcher.abort();
        session.deliveries.batcher.abort();
        lost.cancel();
        tracker.close();
        // Attempts in flight finish (each within delivery.attempt_deadline); nothing else starts.
        let limit = self.config.delivery.attempt_deadline() + CLOSE_RESERVE;
        let waited = tokio::select! {
            waited = tokio::time::timeout(limit, tracker.wait()) => waited.is_ok(),
            _ = cancel.cancelled() => false,
        };
        if !waited {
            warn!(
                left = tracker.len(),
                "tasks of the lost session still running"
            );
        }
        close_both(session.consuming, session.publishing, "lost").await;
    }

    /// Follows the connections' state: a blocked one, or a publisher being opened again, shows
    /// in readiness and metrics.
    fn follow(&self, publishing: bool, blocked: bool) {
        if blocked != self.readiness.own_broker_blocked() {
            warn!(
                blocked,
                "the broker changed the blocked state of a connection"
            );
        }
        self.set_state(publishing, blocked);
    }

    /// Stops the consumers, waits for in-flight messages and sends the acks the batchers still
    /// hold, all within `shutdown.grace` less what closing the connections may take.
    async fn drain(&self, streams: [Stream; 2], tracker: &TaskTracker) {
        let grace = self.config.shutdown.grace.0;
        let deadline = Instant::now() + grace.saturating_sub(CLOSE_RESERVE.min(grace / 4));
        let tasks_deadline = deadline - FLUSH_RESERVE.min(grace / 8);
        info!("shutdown: no longer consuming; finishing in-flight messages");
        // Stop the broker sending more; what it already sent stays ours to settle.
        for stream in &streams {
            let tag = stream.consumer.tag();
            let cancel = stream
                .channel
                .basic_cancel(tag.as_str(), BasicCancelOptions::default());
            let _ = tokio::time::timeout_at(tasks_deadline, cancel).await;
        }
        tracker.close();
        let finished = tokio::time::timeout_at(tasks_deadline, tracker.wait())
            .await
            .is_ok();
        // What settles after this is not sent: it goes back to the queue with the connection.
        for stream in &streams {
            stream.acks.finish();
        }
        for stream in streams {
            if tokio::time::timeout_at(deadline, stream.batcher)
                .await
                .is_err()
            {
                warn!("shutdown: acks not sent in time; those messages go back to the queue");
            }
        }
        if finished {
            info!("shutdown: every in-flight message was settled");
        } else {
            warn!(
                returned = tracker.len(),
                ?grace,
                "grace period over: {} unfinished messages go back to the queue",
                tracker.len()
            );
        }
    }
}

/// Closes a session's two connections at once, each within [`CLOSE_RESERVE`].
async fn close_both(consuming: Connection, publishing: Publishing, why: &str) {
    let close = async {
        let _ = tokio::time::timeout(CLOSE_RESERVE, consuming.close(200, why)).await;
    };
    tokio::join!(close, publishing.close(CLOSE_RESERVE, why));
}

fn closed() -> lapin::Error {
    lapin::Error::InvalidChannelState(lapin::ChannelState::Closed)
}
