//! The publishing side of a session: its own connection and confirm channel, offered to the
//! message tasks through an [`Outlet`]. When the channel or the connection fails alone, it is
//! opened again here, with capped backoff, while the consumer carries on: no teardown of a
//! healthy consumer, so none of its messages is redelivered. Tasks whose publishes were lost wait
//! for the new publisher (within `amqp.settle_timeout`) and publish on it.

use std::{sync::Arc, time::Duration};

use lapin::Connection;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::{
    queue::{NodeRing, Outlet, OutletSender, Publisher, Topology},
    retry::jittered,
};

const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// A re-open that takes longer is given up, and tried again later: the consumer's loop waits
/// for it meanwhile.
const REOPEN_LIMIT: Duration = Duration::from_secs(5);

pub(super) struct Publishing {
    connection: Option<Connection>,
    /// Every task holds the receiving end; dropping this ends their waits.
    slot: OutletSender,
    /// The worker's ring for publishing connections: a re-open goes to the next node.
    nodes: NodeRing,
    name: String,
    confirm_timeout: Duration,
    topology: Topology,
    retry_at: Instant,
    backoff: Duration,
    max_backoff: Duration,
}

impl Publishing {
    /// Opens the confirm channel on `connection`; returns the side and its outlet.
    pub async fn open(
        connection: Connection,
        nodes: NodeRing,
        name: String,
        confirm_timeout: Duration,
        topology: Topology,
        max_backoff: Duration,
    ) -> lapin::Result<(Self, Outlet)> {
        let (slot, outlet) = Outlet::channel();
        let publishing = Self {
            connection: Some(connection),
            slot,
            nodes,
            name,
            confirm_timeout,
            topology,
            retry_at: Instant::now(),
            backoff: FIRST_BACKOFF,
            max_backoff,
        };
        let publisher = publishing.publisher().await?;
        publishing.slot.set(Some(Arc::new(publisher)));
        Ok((publishing, outlet))
    }

    /// A confirm channel on the current connection.
    async fn publisher(&self) -> lapin::Result<Publisher> {
        let connection = self.connection.as_ref().ok_or_else(super::closed)?;
        Ok(Publisher::open(connection)
            .await?
            .with_confirm_timeout(self.confirm_timeout)
            .with_topology(self.topology.clone()))
    }

    /// Whether the broker blocks the publishing connection (a resource alarm).
    pub fn is_blocked(&self) -> bool {
        self.connection
            .as_ref()
            .is_some_and(|c| c.status().blocked())
    }

    /// Whether a publisher is open; when none is and its backoff has passed, opens one again
    /// (a new connection if the old one is gone).
    pub async fn check(&mut self) -> bool {
        if self.slot.current().is_some_and(|p| p.is_open()) {
            return true;
        }
        if Instant::now() < self.retry_at {
            return false;
        }
        if self.slot.current().is_some() {
            warn!("the publishing channel is gone; opening it again (the consumer carries on)");
            self.slot.set(None);
        }
        match tokio::time::timeout(REOPEN_LIMIT, self.reopen()).await {
            Ok(Ok(publisher)) => {
                info!("publishing again on a new channel");
                self.slot.set(Some(Arc::new(publisher)));
                self.backoff = FIRST_BACKOFF;
                true
            }
            failed => {
                let wait = jittered(self.backoff);
                let error = match failed {
                    Ok(Err(error)) => error.to_string(),
                    _ => format!("no answer within {REOPEN_LIMIT:?}"),
                };
                warn!(%error, retry_in = ?wait, "could not open the publishing side again");
                self.retry_at = Instant::now() + wait;
                self.backoff = (self.backoff * 2).min(self.max_backoff);
                false
            }
        }
    }

    async fn reopen(&mut self) -> lapin::Result<Publisher> {
        let connected = self
            .connection
            .as_ref()
            .is_some_and(|c| c.status().connected());
        if !connected {
            // A connection the broker closed needs no close of ours.
            self.connection = None;
            let connect = crate::queue::connect_next(&self.nodes, Some(&self.name));
            self.connection = Some(connect.await?);
        }
        self.publisher().await
    }

    /// Closes the connection within `limit`; the tasks' waits for a publisher end.
    pub async fn close(self, limit: Duration, why: &str) {
        drop(self.slot);
        if let Some(connection) = self.connection {
            let _ = tokio::time::timeout(limit, connection.close(200, why)).await;
        }
    }
}
