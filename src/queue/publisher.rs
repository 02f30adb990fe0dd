//! Publishing with publisher confirms: `publish` returns only once the broker has taken
//! responsibility for the message (written it to the queue, durably for persistent messages), or
//! fails. Callers ack the message they are handling only after this succeeds.
//!
//! One publish per message, whatever the broker does meanwhile (issue 17):
//! - nothing is handed to the client while the broker blocks the connection (a memory or disk
//!   alarm): lapin would keep the frames queued and send them when the alarm clears, so a
//!   publish given up on and made again would reach the broker twice. The wait for the unblock
//!   is bounded by the caller's deadline; at the deadline nothing was sent ([`PublishError::Blocked`]).
//! - once sent, the original confirm is waited for, up to the caller's deadline. Past
//!   `confirm_timeout` the wait only becomes worth a warning; a message whose confirm never came
//!   by the deadline has an unknown fate ([`PublishError::Timeout`]) and must not be published again.
//! - only a nack, a return (the message is `mandatory`), or the loss of the channel or connection
//!   ([`PublishError::Broker`]: on a new channel, the only legitimate second copy) may be
//!   published again: [`PublishError::may_publish_again`].
//!
//! The worker publishes on a connection of its own, so a blocked publisher never stops its acks.

use std::{sync::Arc, time::Duration};

use lapin::{
    options::{BasicPublishOptions, ConfirmSelectOptions},
    publisher_confirm::Confirmation,
    types::FieldTable,
    BasicProperties, Channel, Connection, ConnectionStatus,
};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::topology::{self, Topology};

/// Used when the caller sets none (the dead-letter tools).
const DEFAULT_CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a blocked connection is looked at again: lapin tells no one when it unblocks.
const UNBLOCK_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The channel or connection failed: the message may not have reached the broker.
    #[error("publish failed: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the broker refused the message (nack)")]
    Nacked,
    #[error("the message could not be routed to any queue")]
    Unroutable,
    /// The broker blocked the connection until the deadline: nothing was sent.
    #[error(
        "the broker blocked publishing (a resource alarm) until the deadline; nothing was sent"
    )]
    Blocked,
    /// Sent, but not confirmed by the deadline: the broker may still take it.
    #[error("no confirm from the broker within {0:?} (is it blocking publishers?)")]
    Timeout(Duration),
}

impl PublishError {
    /// Whether publishing the message again cannot make a second copy of it: the broker said
    /// no (nack, return), or the channel it went on is gone. After [`PublishError::Timeout`]
    /// the first copy may still arrive; after [`PublishError::Blocked`] the deadline is spent.
    pub fn may_publish_again(&self) -> bool {
        matches!(self, Self::Broker(_) | Self::Nacked | Self::Unroutable)
    }
}

#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
    status: ConnectionStatus,
    confirm_timeout: Duration,
    /// What to declare again when a message comes back unroutable: a queue deleted under the
    /// worker is a topology fault to repair, not a reason to give up on the message.
    /// Shared: a publisher is cloned for every message.
    topology: Option<Arc<Topology>>,
}

impl Publisher {
    /// Opens a channel of its own, in confirm mode.
    pub async fn open(connection: &Connection) -> lapin::Result<Self> {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self {
            channel,
            status: connection.status().clone(),
            confirm_timeout: DEFAULT_CONFIRM_TIMEOUT,
            topology: None,
        })
    }

    pub fn with_confirm_timeout(mut self, timeout: Duration) -> Self {
        self.confirm_timeout = timeout;
        self
    }

    /// Re-declare `topology` when a message comes back unroutable, then publish it once more.
    pub fn with_topology(mut self, topology: Topology) -> Self {
        self.topology = Some(Arc::new(topology));
        self
    }

    /// Whether the confirm channel is still usable.
    pub fn is_open(&self) -> bool {
        self.channel.status().connected()
    }

    /// Whether the broker blocked the connection (a resource alarm): publishes wait until it
    /// unblocks.
    pub fn is_blocked(&self) -> bool {
        self.status.blocked()
    }

    /// Publishes a persistent JSON message and waits for the broker's confirm, at most
    /// `confirm_timeout` (for the tools; the pipeline gives its own deadline).
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        headers: FieldTable,
        message_id: &str,
    ) -> Result<(), PublishError> {
        let deadline = Instant::now() + self.confirm_timeout;
        self.publish_until(exchange, routing_key, body, headers, message_id, deadline)
            .await
    }

    /// Publishes a persistent JSON message and waits for the broker's confirm until `deadline`
    /// (see the module's doc). `mandatory`, so a message that no queue would take comes back as
    /// an error instead of vanishing; when it does and the topology is known, it is declared
    /// again and the message published once more.
    pub async fn publish_until(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        headers: FieldTable,
        message_id: &str,
        deadline: Instant,
    ) -> Result<(), PublishError> {
        let result = self
            .publish_once(
                exchange,
                routing_key,
                body,
                headers.clone(),
                message_id,
                deadline,
            )
            .await;
        let (Err(PublishError::Unroutable), Some(topology)) = (&result, &self.topology) else {
            return result;
        };
        warn!(
            routing_key,
            "a published message had no queue to go to; declaring the topology again"
        );
        if let Err(error) = topology::declare(&self.channel, topology).await {
            warn!(%error, "could not declare the topology again");
            return result;
        }
        self.publish_once(exchange, routing_key, body, headers, message_id, deadline)
            .await
    }

    /// Waits while the broker blocks the connection, until `deadline`.
    async fn wait_unblocked(&self, deadline: Instant) -> Result<(), PublishError> {
        while self.status.blocked() {
            if !self.is_open() {
                return Err(PublishError::Broker(lapin::Error::InvalidChannelState(
                    self.channel.status().state(),
                )));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(PublishError::Blocked);
            }
            tokio::time::sleep(UNBLOCK_POLL.min(deadline - now)).await;
        }
        Ok(())
    }

    async fn publish_once(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        headers: FieldTable,
        message_id: &str,
        deadline: Instant,
    ) -> Result<(), PublishError> {
        self.wait_unblocked(deadline).await?;
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(message_id.into())
            .with_headers(headers);
        let confirmed = async {
            let confirm = self
                .channel
                .basic_publish(
                    exchange,
                    routing_key,
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    body,
                    properties,
                )
                .await?;
            confirm.await
        };
        tokio::pin!(confirmed);
        let sent = Instant::now();
        let slow = (sent + self.confirm_timeout).min(deadline);
        let confirmation = tokio::select! {
            confirmation = &mut confirmed => confirmation,
            _ = tokio::time::sleep_until(slow) => {
                if slow < deadline {
                    // The frames are the client's now: publishing again would send a second copy.
                    debug!(message_id, waited = ?self.confirm_timeout,
                        "no confirm within amqp.confirm_timeout; still waiting for it");
                }
                match tokio::time::timeout_at(deadline, &mut confirmed).await {
                    Ok(confirmation) => confirmation,
                    Err(_) => return Err(PublishError::Timeout(sent.elapsed())),
                }
            }
        }?;
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_returned)) => Err(PublishError::Unroutable),
            Confirmation::Nack(_) => Err(PublishError::Nacked),
            Confirmation::NotRequested => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::PublishError;

    #[test]
    fn only_a_refusal_or_a_lost_channel_may_be_published_again() {
        let lost = lapin::Error::InvalidChannelState(lapin::ChannelState::Closed);
        assert!(PublishError::Broker(lost).may_publish_again());
        assert!(PublishError::Nacked.may_publish_again());
        assert!(PublishError::Unroutable.may_publish_again());
        // Sent and unconfirmed: the first copy may still arrive.
        assert!(!PublishError::Timeout(Duration::from_secs(2)).may_publish_again());
        assert!(!PublishError::Blocked.may_publish_again());
    }
}
