//! An event whose `account_id` header is present but not a non-empty text is poison (reason
//! `bad_account`) and is delivered to nobody, not to the default account's webhooks.

use std::time::Duration;

use lapin::{
    options::BasicPublishOptions,
    types::{AMQPValue, ByteArray, FieldArray, FieldTable, LongString},
    BasicProperties,
};
use serde_json::json;

use crate::{
    pipeline::text,
    support::{event, InProcessWorker, TestReceiver},
};

const WAIT: Duration = Duration::from_secs(20);

/// Publishes `body` with `account_id` set to `value`, as a producer would, confirmed.
async fn publish_with_account(worker: &InProcessWorker, value: AMQPValue, body: &[u8]) {
    let mut headers = FieldTable::default();
    headers.insert("account_id".into(), value);
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_headers(headers);
    worker
        .channel
        .basic_publish(
            &worker.names.events_exchange,
            "business.updated",
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await
        .expect("published")
        .await
        .expect("confirmed");
}

#[tokio::test]
async fn an_unreadable_account_header_is_dead_lettered_as_bad_account_and_delivered_to_nobody() {
    let worker = InProcessWorker::start("").await;
    let receiver = TestReceiver::start().await;
    worker
        .add_webhook(
            "default",
            json!({"url": receiver.url(), "enabled_events": ["*"]}),
        )
        .await;
    // (No short string: RabbitMQ reads the `s` tag of a field table as a 16-bit integer.)
    let mut table = FieldTable::default();
    table.insert("id".into(), AMQPValue::LongString("default".into()));
    let spellings = [
        AMQPValue::LongLongInt(42),
        AMQPValue::Boolean(true),
        AMQPValue::LongString(LongString::from("")),
        AMQPValue::Double(1.5),
        AMQPValue::ByteArray(ByteArray::from(b"default".to_vec())),
        AMQPValue::LongString(LongString::from(vec![0xff, 0xfe, b'd'])),
        AMQPValue::FieldTable(table),
        AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::LongString(
            "default".into(),
        )])),
        AMQPValue::Void,
    ];
    let count = spellings.len();
    let mut ids = Vec::new();
    for value in spellings {
        let (id, body) = event("business.updated");
        ids.push(id);
        publish_with_account(&worker, value, &body).await;
    }

    let letters = worker.dead_letters(count, WAIT).await;
    for (headers, body) in &letters {
        assert_eq!(text(headers, "x-dead-reason"), "bad_account");
        assert!(
            text(headers, "x-dead-detail").contains("account_id"),
            "{headers:?}"
        );
        assert!(
            headers.inner().get("account_id").is_none(),
            "a dead letter names no account: {headers:?}"
        );
        let id = serde_json::from_slice::<serde_json::Value>(body).unwrap()["id"].clone();
        assert!(ids.iter().any(|i| *i == id), "the original body: {id}");
    }
    assert_eq!(
        worker.metric("poison_events_total{reason=\"bad_account\"}"),
        count as u64
    );

    // The default account's webhook works: an event without the header reaches it, and it is
    // the only one that did.
    let (good, body) = event("business.updated");
    worker.publish(None, "business.updated", &body).await;
    assert_eq!(receiver.wait_for(1, WAIT).await[0].json()["id"], good);
    worker.until_quiet(|| receiver.count()).await;
    assert_eq!(receiver.count(), 1, "nothing else was delivered");
    worker.stop().await;
}
