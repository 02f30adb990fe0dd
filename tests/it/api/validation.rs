//! The seed page's rules at the HTTP level, on create and on the merged state of an update
//! (the exhaustive combinations are unit tests in `src/webhook_tests.rs`).

use serde_json::{json, Value};

use crate::support::{
    both_backends, minimal, spawn_app, spawn_app_with, with, Backend, Settings, TestApp,
};

both_backends!(
    create_requires_url_and_enabled_events,
    urls_must_be_https_and_public,
    the_oidc_method_must_be_one_of_the_two,
    private_key_jwt_requires_client_id_token_endpoint_and_ttl,
    client_secret_also_requires_the_client_secret,
    complete_oidc_settings_are_accepted_for_both_methods,
    an_oidc_field_without_a_method_is_rejected,
    other_field_rules_are_enforced,
    an_update_is_validated_on_the_merged_state,
    a_rejected_update_changes_nothing,
    secrets_are_refused_naming_the_setting_when_no_encryption_key_is_configured,
);

/// The sorted `field`s of a 422 answer to creating `body`.
async fn rejected_fields(app: &TestApp, body: &Value) -> Vec<String> {
    let reply = app
        .post("/v1/webhooks", &app.token_a, body)
        .await
        .expect(422);
    let mut fields = reply.error_fields();
    fields.sort_unstable();
    for entry in reply.json["errors"].as_array().unwrap() {
        assert!(
            !entry["message"].as_str().unwrap_or("").is_empty(),
            "{}",
            reply.text
        );
    }
    fields
}

async fn create_requires_url_and_enabled_events(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(
        rejected_fields(&app, &json!({})).await,
        ["enabled_events", "url"]
    );
    let only_url = json!({"url": "https://example.com/"});
    assert_eq!(rejected_fields(&app, &only_url).await, ["enabled_events"]);
    let only_events = json!({"enabled_events": ["*"]});
    assert_eq!(rejected_fields(&app, &only_events).await, ["url"]);
    let nulls = json!({"url": null, "enabled_events": null});
    assert_eq!(
        rejected_fields(&app, &nulls).await,
        ["enabled_events", "url"]
    );
    // Nothing was stored.
    let list = app.get("/v1/webhooks", &app.token_a).await.expect(200);
    assert_eq!(list.json["total_count"], 0);
}

async fn urls_must_be_https_and_public(backend: Backend) {
    let app = spawn_app(backend).await;
    for url in [
        "http://example.com/hooks",
        "ftp://example.com/hooks",
        "not a url",
        "https://127.0.0.1/hooks",
        "https://169.254.169.254/latest/meta-data",
        "https://[::ffff:10.0.0.1]/",
        "https://user:pass@example.com/",
    ] {
        let body = with(json!({"url": url}));
        assert_eq!(rejected_fields(&app, &body).await, ["url"], "{url}");
    }
}

async fn the_oidc_method_must_be_one_of_the_two(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = with(json!({
        "oidc_auth_method": "basic",
        "oidc_client_id": "c",
        "oidc_token_endpoint": "https://login.example.com/token",
        "oidc_access_token_ttl_seconds": 60,
    }));
    assert_eq!(rejected_fields(&app, &body).await, ["oidc_auth_method"]);
}

async fn private_key_jwt_requires_client_id_token_endpoint_and_ttl(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = with(json!({"oidc_auth_method": "private_key_jwt"}));
    assert_eq!(
        rejected_fields(&app, &body).await,
        [
            "oidc_access_token_ttl_seconds",
            "oidc_client_id",
            "oidc_token_endpoint"
        ]
    );
    // A client secret has no use with private_key_jwt.
    let body = with(json!({
        "oidc_auth_method": "private_key_jwt",
        "oidc_client_id": "c",
        "oidc_client_secret": "s",
        "oidc_token_endpoint": "https://login.example.com/token",
        "oidc_access_token_ttl_seconds": 60,
    }));
    assert_eq!(rejected_fields(&app, &body).await, ["oidc_client_secret"]);
}

async fn client_secret_also_requires_the_client_secret(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = with(json!({"oidc_auth_method": "client_secret"}));
    assert_eq!(
        rejected_fields(&app, &body).await,
        [
            "oidc_access_token_ttl_seconds",
            "oidc_client_id",
            "oidc_client_secret",
            "oidc_token_endpoint"
        ]
    );
    let body = with(json!({
        "oidc_auth_method": "client_secret",
        "oidc_client_id": "c",
        "oidc_token_endpoint": "https://login.example.com/token",
        "oidc_access_token_ttl_seconds": 60,
    }));
    assert_eq!(rejected_fields(&app, &body).await, ["oidc_client_secret"]);
}

async fn complete_oidc_settings_are_accepted_for_both_methods(backend: Backend) {
    let app = spawn_app(backend).await;
    let common = json!({
        "oidc_client_id": "c",
        "oidc_token_endpoint": "https://login.example.com/token",
        "oidc_access_token_ttl_seconds": 86400,
        "oidc_scope": "api://x/.default",
        "oidc_resource_uri": "https://hooks.example.com",
    });
    let mut jwt = with(common.clone());
    jwt["oidc_auth_method"] = json!("private_key_jwt");
    let reply = app
        .post("/v1/webhooks", &app.token_a, &jwt)
        .await
        .expect(201);
    assert_eq!(reply.json["oidc_scope"], "api://x/.default");
    let mut secret = with(common);
    secret["oidc_auth_method"] = json!("client_secret");
    secret["oidc_client_secret"] = json!("s3cret-value");
    let reply = app
        .post("/v1/webhooks", &app.token_a, &secret)
        .await
        .expect(201);
    assert_eq!(reply.json["oidc_auth_method"], "client_secret");
}

async fn an_oidc_field_without_a_method_is_rejected(backend: Backend) {
    let app = spawn_app(backend).await;
    for field in [
        "oidc_client_id",
        "oidc_token_endpoint",
        "oidc_scope",
        "oidc_resource_uri",
    ] {
        let mut body = minimal();
        body[field] = json!("https://login.example.com/token");
        assert_eq!(rejected_fields(&app, &body).await, [field]);
    }
    let body = with(json!({"oidc_access_token_ttl_seconds": 60}));
    assert_eq!(
        rejected_fields(&app, &body).await,
        ["oidc_access_token_ttl_seconds"]
    );
}

async fn other_field_rules_are_enforced(backend: Backend) {
    let app = spawn_app(backend).await;
    let cases = [
        (json!({"enabled_events": []}), "enabled_events"),
        (json!({"enabled_events": ["has space"]}), "enabled_events"),
        (json!({"include": "addresses,"}), "include"),
        (json!({"disabled_at": "yesterday"}), "disabled_at"),
        (json!({"secret": ""}), "secret"),
        (
            json!({
                "oidc_auth_method": "private_key_jwt",
                "oidc_client_id": "c",
                "oidc_token_endpoint": "http://login.example.com/token",
                "oidc_access_token_ttl_seconds": 60,
            }),
            "oidc_token_endpoint",
        ),
        (
            json!({
                "oidc_auth_method": "private_key_jwt",
                "oidc_client_id": "c",
                "oidc_token_endpoint": "https://login.example.com/token",
                "oidc_access_token_ttl_seconds": 0,
            }),
            "oidc_access_token_ttl_seconds",
        ),
    ];
    for (extra, field) in cases {
        let body = with(extra.clone());
        assert_eq!(rejected_fields(&app, &body).await, [field], "{extra}");
    }
    // Several broken rules are all reported at once.
    let body = json!({"url": "http://example.com", "enabled_events": [], "disabled_at": "x"});
    assert_eq!(
        rejected_fields(&app, &body).await,
        ["disabled_at", "enabled_events", "url"]
    );
}

async fn an_update_is_validated_on_the_merged_state(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = with(json!({
        "oidc_auth_method": "private_key_jwt",
        "oidc_client_id": "c",
        "oidc_token_endpoint": "https://login.example.com/token",
        "oidc_access_token_ttl_seconds": 60,
    }));
    let id = app.create(&app.token_a, &body).await;
    let path = format!("/v1/webhooks/{id}");
    let rejected = |change: Value| patch_rejected(&app, &path, change);
    // Switching the method needs what the new method requires, given now or stored before.
    assert_eq!(
        rejected(json!({"oidc_auth_method": "client_secret"})).await,
        ["oidc_client_secret"]
    );
    // Removing a required field of the stored method.
    assert_eq!(
        rejected(json!({"oidc_client_id": null})).await,
        ["oidc_client_id"]
    );
    // Removing the method leaves OIDC fields without one.
    assert_eq!(
        rejected(json!({"oidc_auth_method": null})).await,
        [
            "oidc_access_token_ttl_seconds",
            "oidc_client_id",
            "oidc_token_endpoint"
        ]
    );
    // url and enabled_events cannot be cleared.
    assert_eq!(rejected(json!({"url": null})).await, ["url"]);
    assert_eq!(
        rejected(json!({"enabled_events": null})).await,
        ["enabled_events"]
    );
    assert_eq!(
        rejected(json!({"url": "http://example.com/"})).await,
        ["url"]
    );

    // The same switch with the secret is accepted, and later updates keep it.
    let switch = json!({"oidc_auth_method": "client_secret", "oidc_client_secret": "cs"});
    app.patch(&path, &app.token_a, &switch).await.expect(200);
    let reply = app
        .put(
            &path,
            &app.token_a,
            &json!({"oidc_access_token_ttl_seconds": 120}),
        )
        .await
        .expect(200);
    assert_eq!(reply.json["oidc_auth_method"], "client_secret");
    // An update that removes every OIDC field at once is valid.
    let clear = json!({
        "oidc_auth_method": null,
        "oidc_client_id": null,
        "oidc_client_secret": null,
        "oidc_token_endpoint": null,
        "oidc_access_token_ttl_seconds": null,
        "oidc_scope": null,
    });
    let reply = app.patch(&path, &app.token_a, &clear).await.expect(200);
    assert_eq!(reply.json["oidc_auth_method"], Value::Null);
}

/// The sorted `field`s of a 422 answer to patching `path` with `change`.
async fn patch_rejected(app: &TestApp, path: &str, change: Value) -> Vec<String> {
    let reply = app.patch(path, &app.token_a, &change).await.expect(422);
    let mut fields = reply.error_fields();
    fields.sort_unstable();
    fields
}

async fn a_rejected_update_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let created = app
        .post("/v1/webhooks", &app.token_a, &minimal())
        .await
        .expect(201);
    let id = created.json["id"].as_str().unwrap();
    let path = format!("/v1/webhooks/{id}");
    let change = json!({"url": "https://example.org/ok", "enabled_events": []});
    app.patch(&path, &app.token_a, &change).await.expect(422);
    let fetched = app.get(&path, &app.token_a).await.expect(200);
    assert_eq!(fetched.json, created.json);
    assert_eq!(
        app.registry.get(id.parse().unwrap()).unwrap().url,
        "https://example.com/hooks"
    );
}

async fn secrets_are_refused_naming_the_setting_when_no_encryption_key_is_configured(
    backend: Backend,
) {
    let settings = Settings {
        encryption_key: false,
        ..Settings::default()
    };
    let app = spawn_app_with(backend, settings).await;
    let reply = app
        .post(
            "/v1/webhooks",
            &app.token_a,
            &with(json!({"secret": "whsec_nokey"})),
        )
        .await
        .expect(422);
    assert_eq!(reply.error_fields(), ["secret"]);
    let message = reply.json["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("database.encryption_key"), "{message}");
    assert!(!reply.text.contains("whsec_nokey"));

    let oidc = with(json!({
        "oidc_auth_method": "client_secret",
        "oidc_client_id": "c",
        "oidc_client_secret": "cs_nokey",
        "oidc_token_endpoint": "https://login.example.com/token",
        "oidc_access_token_ttl_seconds": 60,
    }));
    let reply = app
        .post("/v1/webhooks", &app.token_a, &oidc)
        .await
        .expect(422);
    assert_eq!(reply.error_fields(), ["oidc_client_secret"]);

    // private_key_jwt needs a signing key kept encrypted: refused now, not at every delivery.
    let jwt = with(json!({
        "oidc_auth_method": "private_key_jwt",
        "oidc_client_id": "c",
        "oidc_token_endpoint": "https://login.example.com/token",
        "oidc_access_token_ttl_seconds": 60,
    }));
    let reply = app
        .post("/v1/webhooks", &app.token_a, &jwt)
        .await
        .expect(422);
    assert_eq!(reply.error_fields(), ["oidc_auth_method"]);
    let message = reply.json["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("database.encryption_key"), "{message}");

    // Without secrets everything works, and a secret cannot be added later either.
    let id = app.create(&app.token_a, &minimal()).await;
    let path = format!("/v1/webhooks/{id}");
    let reply = app
        .patch(&path, &app.token_a, &json!({"secret": "whsec_later"}))
        .await
        .expect(422);
    assert_eq!(reply.error_fields(), ["secret"]);
    app.patch(&path, &app.token_a, &json!({"secret": null}))
        .await
        .expect(200);
}
