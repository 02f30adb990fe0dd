//! `secret` and `oidc_client_secret` are write-only: accepted and stored, never in a response.
//! The checks search the raw response text, so no field name or encoding can hide a leak.

use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use crate::support::{both_backends, spawn_app, with, Backend, Reply, ACCOUNT_A};

both_backends!(
    secrets_never_appear_in_any_response,
    secrets_are_stored_and_kept_until_changed,
    a_client_secret_goes_only_to_the_token_endpoint_and_client_it_was_given_for,
    a_client_secrets_tokens_go_only_to_the_receiver_scope_and_resource_they_were_given_for,
    a_private_key_jwt_webhook_changes_url_scope_and_resource_without_a_secret,
);

const SECRET: &str = "whsec_first_5f4dcc3b5aa765d61d83";
const CLIENT_SECRET: &str = "oidc_cs_first_e99a18c428cb38d5f260";
const NEW_SECRET: &str = "whsec_second_0d107d09f5bbe40cade3";
const NEW_CLIENT_SECRET: &str = "oidc_cs_second_8621ffdbc5698829397d";

#[track_caller]
fn assert_no_secret(reply: &Reply, what: &str) {
    for secret in [SECRET, CLIENT_SECRET, NEW_SECRET, NEW_CLIENT_SECRET] {
        assert!(
            !reply.text.contains(secret),
            "{what} leaks a secret: {}",
            reply.text
        );
    }
}

/// A webhook object (or each of a list's) has no secret field at all, not even a null one.
#[track_caller]
fn assert_write_only(reply: &Reply) {
    let views = match reply.json["data"].as_array() {
        Some(data) => data.clone(),
        None => vec![reply.json.clone()],
    };
    for view in views {
        assert_eq!(view["object"], "webhook", "{}", reply.text);
        assert!(view.get("secret").is_none(), "{}", reply.text);
        assert!(view.get("oidc_client_secret").is_none(), "{}", reply.text);
    }
}

fn with_secrets() -> serde_json::Value {
    with(json!({
        "secret": SECRET,
        "oidc_auth_method": "client_secret",
        "oidc_client_id": "client-1",
        "oidc_client_secret": CLIENT_SECRET,
        "oidc_token_endpoint": "https://login.example.com/token",
        "oidc_access_token_ttl_seconds": 300,
    }))
}

async fn secrets_never_appear_in_any_response(backend: Backend) {
    let app = spawn_app(backend).await;
    let created = app
        .post("/v1/webhooks", &app.token_a, &with_secrets())
        .await
        .expect(201);
    assert_no_secret(&created, "create");
    assert_write_only(&created);
    let id = created.json["id"].as_str().unwrap().to_string();
    let path = format!("/v1/webhooks/{id}");

    let change = json!({"secret": NEW_SECRET, "oidc_client_secret": NEW_CLIENT_SECRET});
    let successes = [
        ("get", app.get(&path, &app.token_a).await.expect(200)),
        (
            "list",
            app.get("/v1/webhooks", &app.token_a).await.expect(200),
        ),
        (
            "patch",
            app.patch(&path, &app.token_a, &change).await.expect(200),
        ),
        (
            "put",
            app.put(&path, &app.token_a, &change).await.expect(200),
        ),
    ];
    for (what, reply) in &successes {
        assert_no_secret(reply, what);
        assert_write_only(reply);
    }

    // Error answers do not echo them either: a rejected write, an overlong secret.
    let mut bad = with_secrets();
    bad["url"] = json!("http://example.com/");
    assert_no_secret(
        &app.post("/v1/webhooks", &app.token_a, &bad)
            .await
            .expect(422),
        "422",
    );
    let long = json!({"secret": format!("{NEW_SECRET}{}", "x".repeat(1100))});
    assert_no_secret(
        &app.patch(&path, &app.token_a, &long).await.expect(422),
        "422",
    );
    let wrong_type = json!({"secret": [NEW_SECRET]});
    assert_no_secret(
        &app.patch(&path, &app.token_a, &wrong_type)
            .await
            .expect(422),
        "422",
    );
    let other = app.patch(&path, &app.token_b, &change).await.expect(404);
    assert_no_secret(&other, "404");

    let metrics = app
        .call(Method::GET, "/metrics", None, None)
        .await
        .expect(200);
    assert_no_secret(&metrics, "metrics");
    let deleted = app.delete(&path, &app.token_a).await.expect(200);
    assert_no_secret(&deleted, "delete");
    assert_write_only(&deleted);
}

async fn secrets_are_stored_and_kept_until_changed(backend: Backend) {
    let app = spawn_app(backend).await;
    let id: Uuid = app
        .create(&app.token_a, &with_secrets())
        .await
        .parse()
        .unwrap();
    let path = format!("/v1/webhooks/{id}");
    let stored = || async {
        let webhook = app
            .registry
            .store()
            .get(ACCOUNT_A, id)
            .await
            .unwrap()
            .unwrap();
        let expose = |s: Option<&webhook_worker::secret::Secret>| s.map(|s| s.expose().to_string());
        (
            expose(webhook.secret.as_ref()),
            expose(webhook.oidc_client_secret.as_ref()),
        )
    };
    let both = |a: &str, b: &str| (Some(a.to_string()), Some(b.to_string()));
    assert_eq!(stored().await, both(SECRET, CLIENT_SECRET));

    app.patch(
        &path,
        &app.token_a,
        &json!({"url": "https://example.com/other"}),
    )
    .await
    .expect(200);
    assert_eq!(
        stored().await,
        both(SECRET, CLIENT_SECRET),
        "omitted = unchanged"
    );

    app.patch(&path, &app.token_a, &json!({"secret": NEW_SECRET}))
        .await
        .expect(200);
    assert_eq!(stored().await, both(NEW_SECRET, CLIENT_SECRET));
    let registered = app.registry.get(id).unwrap();
    assert_eq!(registered.secret.as_ref().unwrap().expose(), NEW_SECRET);

    app.patch(&path, &app.token_a, &json!({"secret": null}))
        .await
        .expect(200);
    assert_eq!(stored().await.0, None, "null = removed");
    assert!(app.registry.get(id).unwrap().secret.is_none());
}

async fn a_client_secret_goes_only_to_the_token_endpoint_and_client_it_was_given_for(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let id = app.create(&app.token_a, &with_secrets()).await;
    let path = format!("/v1/webhooks/{id}");
    for change in [
        json!({"oidc_token_endpoint": "https://attacker.example/token"}),
        json!({"oidc_token_endpoint": "https://login.example.com:8443/token"}),
        json!({"oidc_client_id": "client-2"}),
    ] {
        let reply = app.patch(&path, &app.token_a, &change).await.expect(422);
        assert_eq!(
            reply.json["errors"][0]["field"], "oidc_client_secret",
            "{change}: {}",
            reply.text
        );
    }
    // The same origin, another path: the secret may stay.
    app.patch(
        &path,
        &app.token_a,
        &json!({"oidc_token_endpoint": "https://login.example.com/oauth2/v2/token"}),
    )
    .await
    .expect(200);
    // Sent again with the new endpoint: accepted, and stored bound to it.
    let moved = json!({
        "oidc_token_endpoint": "https://idp.example.net/token",
        "oidc_client_secret": NEW_CLIENT_SECRET,
    });
    let reply = app.patch(&path, &app.token_a, &moved).await.expect(200);
    assert_eq!(
        reply.json["oidc_token_endpoint"],
        "https://idp.example.net/token"
    );
    let stored = app
        .registry
        .store()
        .get(ACCOUNT_A, id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored
            .oidc_client_secret
            .as_ref()
            .map(|s| s.expose().to_string()),
        Some(NEW_CLIENT_SECRET.to_string())
    );
}

/// A `client_secret` webhook with a scope and a resource.
fn with_audience() -> serde_json::Value {
    let mut body = with_secrets();
    body["url"] = json!("https://hooks.example.com/in");
    body["oidc_scope"] = json!("api://hooks/.default");
    body["oidc_resource_uri"] = json!("https://hooks.example.com");
    body
}

async fn a_client_secrets_tokens_go_only_to_the_receiver_scope_and_resource_they_were_given_for(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let id = app.create(&app.token_a, &with_audience()).await;
    let path = format!("/v1/webhooks/{id}");
    for change in [
        json!({"url": "https://attacker.example/in"}),
        json!({"url": "https://hooks.example.com:8443/in"}),
        json!({"url": "http://hooks.example.com/in"}),
        json!({"oidc_scope": "api://other/.default"}),
        json!({"oidc_scope": null}),
        json!({"oidc_resource_uri": "https://attacker.example"}),
        json!({"oidc_resource_uri": null}),
    ] {
        for method in [Method::PATCH, Method::PUT] {
            let reply = app
                .call(method.clone(), &path, Some(&app.token_a), Some(&change))
                .await
                .expect(422);
            assert_eq!(
                reply.json["errors"][0]["field"], "oidc_client_secret",
                "{method} {change}: {}",
                reply.text
            );
            assert_no_secret(&reply, "the refusal");
        }
        // Nothing was changed by the refusals.
        let current = app.get(&path, &app.token_a).await.expect(200).json;
        assert_eq!(current["url"], "https://hooks.example.com/in");
        assert_eq!(current["oidc_scope"], "api://hooks/.default");
        assert_eq!(current["oidc_resource_uri"], "https://hooks.example.com");
    }
    // The same origin, another path: the secret may stay.
    let reply = app
        .patch(
            &path,
            &app.token_a,
            &json!({"url": "https://hooks.example.com/v2/in"}),
        )
        .await
        .expect(200);
    assert_eq!(reply.json["url"], "https://hooks.example.com/v2/in");
    // Sent again with each change: accepted.
    for (field, value) in [
        ("url", "https://receiver.example.net/in"),
        ("oidc_scope", "api://other/.default"),
        ("oidc_resource_uri", "https://receiver.example.net"),
    ] {
        let change = json!({field: value, "oidc_client_secret": NEW_CLIENT_SECRET});
        let reply = app.put(&path, &app.token_a, &change).await.expect(200);
        assert_eq!(reply.json[field], value);
        assert_no_secret(&reply, "the answer");
    }
}

async fn a_private_key_jwt_webhook_changes_url_scope_and_resource_without_a_secret(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let body = with(json!({
        "url": "https://hooks.example.com/in",
        "oidc_auth_method": "private_key_jwt",
        "oidc_client_id": "client-1",
        "oidc_token_endpoint": "https://login.example.com/token",
        "oidc_access_token_ttl_seconds": 300,
        "oidc_scope": "api://hooks/.default",
        "oidc_resource_uri": "https://hooks.example.com",
    }));
    let id = app.create(&app.token_a, &body).await;
    let path = format!("/v1/webhooks/{id}");
    for change in [
        json!({"url": "https://receiver.example.net/in"}),
        json!({"oidc_scope": "api://other/.default"}),
        json!({"oidc_resource_uri": "https://receiver.example.net"}),
    ] {
        app.patch(&path, &app.token_a, &change).await.expect(200);
    }
}
