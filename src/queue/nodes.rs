//! Which broker node a connection goes to, when `amqp.url` lists a cluster's nodes.
//!
//! Each long-lived connection (consuming, publishing, the queue-depth poller) has a [`NodeRing`]
//! of its own. It starts at a random node, so that replicas spread over the cluster instead of
//! all landing on the first node listed, and every new connect moves on to the next node: when a
//! node dies, the attempt after the loss goes elsewhere, with the caller's backoff between
//! attempts. Rings are independent, so the publishing connection fails over without the
//! consuming one and the other way round. With one URL every attempt goes to it, as before.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use rand::Rng;

use crate::{config::AmqpUrls, secret::Secret};

/// One node: its URL (credentials and all) and what a log line may show of it.
#[derive(Debug)]
pub struct Node {
    pub url: Secret,
    /// `host:port`, never the credentials.
    pub address: String,
}

/// The nodes of `amqp.url`, handed out in turn from a random one. Clones share the turn: a
/// ring kept across sessions goes on where the last session left off.
#[derive(Debug, Clone)]
pub struct NodeRing {
    nodes: Arc<[Node]>,
    next: Arc<AtomicUsize>,
}

impl NodeRing {
    pub fn new(urls: &AmqpUrls) -> Self {
        let nodes: Arc<[Node]> = urls
            .iter()
            .map(|url| Node {
                address: address(url.expose()),
                url: url.clone(),
            })
            .collect();
        let start = if nodes.len() > 1 {
            rand::thread_rng().gen_range(0..nodes.len())
        } else {
            0
        };
        Self {
            nodes,
            next: Arc::new(AtomicUsize::new(start)),
        }
    }

    /// The node for the next connect; the one after that is another (when there is another).
    /// `None` only for an empty list, which configuration validation refuses.
    pub fn next(&self) -> Option<&Node> {
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        self.nodes.get(turn % self.nodes.len().max(1))
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

/// `host:port` of an AMQP URL, for logs: the parsed authority without its user info, or a
/// placeholder when the URL does not parse (its text may hold a password).
pub fn address(url: &str) -> String {
    match url.parse::<lapin::uri::AMQPUri>() {
        Ok(uri) => format!("{}:{}", uri.authority.host, uri.authority.port),
        Err(_) => "(an amqp.url that does not parse)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn a_ring_visits_every_node_in_turn() {
        let urls = AmqpUrls::parse("amqp://g:g@h:5701/%2f,amqp://g:g@h:5702/%2f,amqp://h:5703");
        for _ in 0..20 {
            let ring = NodeRing::new(&urls);
            let shared = ring.clone();
            let first: Vec<String> = (0..3)
                .map(|_| ring.next().unwrap().address.clone())
                .collect();
            let distinct: HashSet<_> = first.iter().collect();
            assert_eq!(distinct.len(), 3, "{first:?}");
            // A clone goes on from the same turn.
            assert_eq!(shared.next().unwrap().address, first[0]);
        }
    }

    #[test]
    fn rings_start_at_random_nodes() {
        let urls = AmqpUrls::parse("amqp://h:5701,amqp://h:5702,amqp://h:5703");
        let starts: HashSet<String> = (0..60)
            .map(|_| NodeRing::new(&urls).next().unwrap().address.clone())
            .collect();
        assert_eq!(starts.len(), 3, "{starts:?}");
    }

    #[test]
    fn one_url_is_always_the_node() {
        let ring = NodeRing::new(&AmqpUrls::parse("amqp://guest:guest@127.0.0.1:5672/%2f"));
        for _ in 0..3 {
            assert_eq!(ring.next().unwrap().address, "127.0.0.1:5672");
        }
    }

    #[test]
    fn the_address_never_shows_credentials() {
        assert_eq!(
            address("amqps://u:hunter2@mq.example:5671/v"),
            "mq.example:5671"
        );
        assert_eq!(address("amqp://u:hunter2@mq.example"), "mq.example:5672");
        assert!(!address("amqp://u:hunter2@h:notaport/%2f").contains("hunter2"));
    }
}
