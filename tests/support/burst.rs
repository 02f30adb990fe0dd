//! Publishing a burst of events as fast as the broker confirms them. Shared with the
//! `throughput` test binary.

use std::time::Instant;

use super::broker::Broker;

pub const PARKED: &str = "deliveries_total{outcome=\"parked\"}";

/// Publishes events of the given types for account `acct` as fast as the broker confirms
/// them (see [`Broker::publish_burst`]), and returns the ids per position and when the last
/// confirm came.
pub async fn publish_burst(broker: &Broker, types: &[&str]) -> (Vec<String>, Instant) {
    let ids = broker.publish_burst("acct", types).await;
    (ids, Instant::now())
}
