//! Dead letters by webhook and redrive as a job, end to end on a running worker (role `all`) on
//! SQLite and PostgreSQL: a tenant's redrive behind another tenant's 10,000 letters, a webhook
//! disabled for failing keeping its pending deliveries, an event for a webhook whose secret cannot
//! be decrypted, and the list route's pages and account scope.

use std::{collections::HashSet, time::Duration};

use lapin::{
    options::BasicPublishOptions,
    types::{AMQPValue, FieldTable},
    BasicProperties,
};
use serde_json::{json, Value};
use sha2::Digest;
use uuid::Uuid;
use webhook_worker::{
    cli::Role,
    dead_reason::DeadReason,
    store::dead_letters::{time_ordered_id, NewDeadLetter},
};

use crate::support::{
    both_backends, event, eventually, Backend, InProcessWorker, TestDb, TestReceiver,
};

const WAIT: Duration = Duration::from_secs(60);
const TOKEN: &str = "whk_test_redrive_acct";
const OTHER_TOKEN: &str = "whk_test_redrive_other";

fn config(extra: &str) -> String {
    let hash = |t: &str| hex::encode(sha2::Sha256::digest(t.as_bytes()));
    format!(
        "[api]\ntokens = [{{ account_id = \"acct\", token_sha256 = \"{}\" }}, \
         {{ account_id = \"other\", token_sha256 = \"{}\" }}]\n{extra}",
        hash(TOKEN),
        hash(OTHER_TOKEN)
    )
}

async fn call(worker: &InProcessWorker, post: bool, path: &str, token: &str) -> (u16, Value) {
    let url = format!("http://{}{path}", worker.app().api_addr());
    let client = reqwest::Client::new();
    let request = if post {
        client.post(url)
    } else {
        client.get(url)
    };
    let response = request.bearer_auth(token).send().await.expect("answered");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Polls the webhook's dead letters until there are `n`; returns them (newest first).
async fn wait_for_letters(worker: &InProcessWorker, webhook: Uuid, n: i64) -> Vec<Value> {
    let path = format!("/v1/webhooks/{webhook}/dead_letters?per_page=100");
    eventually(WAIT, format_args!("{n} letters at {path}"), || async {
        let (status, body) = call(worker, false, &path, TOKEN).await;
        assert_eq!(status, 200, "{body}");
        // The page itself, not `total_count`: the two are read by separate queries, so a letter
        // recorded in between can be counted before it is listed.
        let data = body["data"].as_array().cloned().unwrap_or_default();
        if data.len() as i64 >= n.min(100) {
            Ok(data)
        } else {
            Err(body)
        }
    })
    .await
}

/// Starts a redrive (202) and waits for its job to end; returns the ended job.
async fn redrive(worker: &InProcessWorker, webhook: Uuid) -> Value {
    let (status, job) = call(
        worker,
        true,
        &format!("/v1/webhooks/{webhook}/redrive"),
        TOKEN,
    )
    .await;
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["object"], "redrive", "{job}");
    let id = job["id"].as_str().expect("a job id").to_string();
    let path = format!("/v1/webhooks/{webhook}/redrive/{id}");
    eventually(WAIT, format_args!("the job at {path} to end"), || async {
        let (status, job) = call(worker, false, &path, TOKEN).await;
        assert_eq!(status, 200, "{job}");
        if job["status"] != "running" {
            Ok(job)
        } else {
            Err(job)
        }
    })
    .await
}

/// The event ids of the deliveries `receiver` got from the `from`-th on.
fn event_ids(receiver: &TestReceiver, from: usize) -> Vec<String> {
    receiver.received()[from..]
        .iter()
        .filter_map(|r| r.header("x-webhook-event-id"))
        .collect()
}

/// Puts `n` dead letters of webhook `webhook` (account `other`) in the table, in one
/// transaction, and their copies in the broker's dead-letter queue.
async fn other_tenants_letters(worker: &InProcessWorker, webhook: Uuid, n: usize) {
    let now = chrono::Utc::now();
    let (_, body) = event("business.updated");
    let body = String::from_utf8(body).unwrap();
    let rows: Vec<NewDeadLetter> = (0..n)
        .map(|i| NewDeadLetter {
            id: time_ordered_id(),
            account_id: "other".into(),
            webhook_id: webhook,
            event_id: format!("other-event-{i}"),
            event_type: "business.updated".into(),
            reason: DeadReason::RetriesExhausted,
            detail: "http_500".into(),
            attempts: 2,
            last_status: Some(500),
            body: body.clone(),
            created_at: now,
        })
        .collect();
    let store = worker.app().registry().store();
    store.insert_dead_letters(&rows).await.unwrap();
    let mut headers = FieldTable::default();
    headers.insert(
        "x-dead-reason".into(),
        AMQPValue::LongString("retries_exhausted".into()),
    );
    headers.insert(
        "x-webhook-id".into(),
        AMQPValue::LongString(webhook.to_string().into()),
    );
    headers.insert("account_id".into(), AMQPValue::LongString("other".into()));
    for chunk in rows.chunks(500) {
        let mut confirms = Vec::new();
        for row in chunk {
            let properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_message_id(row.event_id.clone().into())
                .with_headers(headers.clone());
            let confirm = worker
                .channel
                .basic_publish(
                    "",
                    &worker.names.dead,
                    BasicPublishOptions::default(),
                    row.body.as_bytes(),
                    properties,
                )
                .await
                .unwrap();
            confirms.push(confirm);
        }
        for confirm in futures_util::future::join_all(confirms).await {
            confirm.unwrap();
        }
    }
}

both_backends!(
    a_redrive_behind_10000_letters_of_another_account_sends_its_5_once_and_reports_5_of_5,
    re_enabling_a_webhook_disabled_for_failing_then_redriving_delivers_its_pending_deliveries,
    an_event_for_a_webhook_whose_secret_cannot_be_decrypted_is_delivered_once_fixed_and_redriven,
    a_dead_letter_is_recorded_once_the_database_takes_writes_again,
);

async fn a_dead_letter_is_recorded_once_the_database_takes_writes_again(backend: Backend) {
    let db = TestDb::new(backend).await;
    let toml = config("[delivery]\nretry_schedule = [\"100ms\"]");
    let worker = InProcessWorker::start_on(Some(db.url()), &toml, Role::All).await;
    let receiver = TestReceiver::start().await;
    receiver.always(500);
    let webhook = worker.subscribe(&receiver).await;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(db.url()).await.unwrap();
    // The table cannot be written, as while the database refuses writes.
    sqlx::query("ALTER TABLE dead_letters RENAME TO dead_letters_away")
        .execute(&pool)
        .await
        .unwrap();
    let (id, _) = worker.publish_event().await;
    worker.wait_for_ready(&worker.names.dead, 1, WAIT).await;
    // Long enough for the writer to have tried and failed (it flushes every 200 ms).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(worker.metric("dead_letters_recorded_total"), 0);
    sqlx::query("ALTER TABLE dead_letters_away RENAME TO dead_letters")
        .execute(&pool)
        .await
        .unwrap();
    let letters = wait_for_letters(&worker, webhook.id, 1).await;
    assert_eq!(letters[0]["event_id"], id.as_str());
    assert_eq!(worker.metric("dead_letters_recorded_total"), 1);
    assert_eq!(worker.metric("dead_letters_unrecorded_total"), 0);
    pool.close().await;
    worker.stop().await;
}

async fn a_redrive_behind_10000_letters_of_another_account_sends_its_5_once_and_reports_5_of_5(
    backend: Backend,
) {
    let toml = config("[delivery]\nretry_schedule = [\"100ms\"]");
    let db = TestDb::new(backend).await;
    let worker = InProcessWorker::start_on(Some(db.url()), &toml, Role::All).await;
    let (theirs, ours) = (TestReceiver::start().await, TestReceiver::start().await);
    let other = worker
        .add_webhook(
            "other",
            json!({"url": theirs.url(), "enabled_events": ["*"]}),
        )
        .await;
    other_tenants_letters(&worker, other.id, 10_000).await;
    worker
        .wait_for_ready(&worker.names.dead, 10_000, WAIT)
        .await;

    ours.always(500);
    let webhook = worker.subscribe(&ours).await;
    let mut ids = HashSet::new();
    for _ in 0..5 {
        ids.insert(worker.publish_event().await.0);
    }
    let letters = wait_for_letters(&worker, webhook.id, 5).await;
    assert!(
        letters.iter().all(|l| l["reason"] == "retries_exhausted"),
        "{letters:?}"
    );
    // Every letter also went to the broker's dead-letter queue.
    worker
        .wait_for_ready(&worker.names.dead, 10_005, WAIT)
        .await;

    ours.always(200);
    let before = ours.count();
    let job = redrive(&worker, webhook.id).await;
    assert_eq!(
        (&job["status"], &job["total"], &job["redriven"]),
        (&json!("succeeded"), &json!(5), &json!(5)),
        "{job}"
    );
    ours.wait_for(before + 5, WAIT).await;
    let redriven = event_ids(&ours, before);
    assert_eq!(
        redriven.iter().collect::<HashSet<_>>(),
        ids.iter().collect(),
        "each once"
    );

    // A second redrive has nothing left to send.
    let again = redrive(&worker, webhook.id).await;
    assert_eq!(
        (&again["total"], &again["redriven"]),
        (&json!(0), &json!(0)),
        "{again}"
    );
    worker.until_quiet(|| ours.count()).await;
    assert_eq!(ours.count(), before + 5, "no letter sent twice");
    let letters = wait_for_letters(&worker, webhook.id, 5).await;
    assert!(
        letters.iter().all(|l| l["redriven_at"].is_string()),
        "{letters:?}"
    );
    // The other account's letters were not touched: none sent, all still pending.
    assert_eq!(theirs.count(), 0);
    let store = worker.app().registry().store();
    let pending = store
        .count_pending_dead_letters("other", other.id)
        .await
        .unwrap();
    assert_eq!(pending, 10_000);
    // Nor can it redrive, or read, this one.
    let path = format!(
        "/v1/webhooks/{}/redrive/{}",
        webhook.id,
        job["id"].as_str().unwrap()
    );
    assert_eq!(call(&worker, false, &path, OTHER_TOKEN).await.0, 404);
    let path = format!("/v1/webhooks/{}/redrive", webhook.id);
    assert_eq!(call(&worker, true, &path, OTHER_TOKEN).await.0, 404);
    worker.stop().await;
}

async fn re_enabling_a_webhook_disabled_for_failing_then_redriving_delivers_its_pending_deliveries(
    backend: Backend,
) {
    let schedule = vec!["\"300ms\""; 30].join(", ");
    let toml = config(&format!(
        "[delivery]\ndisable_after = \"2s\"\nretry_schedule = [{schedule}]"
    ));
    let db = TestDb::new(backend).await;
    let worker = InProcessWorker::start_on(Some(db.url()), &toml, Role::All).await;
    let receiver = TestReceiver::start().await;
    receiver.always(500);
    let webhook = worker.subscribe(&receiver).await;
    let mut ids = HashSet::new();
    for _ in 0..3 {
        ids.insert(worker.publish_event().await.0);
    }
    worker
        .wait_for_metric("webhooks_disabled_total{reason=\"failing\"}", 1, WAIT)
        .await;
    // Each delivery pending when it was disabled is kept as a dead letter for it.
    let letters = wait_for_letters(&worker, webhook.id, 3).await;
    assert_eq!(letters.len(), 3, "{letters:?}");
    assert!(
        letters.iter().all(|l| l["reason"] == "webhook_disabled"),
        "{letters:?}"
    );
    let dead: HashSet<String> = letters
        .iter()
        .filter_map(|l| l["event_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(dead, ids);

    receiver.always(200);
    let url = format!(
        "http://{}/v1/webhooks/{}",
        worker.app().api_addr(),
        webhook.id
    );
    let reply = reqwest::Client::new()
        .patch(url)
        .bearer_auth(TOKEN)
        .json(&json!({"disabled_at": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let before = receiver.count();
    let job = redrive(&worker, webhook.id).await;
    assert_eq!(
        (&job["status"], &job["redriven"]),
        (&json!("succeeded"), &json!(3)),
        "{job}"
    );
    receiver.wait_for(before + 3, WAIT).await;
    let delivered: HashSet<String> = event_ids(&receiver, before).into_iter().collect();
    assert_eq!(delivered, ids);
    worker.stop().await;
}

async fn an_event_for_a_webhook_whose_secret_cannot_be_decrypted_is_delivered_once_fixed_and_redriven(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    // The row is broken and fixed behind the worker's back (no change logged): only a full
    // reload sees it.
    let toml = config("[registry]\nrefresh = \"200ms\"\nfull_reload = \"1s\"");
    let worker = InProcessWorker::start_on(Some(db.url()), &toml, Role::All).await;
    let receiver = TestReceiver::start().await;
    let secret = "whsec_dGhlIHdlYmhvb2sncyBvd24gc2VjcmV0";
    let webhook = worker
        .add_webhook(
            "acct",
            json!({"url": receiver.url(), "enabled_events": ["*"], "secret": secret}),
        )
        .await;
    // Another row's ciphertext is bound to that row: it does not decrypt here, as with a
    // secret written under another key.
    let donor = worker
        .add_webhook(
            "elsewhere",
            json!({"url": receiver.url(), "enabled_events": ["x.y"], "secret": "whsec_b3RoZXI="}),
        )
        .await;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(worker.config.database.url.expose())
        .await
        .unwrap();
    let read = |id: Uuid| {
        sqlx::query_scalar::<_, String>("SELECT secret_enc FROM webhooks WHERE id = $1")
            .bind(id.to_string())
            .fetch_one(&pool)
    };
    let (original, foreign) = (
        read(webhook.id).await.unwrap(),
        read(donor.id).await.unwrap(),
    );
    let set = |value: String| {
        sqlx::query("UPDATE webhooks SET secret_enc = $1 WHERE id = $2")
            .bind(value)
            .bind(webhook.id.to_string())
            .execute(&pool)
    };
    set(foreign).await.unwrap();
    let registry = worker.app().registry().clone();
    eventually(WAIT, "the row read as unreadable", || async {
        registry.unreadable(webhook.id).is_some()
    })
    .await;
    assert_eq!(worker.metric("registry_rows_unreadable"), 1);
    let readyz = reqwest::get(format!("http://{}/readyz", worker.app().api_addr()))
        .await
        .unwrap();
    let readyz: Value = readyz.json().await.unwrap();
    assert_eq!(readyz["registry_rows_unreadable"], 1, "{readyz}");

    let (id, _) = worker.publish_event().await;
    let letters = wait_for_letters(&worker, webhook.id, 1).await;
    assert_eq!(letters[0]["reason"], "webhook_unreadable", "{letters:?}");
    assert_eq!(letters[0]["event_id"], id.as_str());
    let in_queue = worker.dead_letters(1, WAIT).await;
    let reason = in_queue[0].0.inner().get("x-dead-reason").cloned();
    assert_eq!(
        reason,
        Some(AMQPValue::LongString("webhook_unreadable".into()))
    );
    worker.until_quiet(|| receiver.count()).await;
    assert_eq!(receiver.count(), 0);

    // The key is fixed: the stored secret decrypts again.
    set(original).await.unwrap();
    eventually(WAIT, "the row read again", || async {
        registry.get(webhook.id).is_some()
    })
    .await;
    let job = redrive(&worker, webhook.id).await;
    assert_eq!(
        (&job["status"], &job["redriven"]),
        (&json!("succeeded"), &json!(1)),
        "{job}"
    );
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(
        got[0].header("x-webhook-event-id").as_deref(),
        Some(id.as_str())
    );
    assert!(
        got[0].header("x-middesk-signature-256").is_some(),
        "signed with its secret"
    );
    pool.close().await;
    worker.stop().await;
}

both_backends!(the_dead_letter_list_is_paginated_newest_first_and_scoped_to_the_account);

async fn the_dead_letter_list_is_paginated_newest_first_and_scoped_to_the_account(
    backend: Backend,
) {
    use crate::support::{spawn_app, with, ACCOUNT_A};
    let app = spawn_app(backend).await;
    let secret = "whsec_c2VjcmV0LW5ldmVyLXNob3du";
    let id = app
        .create(&app.token_a, &with(json!({"secret": secret})))
        .await;
    let webhook: Uuid = id.parse().unwrap();
    let start = chrono::Utc::now();
    let rows: Vec<NewDeadLetter> = (0..25)
        .map(|i| NewDeadLetter {
            id: time_ordered_id(),
            account_id: ACCOUNT_A.into(),
            webhook_id: webhook,
            event_id: format!("event-{i}"),
            event_type: "business.updated".into(),
            reason: DeadReason::EndpointGone,
            detail: "http_410".into(),
            attempts: 1,
            last_status: Some(410),
            body: "{}".into(),
            created_at: start + chrono::TimeDelta::milliseconds(i),
        })
        .collect();
    let store = app.registry.store();
    store.insert_dead_letters(&rows).await.unwrap();
    // Inserting the same letters again (a batch retried) records nothing twice.
    store.insert_dead_letters(&rows[..3]).await.unwrap();

    let path = format!("/v1/webhooks/{id}/dead_letters");
    let first = app
        .get(&format!("{path}?page=1&per_page=10"), &app.token_a)
        .await
        .expect(200);
    assert_eq!(first.json["object"], "list");
    assert_eq!(
        (
            first.json["total_count"].as_i64(),
            first.json["has_more"].as_bool()
        ),
        (Some(25), Some(true))
    );
    let data = first.json["data"].as_array().unwrap();
    let events: Vec<&str> = data.iter().filter_map(|l| l["event_id"].as_str()).collect();
    let newest: Vec<String> = (15..25).rev().map(|i| format!("event-{i}")).collect();
    assert_eq!(events, newest, "newest first");
    let letter = &data[0];
    assert_eq!(letter["object"], "dead_letter");
    assert_eq!(letter["webhook_id"], id.as_str());
    assert_eq!(letter["reason"], "endpoint_gone");
    assert_eq!(
        (letter["attempts"].as_i64(), letter["last_status"].as_i64()),
        (Some(1), Some(410))
    );
    assert!(
        letter["created_at"].is_string() && letter["redriven_at"].is_null(),
        "{letter}"
    );
    assert!(
        letter.get("account_id").is_none() && letter.get("body").is_none(),
        "{letter}"
    );
    let last = app
        .get(&format!("{path}?page=3&per_page=10"), &app.token_a)
        .await
        .expect(200);
    assert_eq!(last.json["data"].as_array().unwrap().len(), 5);
    assert_eq!(last.json["has_more"], false);
    assert_eq!(last.json["data"][4]["event_id"], "event-0");
    for reply in [&first, &last] {
        assert!(!reply.text.contains(secret), "a secret in {}", reply.text);
    }
    app.get(&format!("{path}?per_page=0"), &app.token_a)
        .await
        .expect(422);
    // Another account's webhook: 404, like a missing one.
    app.get(&path, &app.token_b).await.expect(404);
    app.call(
        reqwest::Method::POST,
        &format!("/v1/webhooks/{id}/redrive"),
        Some(&app.token_b),
        None,
    )
    .await
    .expect(404);

    // A job id answers only under its own webhook and account.
    let sibling = app.create(&app.token_a, &crate::support::minimal()).await;
    let sibling_id: Uuid = sibling.parse().unwrap();
    let (job, started) = store
        .start_redrive_job(ACCOUNT_A, sibling_id, 0, start)
        .await
        .unwrap();
    assert!(started);
    let own = format!("/v1/webhooks/{sibling}/redrive/{}", job.id);
    let shown = app.get(&own, &app.token_a).await.expect(200);
    assert_eq!(
        (shown.json["object"].as_str(), shown.json["total"].as_i64()),
        (Some("redrive"), Some(0))
    );
    app.get(&own, &app.token_b).await.expect(404);
    app.get(
        &format!("/v1/webhooks/{id}/redrive/{}", job.id),
        &app.token_a,
    )
    .await
    .expect(404);
    app.get(
        &format!("/v1/webhooks/{id}/redrive/{}", Uuid::new_v4()),
        &app.token_a,
    )
    .await
    .expect(404);
    app.get(&format!("/v1/webhooks/{id}/redrive/nope"), &app.token_a)
        .await
        .expect(404);
    // While it runs, a second start returns it rather than starting another.
    let (again, started) = store
        .start_redrive_job(ACCOUNT_A, sibling_id, 0, start)
        .await
        .unwrap();
    assert_eq!((again.id, started), (job.id, false));
}
