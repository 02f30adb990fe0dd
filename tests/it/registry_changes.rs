//! The incremental registry: a change made through one replica's API reaches another through
//! NOTIFY (PostgreSQL) or the change log (both databases, NOTIFY missed), with full reloads far
//! apart; a deletion too; a row another version wrote unreadable still becomes a placeholder; a
//! replica whose mark fell behind the pruned log loads everything; and a full reload decodes
//! only the rows whose stored form changed.

use std::{sync::Arc, time::Duration};

use serde_json::json;
use tokio_util::sync::CancellationToken;
use webhook_worker::{
    registry::{Refresh, Registry},
    store::Store,
    telemetry::Metrics,
};

use crate::{
    registry::{listening_sessions, replica_with, wait_until},
    support::{
        eventually, minimal, spawn_app_with, validated, with, Backend, Settings, TestApp, TestDb,
    },
};

/// Full reloads an hour apart: a change seen within a test came another way.
const NEVER: Duration = Duration::from_secs(3600);
const WAIT: Duration = Duration::from_secs(10);

/// Replica A: an API on its own database without a key (no secret is written, so replica B
/// reads every row whatever its key).
async fn replica_a(backend: Backend) -> TestApp {
    let settings = Settings {
        encryption_key: false,
        ..Settings::default()
    };
    spawn_app_with(backend, settings).await
}

/// Creates, updates and deletes a webhook through `a`'s API; `b` sees each within `limit`.
async fn api_changes_reach(a: &TestApp, b: &Registry, limit: Duration) {
    let created = a
        .post("/v1/webhooks", &a.token_a, &minimal())
        .await
        .expect(201);
    let id = created.json["id"].as_str().unwrap().parse().unwrap();
    wait_until(b, limit, |r| r.get(id).is_some()).await;

    let path = format!("/v1/webhooks/{id}");
    let patch = json!({"url": "https://example.com/moved"});
    a.patch(&path, &a.token_a, &patch).await.expect(200);
    wait_until(b, limit, |r| {
        r.get(id)
            .is_some_and(|w| w.url.as_str().ends_with("/moved"))
    })
    .await;

    a.delete(&path, &a.token_a).await.expect(200);
    wait_until(b, limit, |r| r.get(id).is_none()).await;
}

#[tokio::test]
async fn a_change_through_one_replicas_api_reaches_another_at_once_on_postgres_by_notify() {
    let a = replica_a(Backend::Postgres).await;
    let cancel = CancellationToken::new();
    // Changes checked every minute: only a notification brings one within a second or two.
    let periods = Refresh {
        changes: Duration::from_secs(60),
        full: NEVER,
    };
    let b = replica_with(a.db.url(), None, periods, &cancel).await;
    tokio::spawn(b.clone().listen_until_cancelled(cancel.clone()));
    eventually(WAIT, "replica B to LISTEN", || async {
        listening_sessions(&a.db).await == 1
    })
    .await;
    api_changes_reach(&a, &b, Duration::from_secs(2)).await;
    cancel.cancel();
    b.store().close().await;
}

/// B does not listen: only its check of the change log, every 200 ms, can bring A's changes.
async fn api_changes_reach_through_the_change_log(backend: Backend) {
    let a = replica_a(backend).await;
    let cancel = CancellationToken::new();
    let periods = Refresh {
        changes: Duration::from_millis(200),
        full: NEVER,
    };
    let b = replica_with(a.db.url(), None, periods, &cancel).await;
    api_changes_reach(&a, &b, WAIT).await;
    assert!(
        b.is_fresh(),
        "checking the change log keeps the registry fresh"
    );
    cancel.cancel();
    b.store().close().await;
}

#[tokio::test]
async fn on_postgres_a_change_whose_notification_was_missed_arrives_through_the_change_log() {
    api_changes_reach_through_the_change_log(Backend::Postgres).await;
}

#[tokio::test]
async fn on_sqlite_another_replicas_change_arrives_through_the_change_log() {
    api_changes_reach_through_the_change_log(Backend::Sqlite).await;
}

/// A replica's own store and registry on `db`, with no refresh loop: the test drives it.
async fn idle_replica(db: &TestDb) -> Arc<Registry> {
    let store = Store::connect(db.url(), 2, None).await.unwrap();
    Registry::load(store, Metrics::new()).await.unwrap()
}

async fn pool(db: &TestDb) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(db.url()).await.unwrap()
}

#[tokio::test]
async fn a_row_another_version_wrote_unreadable_becomes_a_placeholder_through_the_change_log() {
    let db = TestDb::new(Backend::Sqlite).await;
    let a = idle_replica(&db).await;
    let cancel = CancellationToken::new();
    let periods = Refresh {
        changes: Duration::from_millis(200),
        full: NEVER,
    };
    let b = replica_with(db.url(), None, periods, &cancel).await;
    let webhook = validated(
        "acct",
        with(json!({"enabled_events": ["business.updated"]})),
    );
    a.store().insert(&webhook).await.unwrap();
    wait_until(&b, WAIT, |r| r.get(webhook.id).is_some()).await;
    // A newer version writes a value this one cannot read, and records the change as it must.
    let pool = pool(&db).await;
    sqlx::query("UPDATE webhooks SET oidc_auth_method = 'tls_client_auth' WHERE id = $1")
        .bind(webhook.id.to_string())
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO webhook_changes (seq, webhook_id, changed_at) \
         SELECT MAX(seq) + 1, $1, '2026-12-05T00:00:00.000Z' FROM webhook_changes",
    )
    .bind(webhook.id.to_string())
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    wait_until(&b, WAIT, |r| r.unreadable(webhook.id).is_some()).await;
    assert!(b.get(webhook.id).is_none());
    assert_eq!(b.unreadable_count(), 1);
    assert_eq!(b.matching_unreadable("acct", "business.updated").len(), 1);
    cancel.cancel();
}

#[tokio::test]
async fn a_replica_whose_mark_fell_behind_the_pruned_change_log_loads_everything_again() {
    let db = TestDb::new(Backend::Sqlite).await;
    let a = idle_replica(&db).await;
    let b = idle_replica(&db).await;
    let hooks: Vec<_> = (0..3).map(|_| validated("acct", with(json!({})))).collect();
    for webhook in &hooks {
        a.store().insert(webhook).await.unwrap();
    }
    a.store().delete("acct", hooks[0].id).await.unwrap();
    let in_an_hour = chrono::Utc::now() + chrono::TimeDelta::hours(1);
    assert_eq!(a.store().prune_changes(in_an_hour).await.unwrap(), 3);
    b.apply_changes().await.unwrap();
    assert!(b.get(hooks[0].id).is_none());
    assert!(b.get(hooks[1].id).is_some() && b.get(hooks[2].id).is_some());
    // The newest change is never pruned: numbering goes on from it.
    let next = validated("acct", with(json!({})));
    a.store().insert(&next).await.unwrap();
    b.apply_changes().await.unwrap();
    assert!(b.get(next.id).is_some());
}

#[tokio::test]
async fn a_full_reload_decodes_again_only_the_rows_whose_stored_form_changed() {
    let db = TestDb::new(Backend::Sqlite).await;
    let a = idle_replica(&db).await;
    let (same, changed) = (
        validated("acct", with(json!({}))),
        validated("acct", with(json!({}))),
    );
    a.store().insert(&same).await.unwrap();
    a.store().insert(&changed).await.unwrap();
    let b = idle_replica(&db).await;
    let (same_before, changed_before) = (b.get(same.id).unwrap(), b.get(changed.id).unwrap());
    // Changed behind the worker's back: no change recorded, only a full reload sees it.
    let pool = pool(&db).await;
    sqlx::query("UPDATE webhooks SET url = 'https://example.com/other' WHERE id = $1")
        .bind(changed.id.to_string())
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    b.reload().await.unwrap();
    assert!(
        Arc::ptr_eq(&same_before, &b.get(same.id).unwrap()),
        "kept, not decoded again"
    );
    let changed_after = b.get(changed.id).unwrap();
    assert!(!Arc::ptr_eq(&changed_before, &changed_after));
    assert!(changed_after.url.as_str().ends_with("/other"));
}
