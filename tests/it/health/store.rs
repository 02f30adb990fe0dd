//! What the worker writes about a webhook's health, on SQLite and PostgreSQL: since when it
//! fails (the earlier time wins, a success or a re-enable clears it), and disabling it once.

use chrono::{TimeDelta, Utc};
use serde_json::json;
use webhook_worker::store::Store;

use crate::support::{both_backends, validated, Backend, TestDb};

both_backends!(
    the_failing_record_keeps_its_first_time_and_clears,
    a_webhook_is_disabled_once_and_re_enabling_clears_its_failing_record,
);

async fn store(db: &TestDb) -> Store {
    Store::connect(db.url(), 2, Some(rand::random()))
        .await
        .expect("the store opens")
}

async fn the_failing_record_keeps_its_first_time_and_clears(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = store(&db).await;
    let webhook = validated(
        "acct",
        json!({"url": "https://example.com/h", "enabled_events": ["*"]}),
    );
    store.insert(&webhook).await.unwrap();
    assert_eq!(store.failing_since(webhook.id).await.unwrap(), None);
    let first = Utc::now() - TimeDelta::hours(1);
    let since = store.mark_failing("acct", webhook.id, first).await.unwrap();
    assert_eq!(since.timestamp_millis(), first.timestamp_millis());
    let again = store
        .mark_failing("acct", webhook.id, Utc::now())
        .await
        .unwrap();
    assert_eq!(again, since, "the earlier time is kept");
    store.clear_failing(webhook.id).await.unwrap();
    assert_eq!(store.failing_since(webhook.id).await.unwrap(), None);
    store.close().await;
}

async fn a_webhook_is_disabled_once_and_re_enabling_clears_its_failing_record(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = store(&db).await;
    let webhook = validated(
        "acct",
        json!({"url": "https://example.com/h", "enabled_events": ["*"]}),
    );
    store.insert(&webhook).await.unwrap();
    store
        .mark_failing("acct", webhook.id, Utc::now())
        .await
        .unwrap();
    assert!(store
        .disable("other", webhook.id, Utc::now())
        .await
        .unwrap()
        .is_none());
    let disabled = store
        .disable("acct", webhook.id, Utc::now())
        .await
        .unwrap()
        .expect("disabled now");
    assert!(disabled.disabled_at.is_some());
    assert!(
        store
            .disable("acct", webhook.id, Utc::now())
            .await
            .unwrap()
            .is_none(),
        "already disabled"
    );
    let mut enabled = disabled.clone();
    enabled.disabled_at = None;
    assert!(store.update(&enabled).await.unwrap());
    assert_eq!(store.failing_since(webhook.id).await.unwrap(), None);
    let stored = store.get("acct", webhook.id).await.unwrap().unwrap();
    assert_eq!(stored.disabled_at, None);
    store.close().await;
}
