//! A message the broker hands out `amqp.delivery_limit` times without its being settled (here:
//! the worker killed while the endpoint hangs) is dead-lettered by the worker itself, for the
//! webhook it is owed to (reason `delivery_limit`), not attempted again, and delivered once its
//! owner redrives it.

use std::time::Duration;

use serde_json::json;
use webhook_worker::{queue::topology::Topology, redrive, store::Store};

use crate::support::{
    decode_key, event, eventually, random_key, seed_webhooks, test_config, unique_prefix,
    until_quiet, Broker, TestReceiver, WorkerProcess, WorkerProcessBuilder,
};

const WAIT: Duration = Duration::from_secs(30);

fn worker(prefix: &str, database_url: &str, key: &str) -> WorkerProcess {
    WorkerProcessBuilder::new(prefix, database_url, key)
        .env("AMQP__DELIVERY_LIMIT", "1")
        .spawn()
}

#[tokio::test]
async fn an_event_over_the_delivery_limit_becomes_its_webhooks_dead_letter_and_is_redriven() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}/limit.db", dir.path().display());
    let (prefix, key) = (unique_prefix(), random_key());
    // Every request hangs until released: the first worker is killed in the middle of one.
    let receiver = TestReceiver::gated().await;
    let hook = json!({"url": receiver.url(), "enabled_events": ["*"], "secret": "s"});
    let webhook = seed_webhooks(&database_url, &key, "acct", &[hook])
        .await
        .remove(0);
    // The queues as the worker declares them, with its delivery limit.
    let config = test_config(&prefix, &database_url, "[amqp]\ndelivery_limit = 1\n");
    let broker = Broker::connect(Topology::from_config(&config)).await;
    let mut first = worker(&prefix, &database_url, &key);
    let (id, body) = event("business.updated");
    broker
        .publish(Some("acct"), "business.updated", &body)
        .await;
    receiver.wait_for(1, WAIT).await;
    first.kill().await;

    // Handed out once already: the next worker dead-letters it for the webhook at once.
    let mut second = worker(&prefix, &database_url, &key);
    broker.wait_for_ready(&broker.names.dead, 1, WAIT).await;
    let store = Store::connect(&database_url, 1, Some(decode_key(&key)))
        .await
        .unwrap();
    let letters = eventually(WAIT, "the letter recorded for the webhook", || async {
        let (letters, _) = store
            .list_dead_letters("acct", webhook.id, 0, 10)
            .await
            .unwrap();
        Some(letters).filter(|letters| !letters.is_empty())
    })
    .await;
    assert_eq!(letters.len(), 1, "one letter, for the webhook");
    assert_eq!(letters[0].reason, "delivery_limit");
    assert_eq!(letters[0].event_id, id);
    let received = until_quiet(&broker, WAIT, || async {
        (receiver.count(), second.settles().await)
    })
    .await;
    assert_eq!(received.0, 1, "not attempted again over the limit");

    // The owner redrives it: delivered once.
    receiver.release(10);
    let job = redrive::start(
        &store,
        &config,
        &redrive::Background::default(),
        "acct",
        webhook.id,
    )
    .await
    .unwrap();
    assert_eq!(job.total, 1);
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(got[1].json()["id"], id.as_str());
    assert_eq!(got[1].header("x-webhook-attempt").as_deref(), Some("1"));

    second
        .terminate_and_expect_clean_exit(WAIT, "exits cleanly")
        .await;
    store.close().await;
    broker.delete_topology().await;
}
