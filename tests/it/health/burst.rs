//! Publishing a burst of events as fast as the broker confirms them. Shared with the
//! `throughput` test binary.

use std::time::Instant;

use futures_util::future::join_all;
use lapin::{
    options::BasicPublishOptions,
    types::{AMQPValue, FieldTable},
    BasicProperties,
};

use crate::harness::{event, TestWorker};

pub const PARKED: &str = "deliveries_total{outcome=\"parked\"}";

/// Publishes events of the given types for account `acct` as fast as the broker confirms
/// them (in batches, confirms awaited together), and returns the ids per position and when
/// the last confirm came.
pub async fn publish_burst(worker: &TestWorker, types: &[&str]) -> (Vec<String>, Instant) {
    let mut ids = Vec::with_capacity(types.len());
    for batch in types.chunks(250) {
        let mut confirms = Vec::with_capacity(batch.len());
        for event_type in batch {
            let (id, body) = event(event_type);
            ids.push(id);
            let mut headers = FieldTable::default();
            headers.insert("account_id".into(), AMQPValue::LongString("acct".into()));
            let properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into())
                .with_headers(headers);
            confirms.push(
                worker
                    .channel
                    .basic_publish(
                        &worker.names.events_exchange,
                        event_type,
                        BasicPublishOptions::default(),
                        &body,
                        properties,
                    )
                    .await
                    .unwrap(),
            );
        }
        for confirm in join_all(confirms).await {
            confirm.unwrap();
        }
    }
    (ids, Instant::now())
}
