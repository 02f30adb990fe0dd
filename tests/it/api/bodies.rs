//! Bad request bodies get a 4xx that says what is wrong, naming the field where there is one,
//! and never a 500: wrong content type, oversized, malformed, not an object, unknown fields,
//! wrong types.

use reqwest::Method;
use serde_json::json;

use crate::support::{
    both_backends, minimal, spawn_app, spawn_app_with, Backend, Settings, TestApp,
};

both_backends!(
    a_wrong_or_missing_content_type_answers_415,
    malformed_json_answers_400,
    a_json_value_that_is_not_an_object_answers_422,
    an_unknown_field_answers_422_naming_it,
    a_wrong_field_type_answers_422_naming_the_field,
    an_oversized_body_answers_413,
);

/// POST and PATCH of `body` (raw bytes) with `content_type`, both expecting `status`.
async fn both_writes(
    app: &TestApp,
    content_type: Option<&str>,
    body: &'static [u8],
    status: u16,
) -> Vec<crate::support::Reply> {
    let id = app.create(&app.token_a, &minimal()).await;
    let mut replies = Vec::new();
    for (method, path) in [
        (Method::POST, "/v1/webhooks".to_string()),
        (Method::PATCH, format!("/v1/webhooks/{id}")),
        (Method::PUT, format!("/v1/webhooks/{id}")),
    ] {
        let mut request = app
            .raw(method.clone(), &path)
            .bearer_auth(&app.token_a)
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let reply = TestApp::read(request).await;
        assert_eq!(reply.status, status, "{method} {path}: {}", reply.text);
        assert!(
            reply.json["errors"][0]["message"].is_string(),
            "{method}: a JSON error: {}",
            reply.text
        );
        replies.push(reply);
    }
    replies
}

async fn a_wrong_or_missing_content_type_answers_415(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = br#"{"url":"https://example.com/","enabled_events":["*"]}"#;
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        both_writes(&app, content_type, body, 415).await;
    }
    // With the right type the same body is accepted, parameters and all.
    let request = app
        .raw(Method::POST, "/v1/webhooks")
        .bearer_auth(&app.token_a)
        .header("content-type", "application/json; charset=utf-8")
        .body(&body[..]);
    TestApp::read(request).await.expect(201);
}

async fn malformed_json_answers_400(backend: Backend) {
    let app = spawn_app(backend).await;
    for body in [
        &br#"{"url": "https://example.com/","#[..],
        b"{url: 1}",
        b"",
        b"\xff\xfe",
    ] {
        let replies = both_writes(&app, Some("application/json"), body, 400).await;
        assert_eq!(replies[0].json["errors"][0].get("field"), None);
    }
}

async fn a_json_value_that_is_not_an_object_answers_422(backend: Backend) {
    let app = spawn_app(backend).await;
    for body in [&b"[]"[..], b"\"text\"", b"null", b"42", b"true"] {
        let replies = both_writes(&app, Some("application/json"), body, 422).await;
        let message = replies[0].json["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains("object"), "{message}");
    }
}

async fn an_unknown_field_answers_422_naming_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut body = minimal();
    body["colour"] = json!("red");
    let reply = app
        .post("/v1/webhooks", &app.token_a, &body)
        .await
        .expect(422);
    assert_eq!(reply.error_fields(), ["colour"]);

    // Read-only fields of the webhook object are not writable either.
    let id = app.create(&app.token_a, &minimal()).await;
    let path = format!("/v1/webhooks/{id}");
    for field in ["id", "object", "created_at", "account_id"] {
        let mut change = json!({"url": "https://example.org/"});
        change[field] = json!("x");
        let reply = app.patch(&path, &app.token_a, &change).await.expect(422);
        assert_eq!(reply.error_fields(), [field]);
    }
    let fetched = app.get(&path, &app.token_a).await.expect(200);
    assert_eq!(fetched.json["url"], minimal()["url"], "nothing was applied");
}

async fn a_wrong_field_type_answers_422_naming_the_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let cases = [
        (json!({"url": 5}), "url"),
        (
            json!({"enabled_events": "business.updated"}),
            "enabled_events",
        ),
        (json!({"enabled_events": ["a", 7]}), "enabled_events[1]"),
        (json!({"include": ["addresses"]}), "include"),
        (json!({"disabled_at": 1700000000}), "disabled_at"),
        (json!({"secret": {"value": "x"}}), "secret"),
        (
            json!({"oidc_access_token_ttl_seconds": "3600"}),
            "oidc_access_token_ttl_seconds",
        ),
        (
            json!({"oidc_access_token_ttl_seconds": 1.5}),
            "oidc_access_token_ttl_seconds",
        ),
        (json!({"oidc_auth_method": true}), "oidc_auth_method"),
    ];
    let id = app.create(&app.token_a, &minimal()).await;
    let path = format!("/v1/webhooks/{id}");
    for (change, field) in cases {
        let mut body = minimal();
        for (key, value) in change.as_object().unwrap() {
            body[key] = value.clone();
        }
        let created = app
            .post("/v1/webhooks", &app.token_a, &body)
            .await
            .expect(422);
        assert_eq!(created.error_fields(), [field], "{change}");
        let updated = app.patch(&path, &app.token_a, &change).await.expect(422);
        assert_eq!(updated.error_fields(), [field], "{change}");
        let message = updated.json["errors"][0]["message"].as_str().unwrap();
        assert!(message.starts_with("must be "), "{message}");
    }
    // The value sent is not repeated back: it might be a secret put in the wrong field.
    let change = json!({"enabled_events": "whsec_misplaced", "oidc_scope": 5});
    let reply = app.patch(&path, &app.token_a, &change).await.expect(422);
    assert!(!reply.text.contains("whsec_misplaced"), "{}", reply.text);
}

async fn an_oversized_body_answers_413(backend: Backend) {
    let settings = Settings {
        max_body_bytes: 2048,
        ..Settings::default()
    };
    let app = spawn_app_with(backend, settings).await;
    let id = app.create(&app.token_a, &minimal()).await;
    let events: Vec<String> = (0..200).map(|i| format!("event.type.{i:04}")).collect();
    let big = json!({"url": "https://example.com/", "enabled_events": events});
    assert!(big.to_string().len() > 2048);
    let reply = app
        .post("/v1/webhooks", &app.token_a, &big)
        .await
        .expect(413);
    let message = reply.json["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("2048"), "{message}");
    app.patch(&format!("/v1/webhooks/{id}"), &app.token_a, &big)
        .await
        .expect(413);
    // Just under the limit is fine.
    let events: Vec<String> = (0..60).map(|i| format!("event.type.{i:04}")).collect();
    let fits = json!({"url": "https://example.com/", "enabled_events": events});
    assert!(fits.to_string().len() < 2048);
    app.post("/v1/webhooks", &app.token_a, &fits)
        .await
        .expect(201);
}
