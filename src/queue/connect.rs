//! Connecting to the broker as the worker does, and opening a consumer. Where `amqp.url` lists
//! several nodes, a long-lived connection takes the next node of its [`NodeRing`] at each
//! attempt ([`connect_next`]), and a one-off connection (a tool, a redrive) tries them in turn
//! until one answers ([`connect`]). Every connection made says which node (`host:port`) it went
//! to.

use lapin::{
    options::{BasicConsumeOptions, BasicQosOptions},
    types::FieldTable,
    Channel, Connection, ConnectionProperties, Consumer,
};
use tracing::info;

use super::nodes::NodeRing;
use crate::config::AmqpUrls;

/// The largest frame the worker asks for (RabbitMQ offers 128 KiB). lapin keeps two buffers of
/// 32 frames per connection, zero-filled, so 128 KiB frames cost 8 MiB of memory per
/// connection, and the worker has three (consuming, publishing, the queue-depth poller): a
/// fifth of its peak RSS in the bench's heap profile. 16 KiB holds the sample event (3.2 KB as
/// compact JSON) in one frame; a larger message is sent and received in more frames.
const FRAME_MAX: u32 = 16 * 1024;

/// Connects as the worker does (on the application's runtime, with frames of at most
/// [`FRAME_MAX`] unless the URL sets `frame_max` itself) to one of `urls`: from a random node,
/// each in turn until one answers. The error is the last node's.
pub async fn connect(urls: &AmqpUrls) -> lapin::Result<Connection> {
    let ring = NodeRing::new(urls);
    for _ in 1..ring.len() {
        if let Ok(connection) = connect_next(&ring, None).await {
            return Ok(connection);
        }
    }
    connect_next(&ring, None).await
}

/// One attempt, at the next node of `ring`, named `name` at the broker when given
/// (`rabbitmqctl list_connections client_properties`, the management UI), e.g.
/// `webhook-worker webhooks publishing`. Logs the node it went to, or could not reach.
pub async fn connect_next(ring: &NodeRing, name: Option<&str>) -> lapin::Result<Connection> {
    let Some(node) = ring.next() else {
        let error = std::io::Error::new(std::io::ErrorKind::InvalidInput, "amqp.url names no node");
        return Err(error.into());
    };
    let mut properties = connection_properties();
    if let Some(name) = name {
        properties = properties.with_connection_name(name.into());
    }
    let connection = name.unwrap_or("webhook-worker");
    match connect_with(node.url.expose(), properties).await {
        Ok(connected) => {
            info!(node = %node.address, connection, "connected to the broker");
            Ok(connected)
        }
        Err(error) => {
            // The caller warns (with its backoff); this says which node it was.
            info!(node = %node.address, connection, %error, "could not connect to the broker");
            Err(error)
        }
    }
}

async fn connect_with(url: &str, properties: ConnectionProperties) -> lapin::Result<Connection> {
    let mut uri: lapin::uri::AMQPUri = url.parse().map_err(|_| {
        // The parser's message may quote the URL, credentials and all.
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "amqp.url is not a valid AMQP URI: expected amqp://user:password@host:port/vhost, \
             e.g. amqp://guest:guest@127.0.0.1:5672/%2f",
        )
    })?;
    uri.query.frame_max.get_or_insert(FRAME_MAX);
    Connection::connect_uri(uri, properties).await
}

/// The largest frame the worker asks for on any of `urls`' nodes: [`FRAME_MAX`], or less where
/// a URL sets `frame_max` itself. What must fit one frame (a message's headers) is sized by it.
pub fn requested_frame_max(urls: &AmqpUrls) -> u32 {
    urls.iter()
        .map(|url| {
            url.expose()
                .parse::<lapin::uri::AMQPUri>()
                .ok()
                .and_then(|uri| uri.query.frame_max)
                .unwrap_or(FRAME_MAX)
                // lapin asks for no less than the protocol's least frame.
                .max(lapin::protocol::constants::FRAME_MIN_SIZE)
        })
        .min()
        .unwrap_or(FRAME_MAX)
}

/// lapin on the application's tokio runtime instead of an executor and reactor of its own:
/// measured with the bench binary, this is what lets one event cost one wake-up, not a hop
/// between two thread pools.
pub fn connection_properties() -> ConnectionProperties {
    ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio)
}

pub(crate) async fn consume(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frame_asked_for_is_the_least_any_url_sets() {
        let urls = |text| requested_frame_max(&AmqpUrls::parse(text));
        assert_eq!(urls("amqp://127.0.0.1:5672/%2f"), FRAME_MAX);
        let two = "amqp://a:5672/%2f?frame_max=8192,amqp://b:5672/%2f";
        assert_eq!(urls(two), 8192);
        let least = lapin::protocol::constants::FRAME_MIN_SIZE;
        assert_eq!(urls("amqp://a:5672/%2f?frame_max=0"), least);
    }
}
