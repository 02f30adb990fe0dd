//! Bearer tokens, and that each token sees only its own account's webhooks.

use reqwest::{header::HeaderValue, Method};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::support::{both_backends, minimal, spawn_app, Backend, TestApp};

both_backends!(
    every_v1_route_answers_401_without_a_token,
    a_wrong_token_answers_401,
    a_malformed_authorization_header_answers_401,
    the_bearer_scheme_is_case_insensitive,
    another_accounts_webhook_cannot_be_seen,
    another_accounts_webhook_cannot_be_updated_or_deleted,
);

/// Every authenticated route with a body where it takes one.
fn routes(id: &str) -> Vec<(Method, String, Option<serde_json::Value>)> {
    let one = format!("/v1/webhooks/{id}");
    vec![
        (Method::POST, "/v1/webhooks".into(), Some(minimal())),
        (Method::GET, "/v1/webhooks".into(), None),
        (Method::GET, one.clone(), None),
        (
            Method::PATCH,
            one.clone(),
            Some(json!({"url": "https://evil.test/"})),
        ),
        (
            Method::PUT,
            one.clone(),
            Some(json!({"url": "https://evil.test/"})),
        ),
        (Method::DELETE, one, None),
    ]
}

/// Sends every route with `authorization` (or none) and expects a 401 with the challenge.
async fn all_unauthorized(app: &TestApp, id: &str, authorization: Option<HeaderValue>) {
    for (method, path, body) in routes(id) {
        let mut request = app.raw(method.clone(), &path);
        if let Some(value) = &authorization {
            request = request.header("authorization", value.clone());
        }
        if let Some(body) = &body {
            request = request.json(body);
        }
        let reply = TestApp::read(request).await;
        assert_eq!(reply.status, 401, "{method} {path}: {}", reply.text);
        assert_eq!(
            reply.headers["www-authenticate"], "Bearer",
            "{method} {path}"
        );
        let message = reply.json["errors"][0]["message"].as_str().unwrap_or("");
        assert!(message.contains("Bearer"), "{method} {path}: {message}");
    }
    // Nothing was created, changed or deleted.
    let list = app.get("/v1/webhooks", &app.token_a).await.expect(200);
    assert_eq!(list.json["total_count"], 1, "{}", list.text);
    assert_eq!(list.json["data"][0]["url"], minimal()["url"]);
}

async fn every_v1_route_answers_401_without_a_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create(&app.token_a, &minimal()).await;
    all_unauthorized(&app, &id, None).await;
}

async fn a_wrong_token_answers_401(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create(&app.token_a, &minimal()).await;
    let wrong = HeaderValue::from_static("Bearer whk_not_a_configured_token");
    all_unauthorized(&app, &id, Some(wrong)).await;
    // The configured hash is not itself a credential.
    let hash = hex::encode(Sha256::digest(app.token_a.as_bytes()));
    let as_token = HeaderValue::from_str(&format!("Bearer {hash}")).unwrap();
    all_unauthorized(&app, &id, Some(as_token)).await;
}

async fn a_malformed_authorization_header_answers_401(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create(&app.token_a, &minimal()).await;
    let token = &app.token_a;
    for value in [
        format!("Basic {token}"),
        format!("Token {token}"),
        token.to_string(),
        "Bearer".to_string(),
        "Bearer    ".to_string(),
    ] {
        let header = HeaderValue::from_str(&value).unwrap();
        all_unauthorized(&app, &id, Some(header)).await;
    }
    // Bytes that are not text.
    let header = HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap();
    all_unauthorized(&app, &id, Some(header)).await;
}

async fn the_bearer_scheme_is_case_insensitive(backend: Backend) {
    let app = spawn_app(backend).await;
    let request = app
        .raw(Method::GET, "/v1/webhooks")
        .header("authorization", format!("bearer {}", app.token_a));
    TestApp::read(request).await.expect(200);
}

async fn another_accounts_webhook_cannot_be_seen(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create(&app.token_a, &minimal()).await;

    let theirs = app
        .get(&format!("/v1/webhooks/{id}"), &app.token_b)
        .await
        .expect(404);
    let missing = app
        .get(
            &format!("/v1/webhooks/{}", uuid::Uuid::new_v4()),
            &app.token_b,
        )
        .await
        .expect(404);
    assert_eq!(
        theirs.json, missing.json,
        "another account's id must look missing"
    );

    let list_b = app.get("/v1/webhooks", &app.token_b).await.expect(200);
    assert_eq!(list_b.json["total_count"], 0);
    assert_eq!(list_b.json["data"], json!([]));
    let list_a = app.get("/v1/webhooks", &app.token_a).await.expect(200);
    assert_eq!(list_a.json["total_count"], 1);
    assert_eq!(list_a.json["data"][0]["id"], id.as_str());
}

async fn another_accounts_webhook_cannot_be_updated_or_deleted(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create(&app.token_a, &minimal()).await;
    let path = format!("/v1/webhooks/{id}");
    let change = json!({"url": "https://attacker.example/"});
    app.patch(&path, &app.token_b, &change).await.expect(404);
    app.put(&path, &app.token_b, &change).await.expect(404);
    app.delete(&path, &app.token_b).await.expect(404);

    let mine = app.get(&path, &app.token_a).await.expect(200);
    assert_eq!(mine.json["url"], minimal()["url"]);
    let in_registry = app
        .registry
        .get(id.parse().unwrap())
        .expect("still registered");
    assert_eq!(in_registry.url, "https://example.com/hooks");
}
