//! Create, get, update (PATCH and PUT), delete: success answers and 404s, and that this
//! process's registry (what deliveries read) follows every change at once.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{both_backends, minimal, spawn_app, with, Backend};

both_backends!(
    creating_a_webhook_answers_201_with_the_webhook,
    a_created_webhook_can_be_fetched_by_id,
    getting_a_missing_or_malformed_id_answers_404,
    patch_changes_only_the_fields_given,
    put_has_the_same_partial_semantics_as_patch,
    an_explicit_null_clears_an_optional_field,
    a_null_disabled_at_re_enables_the_webhook,
    updating_a_missing_webhook_answers_404,
    deleting_answers_the_deleted_webhook_and_then_404,
);

const FIELDS: [&str; 15] = [
    "object",
    "id",
    "url",
    "enabled_events",
    "include",
    "disabled_at",
    "created_at",
    "updated_at",
    "oidc_auth_method",
    "oidc_client_id",
    "oidc_token_endpoint",
    "oidc_resource_uri",
    "oidc_scope",
    "oidc_access_token_ttl_seconds",
    "signature_format",
];

fn time(value: &Value) -> DateTime<Utc> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{value} is not a timestamp"));
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .with_timezone(&Utc)
}

async fn creating_a_webhook_answers_201_with_the_webhook(backend: Backend) {
    let app = spawn_app(backend).await;
    let before = Utc::now() - chrono::TimeDelta::seconds(1);
    let body = with(json!({"include": "identifiers", "enabled_events": ["*"]}));
    let reply = app
        .post("/v1/webhooks", &app.token_a, &body)
        .await
        .expect(201);

    let webhook = reply.json.as_object().expect("an object");
    let mut keys: Vec<_> = webhook.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut expected = FIELDS.to_vec();
    expected.sort_unstable();
    assert_eq!(keys, expected, "the webhook object's fields");

    assert_eq!(webhook["object"], "webhook");
    let id = Uuid::parse_str(webhook["id"].as_str().unwrap()).expect("a UUID id");
    assert_eq!(id.get_version_num(), 4);
    assert_eq!(webhook["url"], "https://example.com/hooks");
    assert_eq!(webhook["enabled_events"], json!(["*"]));
    assert_eq!(webhook["include"], "identifiers");
    assert_eq!(webhook["disabled_at"], Value::Null);
    assert_eq!(webhook["created_at"], webhook["updated_at"]);
    assert!(time(&webhook["created_at"]) >= before);
    assert_eq!(webhook["oidc_auth_method"], Value::Null);
    assert_eq!(
        reply.headers["location"].to_str().unwrap(),
        format!("/v1/webhooks/{id}")
    );
    // Deliveries on this process see it at once.
    let registered = app.registry.get(id).expect("in the registry");
    assert_eq!(registered.account_id, crate::support::ACCOUNT_A);
    assert!(registered.subscribes("business.created"));
}

async fn a_created_webhook_can_be_fetched_by_id(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = with(json!({
        "disabled_at": "2099-01-01T00:00:00Z",
        "oidc_auth_method": "private_key_jwt",
        "oidc_client_id": "client-1",
        "oidc_token_endpoint": "https://login.example.com/token",
        "oidc_access_token_ttl_seconds": 3600,
        "oidc_scope": "api://hooks/.default",
        "oidc_resource_uri": "https://hooks.example.com",
    }));
    let created = app
        .post("/v1/webhooks", &app.token_a, &body)
        .await
        .expect(201);
    let id = created.json["id"].as_str().unwrap();
    let fetched = app
        .get(&format!("/v1/webhooks/{id}"), &app.token_a)
        .await
        .expect(200);
    assert_eq!(fetched.json, created.json);
    assert_eq!(fetched.json["disabled_at"], "2099-01-01T00:00:00.000Z");
    assert_eq!(fetched.json["oidc_auth_method"], "private_key_jwt");
    assert_eq!(fetched.json["oidc_access_token_ttl_seconds"], 3600);
}

async fn getting_a_missing_or_malformed_id_answers_404(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create(&app.token_a, &minimal()).await;
    let missing = Uuid::new_v4().to_string();
    for id in [missing.as_str(), "not-a-uuid", "123", "%20", "%ff"] {
        let reply = app
            .get(&format!("/v1/webhooks/{id}"), &app.token_a)
            .await
            .expect(404);
        assert_eq!(
            reply.json["errors"][0]["message"], "no such webhook",
            "{id}"
        );
    }
}

/// A webhook with every optional field set.
fn full() -> Value {
    with(json!({
        "include": "addresses,people",
        "secret": "whsec_full_secret",
        "oidc_auth_method": "client_secret",
        "oidc_client_id": "client-1",
        "oidc_client_secret": "oidc-full-secret",
        "oidc_token_endpoint": "https://login.example.com/token",
        "oidc_access_token_ttl_seconds": 600,
        "oidc_scope": "hooks",
    }))
}

async fn partial_update_keeps_omitted_fields(backend: Backend, method: reqwest::Method) {
    let app = spawn_app(backend).await;
    let created = app
        .post("/v1/webhooks", &app.token_a, &full())
        .await
        .expect(201);
    let id = created.json["id"].as_str().unwrap().to_string();
    let path = format!("/v1/webhooks/{id}");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;

    // (The same origin: another would need the client secret again.)
    let change = json!({"url": "https://example.com/new", "enabled_events": ["a.b", "c.d"]});
    let updated = app
        .call(method, &path, Some(&app.token_a), Some(&change))
        .await
        .expect(200);
    let mut expected = created.json.clone();
    expected["url"] = json!("https://example.com/new");
    expected["enabled_events"] = json!(["a.b", "c.d"]);
    expected["updated_at"] = updated.json["updated_at"].clone();
    assert_eq!(updated.json, expected);
    assert!(time(&updated.json["updated_at"]) > time(&created.json["created_at"]));

    let fetched = app.get(&path, &app.token_a).await.expect(200);
    assert_eq!(fetched.json, updated.json);
    let registered = app.registry.get(id.parse().unwrap()).unwrap();
    assert_eq!(registered.url, "https://example.com/new");
    // Write-only fields were kept too.
    assert_eq!(
        registered.secret.as_ref().map(|s| s.expose()),
        Some("whsec_full_secret")
    );
    assert!(registered.oidc.is_some(), "OIDC settings kept");
}

async fn patch_changes_only_the_fields_given(backend: Backend) {
    partial_update_keeps_omitted_fields(backend, reqwest::Method::PATCH).await;
}

async fn put_has_the_same_partial_semantics_as_patch(backend: Backend) {
    partial_update_keeps_omitted_fields(backend, reqwest::Method::PUT).await;
}

async fn an_explicit_null_clears_an_optional_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create(&app.token_a, &full()).await;
    let path = format!("/v1/webhooks/{id}");
    let cleared = json!({
        "include": null,
        "secret": null,
        "oidc_auth_method": null,
        "oidc_client_id": null,
        "oidc_client_secret": null,
        "oidc_token_endpoint": null,
        "oidc_access_token_ttl_seconds": null,
        "oidc_scope": null,
    });
    let reply = app.patch(&path, &app.token_a, &cleared).await.expect(200);
    for field in [
        "include",
        "oidc_auth_method",
        "oidc_client_id",
        "oidc_scope",
    ] {
        assert_eq!(reply.json[field], Value::Null, "{field}");
    }
    let registered = app.registry.get(id.parse().unwrap()).unwrap();
    assert!(registered.secret.is_none());
    assert!(registered.oidc.is_none());
    let stored = app
        .registry
        .store()
        .get(crate::support::ACCOUNT_A, id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(stored.secret.is_none() && stored.oidc.is_none());
}

async fn a_null_disabled_at_re_enables_the_webhook(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = with(json!({"disabled_at": "2020-01-01T00:00:00Z"}));
    let id = app.create(&app.token_a, &body).await;
    let uuid: Uuid = id.parse().unwrap();
    assert!(!app.registry.get(uuid).unwrap().is_enabled_at(Utc::now()));
    let matching = app
        .registry
        .matching(crate::support::ACCOUNT_A, "business.updated");
    assert!(matching.is_empty(), "a disabled webhook gets no deliveries");

    let reply = app
        .patch(
            &format!("/v1/webhooks/{id}"),
            &app.token_a,
            &json!({"disabled_at": null}),
        )
        .await
        .expect(200);
    assert_eq!(reply.json["disabled_at"], Value::Null);
    assert!(app.registry.get(uuid).unwrap().is_enabled_at(Utc::now()));
    let matching = app
        .registry
        .matching(crate::support::ACCOUNT_A, "business.updated");
    assert_eq!(matching.len(), 1);

    // And disabling again through the API works.
    let reply = app
        .patch(
            &format!("/v1/webhooks/{id}"),
            &app.token_a,
            &json!({"disabled_at": "2021-06-01T12:00:00+02:00"}),
        )
        .await
        .expect(200);
    assert_eq!(reply.json["disabled_at"], "2021-06-01T10:00:00.000Z");
}

async fn updating_a_missing_webhook_answers_404(backend: Backend) {
    let app = spawn_app(backend).await;
    let change = json!({"url": "https://example.org/"});
    for id in [Uuid::new_v4().to_string(), "nope".to_string()] {
        let path = format!("/v1/webhooks/{id}");
        app.patch(&path, &app.token_a, &change).await.expect(404);
        app.put(&path, &app.token_a, &change).await.expect(404);
    }
}

async fn deleting_answers_the_deleted_webhook_and_then_404(backend: Backend) {
    let app = spawn_app(backend).await;
    let keep = app.create(&app.token_a, &minimal()).await;
    let created = app
        .post("/v1/webhooks", &app.token_a, &full())
        .await
        .expect(201);
    let id = created.json["id"].as_str().unwrap();
    let path = format!("/v1/webhooks/{id}");

    let deleted = app.delete(&path, &app.token_a).await.expect(200);
    assert_eq!(deleted.json, created.json);
    app.get(&path, &app.token_a).await.expect(404);
    app.delete(&path, &app.token_a).await.expect(404);
    app.delete("/v1/webhooks/not-a-uuid", &app.token_a)
        .await
        .expect(404);
    assert!(app.registry.get(id.parse().unwrap()).is_none());

    let list = app.get("/v1/webhooks", &app.token_a).await.expect(200);
    assert_eq!(list.json["total_count"], 1);
    assert_eq!(list.json["data"][0]["id"], keep.as_str());
}
