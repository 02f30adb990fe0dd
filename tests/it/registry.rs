//! The registry under trouble: a row that cannot be decoded is counted (and its events
//! dead-lettered, see `redrive`) while the others deliver; a registry that cannot reload turns stale and not ready; two replicas on one
//! PostgreSQL see each other's changes while both write.

use std::{sync::Arc, time::Duration};

use serde_json::json;
use sqlx::Connection;
use tokio_util::sync::CancellationToken;
use webhook_worker::{
    registry::{Refresh, Registry},
    store::Store,
    telemetry::Metrics,
    webhook::EndpointUrl,
};

use crate::support::{
    eventually, random_key, validated, Backend, InProcessWorker, TestDb, TestReceiver,
};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_row_that_cannot_be_decoded_is_counted_and_newer_webhooks_still_deliver() {
    // The row is spoilt behind the worker's back (no change recorded): only a full reload
    // finds it.
    let worker =
        InProcessWorker::start("[registry]\nrefresh = \"200ms\"\nfull_reload = \"1s\"").await;
    let store = worker.app().registry().store().clone();
    // A row an older version cannot read: an auth method it does not know.
    let odd = validated(
        "acct",
        json!({"url": "http://127.0.0.1:9/x", "enabled_events": ["*"]}),
    );
    store.insert(&odd).await.unwrap();
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(worker.config.database.url.expose())
        .await
        .unwrap();
    sqlx::query("UPDATE webhooks SET oidc_auth_method = 'tls_client_auth' WHERE id = $1")
        .bind(odd.id.to_string())
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    // A newer webhook, written by "another replica": only the change log or a reload brings it.
    let receiver = TestReceiver::start().await;
    let newer = validated(
        "acct",
        json!({"url": receiver.url(), "enabled_events": ["*"]}),
    );
    store.insert(&newer).await.unwrap();
    worker
        .wait_for_metric("registry_rows_unreadable", 1, WAIT)
        .await;
    eventually(WAIT, "the newer webhook loaded", || async {
        worker.app().registry().get(newer.id).is_some()
    })
    .await;
    let (id, _) = worker.publish_event().await;
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].json()["id"], id.as_str());
    assert!(worker.app().registry().is_fresh());
    worker.stop().await;
}

#[tokio::test]
async fn a_registry_that_cannot_reload_turns_stale_and_not_ready() {
    let worker = InProcessWorker::start("[registry]\nrefresh = \"200ms\"").await;
    let base = format!("http://{}", worker.app().api_addr());
    let ready = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    worker.app().registry().store().close().await;
    eventually(WAIT, "the registry to turn stale", || async {
        !worker.app().registry().is_fresh()
    })
    .await;
    assert!(worker.app().registry().snapshot_age() >= Duration::from_millis(600));
    let answer = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(answer.status(), 503);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["checks"]["registry"], "not_ready", "{body}");
    worker.stop().await;
}

/// One replica: its own store (pool) and registry on the shared database, checking for
/// changes every `refresh` (and loading everything every `full`) as the application does.
pub(crate) async fn replica_with(
    url: &str,
    key: Option<[u8; 32]>,
    refresh: Refresh,
    cancel: &CancellationToken,
) -> Arc<Registry> {
    let store = Store::connect(url, 4, key).await.unwrap();
    let registry = Registry::load(store, Metrics::new()).await.unwrap();
    tokio::spawn(
        registry
            .clone()
            .refresh_until_cancelled(refresh, cancel.clone()),
    );
    registry
}

/// [`replica_with`] checking for changes every `refresh`, loading everything as often.
async fn replica(
    url: &str,
    key: [u8; 32],
    refresh: Duration,
    cancel: &CancellationToken,
) -> Arc<Registry> {
    let periods = Refresh {
        changes: refresh,
        full: refresh,
    };
    replica_with(url, Some(key), periods, cancel).await
}

/// Writes as the API does (the database, then the local registry), as fast as it can.
async fn keep_writing(registry: Arc<Registry>, cancel: CancellationToken) {
    let mut webhook = validated(
        "busy",
        json!({"url": "http://127.0.0.1:9/busy", "enabled_events": ["*"]}),
    );
    registry.store().insert(&webhook).await.unwrap();
    while !cancel.is_cancelled() {
        webhook.updated_at = chrono::Utc::now();
        registry.store().update(&webhook).await.unwrap();
        registry.upsert(webhook.clone());
    }
}

#[tokio::test]
async fn two_replicas_on_postgres_see_each_others_changes_within_two_refreshes_under_load() {
    const REFRESH: Duration = Duration::from_millis(500);
    let db = TestDb::new(Backend::Postgres).await;
    let key = crate::support::decode_key(&random_key());
    let cancel = CancellationToken::new();
    let a = replica(db.url(), key, REFRESH, &cancel).await;
    let b = replica(db.url(), key, REFRESH, &cancel).await;
    // Several writers on each: a local change lands during nearly every reload.
    let writers: Vec<_> = [&a, &b, &a, &b, &a, &b]
        .into_iter()
        .map(|registry| tokio::spawn(keep_writing(registry.clone(), cancel.clone())))
        .collect();
    tokio::time::sleep(REFRESH).await;
    for (writer, reader) in [(&a, &b), (&b, &a)] {
        for _ in 0..3 {
            let webhook = validated(
                "acct",
                json!({"url": "http://127.0.0.1:9/x", "enabled_events": ["*"]}),
            );
            writer.store().insert(&webhook).await.unwrap();
            writer.upsert(webhook.clone());
            let what = "the other replica to see the change within two refreshes";
            eventually(REFRESH * 2, what, || async {
                reader.get(webhook.id).is_some()
            })
            .await;
        }
    }
    cancel.cancel();
    for writer in writers {
        writer.await.unwrap();
    }
    for registry in [a, b] {
        registry.store().close().await;
    }
}

/// Waits until `seen` holds for `registry`; panics after `limit`.
pub(crate) async fn wait_until(
    registry: &Registry,
    limit: Duration,
    seen: impl Fn(&Registry) -> bool,
) {
    eventually(limit, "the change to arrive", || async { seen(registry) }).await
}

/// Sessions on the test's database whose last statement was a `LISTEN`: one per replica that
/// listens for changes (the listening connection runs nothing else).
pub(crate) async fn listening_sessions(db: &TestDb) -> i64 {
    let mut connection = sqlx::PgConnection::connect(db.url()).await.unwrap();
    let listening = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND query ILIKE 'LISTEN %'",
    )
    .fetch_one(&mut connection)
    .await
    .unwrap();
    let _ = connection.close().await;
    listening
}

#[tokio::test]
async fn on_postgres_another_replicas_change_arrives_at_once_through_notify() {
    // Full reloads a minute apart: only a notification can bring a change within seconds.
    const REFRESH: Duration = Duration::from_secs(60);
    const AT_ONCE: Duration = Duration::from_secs(3);
    let db = TestDb::new(Backend::Postgres).await;
    let key = crate::support::decode_key(&random_key());
    let cancel = CancellationToken::new();
    let a = replica(db.url(), key, REFRESH, &cancel).await;
    let b = replica(db.url(), key, REFRESH, &cancel).await;
    for registry in [&a, &b] {
        tokio::spawn(registry.clone().listen_until_cancelled(cancel.clone()));
    }
    // A change made before a replica listens would wait for the minute's reload.
    eventually(WAIT, "both replicas to LISTEN", || async {
        match listening_sessions(&db).await {
            2 => Ok(()),
            n => Err(format!("{n} listen")),
        }
    })
    .await;

    let mut webhook = validated(
        "acct",
        json!({"url": "http://127.0.0.1:9/a", "enabled_events": ["*"]}),
    );
    a.store().insert(&webhook).await.unwrap();
    a.upsert(webhook.clone());
    wait_until(&b, AT_ONCE, |r| r.get(webhook.id).is_some()).await;

    webhook.url = EndpointUrl::parse("http://127.0.0.1:9/b").unwrap();
    b.store().update(&webhook).await.unwrap();
    b.upsert(webhook.clone());
    wait_until(&a, AT_ONCE, |r| {
        r.get(webhook.id)
            .is_some_and(|w| w.url.as_str().ends_with("/b"))
    })
    .await;

    a.store().delete("acct", webhook.id).await.unwrap();
    a.remove(webhook.id);
    wait_until(&b, AT_ONCE, |r| r.get(webhook.id).is_none()).await;
    cancel.cancel();
    for registry in [a, b] {
        registry.store().close().await;
    }
}
