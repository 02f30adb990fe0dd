//! The delivery log end to end: attempts recorded by a running worker and read back through the
//! API per webhook and per event (account-scoped), deliveries unaffected when the log cannot be
//! written, and retention. (Dead letters and redrive: `redrive`.)

use std::{collections::HashSet, time::Duration};

use serde_json::Value;
use sha2::Digest;
use webhook_worker::cli::Role;

use crate::support::{eventually, InProcessWorker, TestReceiver};

const WAIT: Duration = Duration::from_secs(30);
const TOKEN: &str = "whk_test_delivery_log_acct";
const OTHER_TOKEN: &str = "whk_test_delivery_log_other";

fn api_toml(extra: &str) -> String {
    let hash = |t: &str| hex::encode(sha2::Sha256::digest(t.as_bytes()));
    format!(
        "[api]\ntokens = [{{ account_id = \"acct\", token_sha256 = \"{}\" }}, \
         {{ account_id = \"other\", token_sha256 = \"{}\" }}]\n{extra}",
        hash(TOKEN),
        hash(OTHER_TOKEN)
    )
}

async fn get(worker: &InProcessWorker, path: &str, token: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("http://{}{path}", worker.app().api_addr()))
        .bearer_auth(token)
        .send()
        .await
        .expect("the API answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Polls `path` until its list holds `n` entries.
async fn wait_for_attempts(worker: &InProcessWorker, path: &str, n: usize) -> Vec<Value> {
    eventually(WAIT, format_args!("{n} attempts at {path}"), || async {
        let (status, body) = get(worker, path, TOKEN).await;
        assert_eq!(status, 200, "{body}");
        let data = body["data"].as_array().cloned().unwrap_or_default();
        if data.len() >= n {
            Ok(data)
        } else {
            Err(body)
        }
    })
    .await
}

#[tokio::test]
async fn a_delivery_failing_once_then_succeeding_shows_two_attempts_in_both_routes() {
    let worker = InProcessWorker::start_as(&api_toml(""), Role::All).await;
    let receiver = TestReceiver::start().await;
    receiver.plan(&[503]);
    let webhook = worker.subscribe(&receiver).await;
    let (event_id, _) = worker.publish_event().await;
    receiver.wait_for(2, WAIT).await;

    let by_webhook = format!("/v1/webhooks/{}/deliveries", webhook.id);
    let attempts = wait_for_attempts(&worker, &by_webhook, 2).await;
    assert_eq!(attempts.len(), 2);
    // Newest first.
    assert_eq!(attempts[0]["attempt"], 2);
    assert_eq!(attempts[0]["outcome"], "delivered");
    assert_eq!(attempts[0]["status"], 200);
    assert_eq!(attempts[0]["error"], Value::Null);
    assert_eq!(attempts[1]["attempt"], 1);
    assert_eq!(attempts[1]["outcome"], "failed");
    assert_eq!(attempts[1]["status"], 503);
    assert_eq!(attempts[1]["error"], "http_503");
    for attempt in &attempts {
        assert_eq!(attempt["object"], "delivery_attempt");
        assert_eq!(attempt["event_id"], event_id.as_str());
        assert_eq!(attempt["event_type"], "business.updated");
        assert_eq!(attempt["webhook_id"], webhook.id.to_string());
        assert!(attempt["duration_ms"].is_i64() && attempt["created_at"].is_string());
        assert!(attempt.get("account_id").is_none());
    }
    let by_event = format!("/v1/events/{event_id}/deliveries");
    assert_eq!(wait_for_attempts(&worker, &by_event, 2).await, attempts);
    let (_, failures) = get(&worker, &format!("{by_webhook}?status=failed"), TOKEN).await;
    assert_eq!(failures["total_count"], 1, "{failures}");
    let (_, by_status) = get(&worker, &format!("{by_webhook}?status=200"), TOKEN).await;
    assert_eq!(by_status["data"][0]["attempt"], 2, "{by_status}");
    let (status, bad) = get(&worker, &format!("{by_webhook}?status=maybe"), TOKEN).await;
    assert_eq!(
        (status, bad["errors"][0]["field"].as_str()),
        (422, Some("status"))
    );

    // Another account sees nothing of it.
    let (status, _) = get(&worker, &by_webhook, OTHER_TOKEN).await;
    assert_eq!(status, 404);
    let (status, body) = get(&worker, &by_event, OTHER_TOKEN).await;
    assert_eq!((status, body["total_count"].as_i64()), (200, Some(0)));
    // An id that does not decode names no event (and is answered as JSON, not axum's text).
    let (status, body) = get(&worker, "/v1/events/%FF%FE/deliveries", TOKEN).await;
    assert_eq!((status, body["total_count"].as_i64()), (200, Some(0)));
    worker.stop().await;
}

#[tokio::test]
async fn deliveries_go_on_when_the_log_cannot_be_written_and_the_loss_is_counted() {
    let worker = InProcessWorker::start_as(&api_toml(""), Role::All).await;
    let receiver = TestReceiver::start().await;
    worker.subscribe(&receiver).await;
    // The log's table vanishes: every insert fails, as with a database that refuses writes.
    sqlx::query("DROP TABLE delivery_attempts")
        .execute(
            &sqlx::AnyPool::connect(worker.config.database.url.expose())
                .await
                .unwrap(),
        )
        .await
        .unwrap();
    let mut ids = HashSet::new();
    for _ in 0..50 {
        ids.insert(worker.publish_event().await.0);
    }
    receiver.wait_for_event_ids(&ids, WAIT).await;
    worker
        .wait_for_metric("delivery_log_dropped_total", 50, WAIT)
        .await;
    assert_eq!(worker.metric("deliveries_total{outcome=\"delivered\"}"), 50);
    worker.stop().await;
}

#[tokio::test]
async fn retention_prunes_attempts_older_than_it() {
    let worker = InProcessWorker::start_as(
        &api_toml("[delivery_log]\nretention = \"3s\"\nprune_interval = \"200ms\"\n"),
        Role::All,
    )
    .await;
    let receiver = TestReceiver::start().await;
    let webhook = worker.subscribe(&receiver).await;
    worker.publish_event().await;
    let path = format!("/v1/webhooks/{}/deliveries", webhook.id);
    wait_for_attempts(&worker, &path, 1).await;
    eventually(WAIT, "the attempts pruned", || async {
        let (_, body) = get(&worker, &path, TOKEN).await;
        if body["total_count"] == 0 {
            Ok(())
        } else {
            Err(body)
        }
    })
    .await;
    worker.stop().await;
}

crate::support::both_backends!(a_batch_of_700_attempts_is_stored_whole_and_read_back_as_recorded);

async fn a_batch_of_700_attempts_is_stored_whole_and_read_back_as_recorded(
    backend: crate::support::Backend,
) {
    use webhook_worker::store::{
        attempts::{AttemptFilter, NewAttempt},
        Store,
    };
    let db = crate::support::TestDb::new(backend).await;
    let store = Store::connect(db.url(), 2, None).await.unwrap();
    let webhook_id = uuid::Uuid::new_v4();
    let created_at = chrono::Utc::now();
    // 700 = 512 + 128 + 32 + 16 + 8 + 4: six statements of different sizes, one transaction.
    let rows: Vec<NewAttempt> = (0..700u32)
        .map(|n| NewAttempt {
            id: uuid::Uuid::new_v4(),
            account_id: "acct".into(),
            webhook_id,
            event_id: format!("event-{n}"),
            event_type: "business.updated".into(),
            attempt: n + 1,
            outcome: if n % 2 == 0 { "delivered" } else { "failed" },
            status: Some(if n % 2 == 0 { 200 } else { 503 }),
            error: (n % 2 == 1).then(|| "http_503".to_string()),
            duration_ms: i64::from(n),
            created_at,
        })
        .collect();
    store.insert_attempts(&rows).await.unwrap();
    let filter = AttemptFilter::Webhook {
        webhook_id,
        outcome: None,
        status: None,
    };
    let (page, total) = store.list_attempts("acct", &filter, 0, 1000).await.unwrap();
    assert_eq!(total, 700);
    let last = page.iter().find(|row| row.event_id == "event-699").unwrap();
    assert_eq!(last.webhook_id, webhook_id.to_string());
    assert_eq!(last.attempt, 700);
    assert_eq!(last.outcome, "failed");
    assert_eq!(last.status, Some(503));
    assert_eq!(last.error.as_deref(), Some("http_503"));
    assert_eq!(last.duration_ms, 699);
    assert_eq!(
        last.created_at,
        webhook_worker::webhook::timestamp(created_at)
    );
    let event = AttemptFilter::Event {
        event_id: "event-0".into(),
    };
    let (page, _) = store.list_attempts("acct", &event, 0, 10).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].error, None);
    store.close().await;
}
