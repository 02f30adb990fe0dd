//! Each account's writes are rate-limited (`api.write_rate_limit`, `api.write_burst`), key
//! rotation more strictly (`oidc.rotation_rate_limit`): over the limit a write answers 429 in
//! the error format with `Retry-After`, changes nothing, and neither reads nor other accounts
//! are held back.

use reqwest::Method;
use serde_json::json;

use crate::support::{minimal, spawn_app_with, Backend, Reply, Settings, TestApp};

/// Three writes at once, then one a minute: the fourth write of a burst is refused.
const BURST: usize = 3;

async fn app() -> TestApp {
    let settings = Settings {
        api_toml: "write_rate_limit = 1\nwrite_burst = 3",
        extra_toml: "[oidc]\nrotation_rate_limit = 1",
        ..Settings::default()
    };
    spawn_app_with(Backend::Sqlite, settings).await
}

/// A 429 in the error format, naming `key`, with `Retry-After` in whole seconds from 1.
#[track_caller]
fn assert_rate_limited(reply: &Reply, key: &str) -> u64 {
    assert_eq!(reply.status.as_u16(), 429, "body: {}", reply.text);
    let message = reply.json["errors"][0]["message"].as_str().unwrap_or("");
    assert!(message.contains(key), "{}", reply.text);
    let retry_after = reply
        .headers
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no Retry-After in seconds: {:?}", reply.headers));
    assert!(retry_after >= 1, "Retry-After: {retry_after}");
    retry_after
}

#[tokio::test]
async fn the_write_after_a_burst_answers_429_while_reads_and_other_accounts_go_on() {
    let app = app().await;
    let mut ids = Vec::new();
    for _ in 0..BURST {
        ids.push(app.create(&app.token_a, &minimal()).await);
    }
    let refused = app.post("/v1/webhooks", &app.token_a, &minimal()).await;
    let retry_after = assert_rate_limited(&refused, "api.write_rate_limit");
    // One write a minute: the next token is about a minute away.
    assert!(retry_after <= 61, "Retry-After: {retry_after}");
    // Every kind of write counts against the same bucket.
    let path = format!("/v1/webhooks/{}", ids[0]);
    let update = json!({"include": "identifiers"});
    assert_rate_limited(
        &app.patch(&path, &app.token_a, &update).await,
        "api.write_rate_limit",
    );
    assert_rate_limited(
        &app.put(&path, &app.token_a, &update).await,
        "api.write_rate_limit",
    );
    assert_rate_limited(
        &app.delete(&path, &app.token_a).await,
        "api.write_rate_limit",
    );
    // Refused before the broker is asked: this app has none.
    let redrive = app
        .call(
            Method::POST,
            &format!("{path}/redrive"),
            Some(&app.token_a),
            None,
        )
        .await;
    assert_rate_limited(&redrive, "api.write_rate_limit");
    // Reads are not limited, and nothing refused was written.
    let list = app.get("/v1/webhooks", &app.token_a).await.expect(200);
    assert_eq!(list.json["total_count"], BURST, "{}", list.text);
    let one = app.get(&path, &app.token_a).await.expect(200);
    assert!(one.json["include"].is_null(), "{}", one.text);
    // Another account has a bucket of its own.
    app.post("/v1/webhooks", &app.token_b, &minimal())
        .await
        .expect(201);
}

async fn rotate(app: &TestApp, token: &str) -> Reply {
    let path = "/v1/webhooks/oidc_keys/rotate";
    app.call(Method::POST, path, Some(token), None).await
}

#[tokio::test]
async fn a_second_key_rotation_within_the_hour_answers_429() {
    let app = app().await;
    rotate(&app, &app.token_a).await.expect(200);
    let refused = rotate(&app, &app.token_a).await;
    let retry_after = assert_rate_limited(&refused, "oidc.rotation_rate_limit");
    assert!(
        retry_after > 60,
        "one rotation an hour: Retry-After {retry_after}"
    );
    // The keys are still readable; another account rotates; and the refused rotation spent no
    // write of the account's burst (one went to the rotation itself).
    app.get("/v1/webhooks/oidc_keys", &app.token_a)
        .await
        .expect(200);
    rotate(&app, &app.token_b).await.expect(200);
    for _ in 1..BURST {
        app.create(&app.token_a, &minimal()).await;
    }
    let refused = app.post("/v1/webhooks", &app.token_a, &minimal()).await;
    assert_rate_limited(&refused, "api.write_rate_limit");
}
