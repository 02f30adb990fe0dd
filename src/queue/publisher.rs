//! Publishing with publisher confirms: `publish` returns only once the broker has taken
//! responsibility for the message (written it to the queue, durably for persistent messages), or
//! fails. Callers ack the message they are handling only after this succeeds.
//!
//! Every confirm is waited for at most `confirm_timeout`: a broker under a memory or disk alarm
//! blocks the publishing connection, and without a bound a handler would wait for ever. The
//! worker publishes on a connection of its own, so a blocked publisher never stops its acks.

use std::{sync::Arc, time::Duration};

use lapin::{
    options::{BasicPublishOptions, ConfirmSelectOptions},
    publisher_confirm::Confirmation,
    types::FieldTable,
    BasicProperties, Channel, Connection, ConnectionStatus,
};
use tracing::warn;

use super::topology::{self, Topology};

/// Used when the caller sets none (the dead-letter tools).
const DEFAULT_CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("publish failed: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the broker refused the message (nack)")]
    Nacked,
    #[error("the message could not be routed to any queue")]
    Unroutable,
    #[error("no confirm from the broker within {0:?} (is it blocking publishers?)")]
    Timeout(Duration),
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

    /// Publishes a persistent JSON message and waits for the broker's confirm. `mandatory`, so a
    /// message that no queue would take comes back as an error instead of vanishing; when it
    /// does and the topology is known, it is declared again and the message published once more.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        headers: FieldTable,
        message_id: &str,
    ) -> Result<(), PublishError> {
        let result = self
            .publish_once(exchange, routing_key, body, headers.clone(), message_id)
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
        self.publish_once(exchange, routing_key, body, headers, message_id)
            .await
    }

    async fn publish_once(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        headers: FieldTable,
        message_id: &str,
    ) -> Result<(), PublishError> {
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
        let confirmation = tokio::time::timeout(self.confirm_timeout, confirmed)
            .await
            .map_err(|_| PublishError::Timeout(self.confirm_timeout))??;
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_returned)) => Err(PublishError::Unroutable),
            Confirmation::Nack(_) => Err(PublishError::Nacked),
            Confirmation::NotRequested => Ok(()),
        }
    }
}
