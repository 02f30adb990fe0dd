//! `signature_format` through the API: its round trip and its 422s, the secret generated for a
//! `standard_webhooks` webhook shown once (in the answer that made it) and never again, and the
//! previous secret of a rotation stored but never in any answer.

use reqwest::Method;
use serde_json::json;
use uuid::Uuid;
use webhook_worker::signing::{new_standard_secret, standard_key};

use crate::support::{
    both_backends, spawn_app, spawn_app_with, with, Backend, Settings, ACCOUNT_A,
};

both_backends!(
    the_format_is_platform_by_default_and_reads_back_as_written,
    a_standard_webhook_without_a_secret_gets_one_shown_once,
    a_format_or_secret_that_breaks_the_rules_is_refused_naming_it,
    a_replaced_secret_is_kept_as_the_previous_one_and_never_shown,
);

async fn the_format_is_platform_by_default_and_reads_back_as_written(backend: Backend) {
    let app = spawn_app(backend).await;
    let reply = app
        .post("/v1/webhooks", &app.token_a, &with(json!({})))
        .await
        .expect(201);
    assert_eq!(reply.json["signature_format"], "platform", "{}", reply.text);
    let path = format!("/v1/webhooks/{}", reply.json["id"].as_str().unwrap());
    let secret = new_standard_secret();
    let change = json!({"signature_format": "standard_webhooks", "secret": secret});
    let reply = app.patch(&path, &app.token_a, &change).await.expect(200);
    assert_eq!(reply.json["signature_format"], "standard_webhooks");
    assert!(
        reply.json.get("secret").is_none(),
        "a given secret is not shown: {}",
        reply.text
    );
    let read = app.get(&path, &app.token_a).await.expect(200);
    assert_eq!(read.json["signature_format"], "standard_webhooks");
    let list = app.get("/v1/webhooks", &app.token_a).await.expect(200);
    assert_eq!(
        list.json["data"][0]["signature_format"],
        "standard_webhooks"
    );
    // The bare base64 form is a Standard secret too; null sets the default again.
    let bare = json!({"secret": secret.trim_start_matches("whsec_")});
    app.patch(&path, &app.token_a, &bare).await.expect(200);
    let reset = json!({"signature_format": null});
    let reply = app.patch(&path, &app.token_a, &reset).await.expect(200);
    assert_eq!(reply.json["signature_format"], "platform");
}

async fn a_standard_webhook_without_a_secret_gets_one_shown_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = with(json!({"signature_format": "standard_webhooks"}));
    let created = app
        .post("/v1/webhooks", &app.token_a, &body)
        .await
        .expect(201);
    let generated = created.json["secret"]
        .as_str()
        .expect("a generated secret")
        .to_string();
    assert!(generated.starts_with("whsec_"), "{generated}");
    assert_eq!(standard_key(&generated).map(|k| k.len()), Ok(32));
    let id: Uuid = created.json["id"].as_str().unwrap().parse().unwrap();
    let path = format!("/v1/webhooks/{id}");
    let stored = app
        .registry
        .store()
        .get(ACCOUNT_A, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.secret.as_ref().map(|s| s.expose()),
        Some(generated.as_str())
    );
    let key = generated.trim_start_matches("whsec_");
    for reply in [
        app.get(&path, &app.token_a).await.expect(200),
        app.get("/v1/webhooks", &app.token_a).await.expect(200),
        app.patch(&path, &app.token_a, &json!({"include": "identifiers"}))
            .await
            .expect(200),
    ] {
        assert!(!reply.text.contains(key), "shown again: {}", reply.text);
        assert!(reply.json.get("secret").is_none(), "{}", reply.text);
    }

    // A platform webhook without a secret turned standard_webhooks: generated then, too.
    let id = app.create(&app.token_a, &with(json!({}))).await;
    let path = format!("/v1/webhooks/{id}");
    let change = json!({"signature_format": "standard_webhooks"});
    let reply = app.patch(&path, &app.token_a, &change).await.expect(200);
    assert!(reply.json["secret"]
        .as_str()
        .is_some_and(|s| s.starts_with("whsec_")));

    // Without an encryption key nothing can be generated: a 422 naming secret, not a 500.
    let keyless = spawn_app_with(
        backend,
        Settings {
            encryption_key: false,
            ..Settings::default()
        },
    )
    .await;
    let reply = keyless
        .post("/v1/webhooks", &keyless.token_a, &body)
        .await
        .expect(422);
    assert_eq!(reply.error_fields(), ["secret"]);
}

async fn a_format_or_secret_that_breaks_the_rules_is_refused_naming_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let refused = [
        (json!({"signature_format": "svix"}), "signature_format"),
        (json!({"signature_format": 1}), "signature_format"),
        (
            json!({"signature_format": "standard_webhooks", "secret": "whsec_short"}),
            "secret",
        ),
        (
            json!({"signature_format": "standard_webhooks", "secret": "not base64!"}),
            "secret",
        ),
        (
            json!({"signature_format": "standard_webhooks", "secret": null}),
            "secret",
        ),
    ];
    for (body, field) in refused {
        let reply = app
            .post("/v1/webhooks", &app.token_a, &with(body.clone()))
            .await
            .expect(422);
        assert_eq!(reply.error_fields(), [field], "{body}: {}", reply.text);
        assert!(!reply.text.contains("whsec_short"), "{}", reply.text);
    }
    // A platform webhook whose secret is no Standard key cannot turn standard_webhooks with it.
    let id = app
        .create(
            &app.token_a,
            &with(json!({"secret": "platform-only-bytes"})),
        )
        .await;
    let path = format!("/v1/webhooks/{id}");
    let change = json!({"signature_format": "standard_webhooks"});
    let reply = app.patch(&path, &app.token_a, &change).await.expect(422);
    assert_eq!(reply.error_fields(), ["secret"]);
    // And a standard_webhooks webhook's secret cannot be removed.
    let body = with(json!({"signature_format": "standard_webhooks"}));
    let id = app
        .post("/v1/webhooks", &app.token_a, &body)
        .await
        .expect(201)
        .json["id"]
        .clone();
    let path = format!("/v1/webhooks/{}", id.as_str().unwrap());
    let reply = app
        .patch(&path, &app.token_a, &json!({"secret": null}))
        .await
        .expect(422);
    assert_eq!(reply.error_fields(), ["secret"]);
}

/// The stored webhook's previous secret and when it stops signing.
async fn stored_previous(
    app: &crate::support::TestApp,
    id: Uuid,
) -> Option<(String, chrono::DateTime<chrono::Utc>)> {
    let stored = app.registry.store().get(ACCOUNT_A, id).await.unwrap();
    let previous = stored.expect("the webhook").previous_secret?;
    Some((previous.secret.expose().to_string(), previous.until))
}

async fn a_replaced_secret_is_kept_as_the_previous_one_and_never_shown(backend: Backend) {
    let app = spawn_app(backend).await;
    let secrets = [(); 3].map(|()| new_standard_secret());
    let [first, second, third] = &secrets;
    let body = with(json!({"signature_format": "standard_webhooks", "secret": first}));
    let id: Uuid = app.create(&app.token_a, &body).await.parse().unwrap();
    let path = format!("/v1/webhooks/{id}");
    let mut answers = Vec::new();
    let change = json!({"secret": second});
    answers.push(app.patch(&path, &app.token_a, &change).await.expect(200));
    let (previous, until) = stored_previous(&app, id)
        .await
        .expect("the replaced secret");
    assert_eq!(&previous, first);
    let overlap = until - chrono::Utc::now();
    assert!(
        overlap > chrono::TimeDelta::hours(23),
        "24 h by default: {overlap}"
    );
    let registered = app.registry.get(id).unwrap().previous_secret.clone();
    assert_eq!(registered.unwrap().secret.expose(), first);

    let change = json!({"secret": third});
    answers.push(app.put(&path, &app.token_a, &change).await.expect(200));
    let (previous, _) = stored_previous(&app, id).await.unwrap();
    assert_eq!(&previous, second, "the one just replaced");
    answers.push(app.get(&path, &app.token_a).await.expect(200));
    answers.push(app.get("/v1/webhooks", &app.token_a).await.expect(200));
    let platform = json!({"signature_format": "platform", "secret": null});
    answers.push(app.patch(&path, &app.token_a, &platform).await.expect(200));
    let ended = stored_previous(&app, id).await;
    assert!(ended.is_none(), "removing the secret ends the overlap");
    let deleted = app.call(Method::DELETE, &path, Some(&app.token_a), None);
    answers.push(deleted.await.expect(200));
    for reply in &answers {
        for secret in &secrets {
            let key = secret.trim_start_matches("whsec_");
            let text = &reply.text;
            assert!(!text.contains(key), "a secret in an answer: {text}");
        }
        assert!(reply.json.get("secret").is_none() && reply.json.get("previous_secret").is_none());
    }
}
