//! Each account's signing keys through the API: its own JWKS behind its token, the same keys at
//! a public URL that reveals no account, rotation, and the per-account webhook limit.

use reqwest::Method;
use serde_json::Value;

use crate::support::{
    both_backends, eventually, minimal, spawn_app, spawn_app_with, Backend, Settings, TestApp,
};

both_backends!(
    each_account_sees_only_its_own_keys_and_the_public_url_serves_the_same,
    an_unknown_public_jwks_id_answers_404,
    the_jwks_uri_is_absolute_when_the_public_base_url_is_set,
    rotation_publishes_the_new_key_at_once_beside_the_old_one,
    after_the_retirement_grace_only_the_new_key_is_published,
    the_key_routes_need_a_token,
    an_account_cannot_have_more_webhooks_than_the_limit,
    concurrent_creates_never_take_an_account_past_the_limit,
);

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .expect("a keys array")
        .iter()
        .map(|k| k["kid"].as_str().expect("a kid").to_string())
        .collect()
}

fn assert_public_members_only(jwks: &Value) {
    for key in jwks["keys"].as_array().unwrap() {
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(key.get(private).is_none(), "{private} published: {key}");
        }
        assert_eq!(key["kty"], "RSA");
        assert_eq!(key["alg"], "RS256");
        assert!(key["x5c"][0].is_string(), "a certificate for Entra: {key}");
        assert!(key["x5t"].is_string());
    }
}

/// The account's keys, as `GET /v1/webhooks/oidc_keys` answers them.
async fn own_keys(app: &TestApp, token: &str) -> Value {
    app.get("/v1/webhooks/oidc_keys", token)
        .await
        .expect(200)
        .json
}

/// Rotates the account's keys through the API; the answer.
async fn rotate(app: &TestApp, token: &str) -> Value {
    app.call(
        Method::POST,
        "/v1/webhooks/oidc_keys/rotate",
        Some(token),
        None,
    )
    .await
    .expect(200)
    .json
}

async fn each_account_sees_only_its_own_keys_and_the_public_url_serves_the_same(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = own_keys(&app, &app.token_a).await;
    let b = own_keys(&app, &app.token_b).await;
    assert_eq!(kids(&a).len(), 1);
    assert_eq!(kids(&b).len(), 1);
    assert_ne!(kids(&a), kids(&b), "each account has a key of its own");
    assert_public_members_only(&a);

    // Asked again, the same key: made once, on first need.
    let again = own_keys(&app, &app.token_a).await;
    assert_eq!(kids(&again), kids(&a));

    for (jwks, account) in [
        (&a, crate::support::ACCOUNT_A),
        (&b, crate::support::ACCOUNT_B),
    ] {
        let uri = jwks["jwks_uri"].as_str().expect("a jwks_uri");
        assert!(
            uri.starts_with("/jwks/"),
            "a path without a base URL: {uri}"
        );
        assert!(
            !uri.contains(account),
            "the public URL names no account: {uri}"
        );
        let public = app.call(Method::GET, uri, None, None).await.expect(200);
        assert_eq!(kids(&public.json), kids(jwks));
        assert!(public.json.get("jwks_uri").is_none());
        assert!(public.headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age"));
    }
    assert_ne!(a["jwks_uri"], b["jwks_uri"]);
}

async fn an_unknown_public_jwks_id_answers_404(backend: Backend) {
    let app = spawn_app(backend).await;
    app.get("/v1/webhooks/oidc_keys", &app.token_a)
        .await
        .expect(200);
    for path in [
        "/jwks/AAAAAAAAAAAAAAAAAAAAAA",
        "/jwks/acct_a",
        "/jwks/..%2f..%2fetc",
        "/jwks/%FF%FE",
        "/jwks/",
    ] {
        let reply = app.call(Method::GET, path, None, None).await.expect(404);
        assert!(
            reply.json["errors"][0]["message"].is_string(),
            "{path}: {}",
            reply.text
        );
    }
}

async fn the_jwks_uri_is_absolute_when_the_public_base_url_is_set(backend: Backend) {
    let settings = Settings {
        public_base_url: "https://hooks.example.com/",
        ..Settings::default()
    };
    let app = spawn_app_with(backend, settings).await;
    let a = own_keys(&app, &app.token_a).await;
    let uri = a["jwks_uri"].as_str().unwrap();
    assert!(uri.starts_with("https://hooks.example.com/jwks/"), "{uri}");
    let path = uri.trim_start_matches("https://hooks.example.com");
    app.call(Method::GET, path, None, None).await.expect(200);
}

async fn after_the_retirement_grace_only_the_new_key_is_published(backend: Backend) {
    let settings = Settings {
        extra_toml: "[oidc]\nkey_rotation_delay = \"1s\"\nkey_retirement_grace = \"1s\"",
        ..Settings::default()
    };
    let app = spawn_app_with(backend, settings).await;
    let before = own_keys(&app, &app.token_a).await;
    let rotated = rotate(&app, &app.token_a).await;
    let new_kid = rotated["rotation"]["kid"].as_str().unwrap().to_string();
    assert_eq!(kids(&rotated).len(), 2, "{rotated}");
    // Signing from 1 s, the old key published 1 s longer: gone after 2 s.
    let public_path = before["jwks_uri"].as_str().unwrap().to_string();
    let limit = std::time::Duration::from_secs(10);
    eventually(limit, "only the new key published", || async {
        let public = app
            .call(Method::GET, &public_path, None, None)
            .await
            .expect(200);
        // A provider may cache the JWKS no longer than the rotation delay.
        assert_eq!(
            public.headers["cache-control"].to_str().unwrap(),
            "public, max-age=1"
        );
        if kids(&public.json) == [new_kid.as_str()] {
            Ok(())
        } else {
            Err(format!("published: {}", public.text))
        }
    })
    .await;
    let own = own_keys(&app, &app.token_a).await;
    assert_eq!(kids(&own), [new_kid.as_str()]);
    assert!(!kids(&own).contains(&kids(&before)[0]));
}

async fn rotation_publishes_the_new_key_at_once_beside_the_old_one(backend: Backend) {
    let settings = Settings {
        extra_toml: "[oidc]\nkey_rotation_delay = \"1h\"\nkey_retirement_grace = \"2h\"",
        ..Settings::default()
    };
    let app = spawn_app_with(backend, settings).await;
    let before = own_keys(&app, &app.token_a).await;
    let b_before = own_keys(&app, &app.token_b).await;
    let rotated = rotate(&app, &app.token_a).await;
    let new_kid = rotated["rotation"]["kid"].as_str().unwrap().to_string();
    let listed = kids(&rotated);
    assert_eq!(listed.len(), 2, "{rotated}");
    assert_eq!(
        listed[0],
        kids(&before)[0],
        "the old key still signs for an hour, listed first"
    );
    assert_eq!(listed[1], new_kid, "the new key is published at once");
    assert!(rotated["rotation"]["signs_from"].is_string());
    assert!(rotated["rotation"]["previous_keys_published_until"].is_string());
    let public = app
        .call(
            Method::GET,
            rotated["jwks_uri"].as_str().unwrap(),
            None,
            None,
        )
        .await
        .expect(200)
        .json;
    assert_eq!(kids(&public), listed);
    assert_eq!(
        rotated["jwks_uri"], before["jwks_uri"],
        "the public URL stays"
    );
    let b_after = own_keys(&app, &app.token_b).await;
    assert_eq!(
        kids(&b_after),
        kids(&b_before),
        "another account's keys are untouched"
    );
}

async fn the_key_routes_need_a_token(backend: Backend) {
    let app = spawn_app(backend).await;
    app.call(Method::GET, "/v1/webhooks/oidc_keys", None, None)
        .await
        .expect(401);
    app.call(Method::POST, "/v1/webhooks/oidc_keys/rotate", None, None)
        .await
        .expect(401);
    app.call(Method::GET, "/.well-known/jwks.json", None, None)
        .await
        .expect(404);
    app.call(
        Method::DELETE,
        "/v1/webhooks/oidc_keys",
        Some(&app.token_a),
        None,
    )
    .await
    .expect(405);
}

async fn an_account_cannot_have_more_webhooks_than_the_limit(backend: Backend) {
    let settings = Settings {
        max_webhooks_per_account: 3,
        ..Settings::default()
    };
    let app = spawn_app_with(backend, settings).await;
    for _ in 0..3 {
        app.create(&app.token_a, &minimal()).await;
    }
    let refused = app
        .post("/v1/webhooks", &app.token_a, &minimal())
        .await
        .expect(422);
    let message = refused.json["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("api.max_webhooks_per_account"),
        "{message}"
    );
    // The limit is per account.
    app.create(&app.token_b, &minimal()).await;
    // Deleting one makes room.
    let list = app.get("/v1/webhooks", &app.token_a).await.expect(200).json;
    let id = list["data"][0]["id"].as_str().unwrap().to_string();
    app.delete(&format!("/v1/webhooks/{id}"), &app.token_a)
        .await
        .expect(200);
    app.post("/v1/webhooks", &app.token_a, &minimal())
        .await
        .expect(201);
}

async fn concurrent_creates_never_take_an_account_past_the_limit(backend: Backend) {
    let settings = Settings {
        max_webhooks_per_account: 5,
        ..Settings::default()
    };
    let app = spawn_app_with(backend, settings).await;
    let body = minimal();
    let creates = (0..40).map(|_| app.post("/v1/webhooks", &app.token_a, &body));
    let statuses: Vec<u16> = futures_util::future::join_all(creates)
        .await
        .iter()
        .map(|reply| reply.status.as_u16())
        .collect();
    let created = statuses.iter().filter(|s| **s == 201).count();
    assert_eq!(created, 5, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 422),
        "{statuses:?}"
    );
    let list = app.get("/v1/webhooks", &app.token_a).await.expect(200).json;
    assert_eq!(list["total_count"], 5);
}
