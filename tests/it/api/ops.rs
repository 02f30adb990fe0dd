//! The unauthenticated routes: the index at /, /healthz, /readyz, /metrics, JSON answers for
//! unknown routes and methods, and the worker-only router.

use reqwest::Method;
use serde_json::json;

use crate::support::{both_backends, minimal, spawn_app, spawn_app_with, Backend, Settings};

both_backends!(
    the_root_links_to_the_api_openapi_readiness_and_metrics,
    healthz_answers_200_without_a_token,
    readyz_answers_503_naming_the_part_that_is_not_ready,
    readyz_of_an_api_only_process_does_not_claim_a_broker,
    metrics_answer_prometheus_text_without_a_token,
    unknown_routes_and_methods_answer_json_errors,
    a_worker_only_process_serves_no_v1_routes,
);

async fn the_root_links_to_the_api_openapi_readiness_and_metrics(backend: Backend) {
    let app = spawn_app(backend).await;
    let reply = app.call(Method::GET, "/", None, None).await.expect(200);
    assert_eq!(reply.json["name"], "webhook-worker");
    assert_eq!(
        reply.json["links"],
        json!({
            "webhooks": "/v1/webhooks",
            "openapi": "/openapi.json",
            "healthz": "/healthz",
            "readyz": "/readyz",
            "metrics": "/metrics",
        })
    );
    // Every link leads somewhere (the API's base asks for a token).
    for path in ["/openapi.json", "/healthz", "/readyz", "/metrics"] {
        app.call(Method::GET, path, None, None).await.expect(200);
    }
    app.call(Method::GET, "/v1/webhooks", None, None)
        .await
        .expect(401);
}

async fn healthz_answers_200_without_a_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let reply = app
        .call(Method::GET, "/healthz", None, None)
        .await
        .expect(200);
    assert_eq!(reply.json, json!({"status": "ok"}));
}

async fn readyz_answers_503_naming_the_part_that_is_not_ready(backend: Backend) {
    let settings = Settings {
        needs_broker: true,
        ..Settings::default()
    };
    let app = spawn_app_with(backend, settings).await;
    let reply = app
        .call(Method::GET, "/readyz", None, None)
        .await
        .expect(503);
    assert_eq!(reply.json["status"], "not_ready");
    assert_eq!(
        reply.json["checks"],
        json!({"database": "ok", "broker": "not_ready", "registry": "ok"})
    );

    app.readiness.set_broker_ready(true);
    let reply = app
        .call(Method::GET, "/readyz", None, None)
        .await
        .expect(200);
    assert_eq!(reply.json["status"], "ready");
    assert_eq!(
        reply.json["checks"],
        json!({"database": "ok", "broker": "ok", "registry": "ok"})
    );

    // A resource alarm: the broker blocks publishing.
    app.readiness.set_broker_blocked(true);
    let reply = app
        .call(Method::GET, "/readyz", None, None)
        .await
        .expect(503);
    assert_eq!(reply.json["checks"]["broker"], "blocked");
    app.readiness.set_broker_blocked(false);

    // The database goes away.
    app.registry.store().close().await;
    let reply = app
        .call(Method::GET, "/readyz", None, None)
        .await
        .expect(503);
    assert_eq!(
        reply.json["checks"],
        json!({"database": "not_ready", "broker": "ok", "registry": "ok"})
    );
    // Liveness does not depend on it.
    app.call(Method::GET, "/healthz", None, None)
        .await
        .expect(200);
}

async fn readyz_of_an_api_only_process_does_not_claim_a_broker(backend: Backend) {
    let app = spawn_app(backend).await;
    let reply = app
        .call(Method::GET, "/readyz", None, None)
        .await
        .expect(200);
    assert_eq!(
        reply.json["checks"],
        json!({"database": "ok", "broker": "not_used", "registry": "ok"})
    );
}

async fn metrics_answer_prometheus_text_without_a_token(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create(&app.token_a, &minimal()).await;
    let reply = app
        .call(Method::GET, "/metrics", None, None)
        .await
        .expect(200);
    let content_type = reply.headers["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(
        reply.text.contains("webhook_worker_registry_webhooks 1"),
        "{}",
        reply.text
    );
    assert!(reply
        .text
        .contains("# TYPE webhook_worker_deliveries counter"));
}

async fn unknown_routes_and_methods_answer_json_errors(backend: Backend) {
    let app = spawn_app(backend).await;
    let reply = app.get("/v2/webhooks", &app.token_a).await.expect(404);
    assert_eq!(reply.json["errors"][0]["message"], "no such route");
    let reply = app
        .call(Method::DELETE, "/v1/webhooks", Some(&app.token_a), None)
        .await
        .expect(405);
    assert_eq!(reply.json["errors"][0]["message"], "method not allowed");
    app.call(Method::POST, "/healthz", None, None)
        .await
        .expect(405);
}

async fn a_worker_only_process_serves_no_v1_routes(backend: Backend) {
    let settings = Settings {
        worker_only: true,
        ..Settings::default()
    };
    let app = spawn_app_with(backend, settings).await;
    app.call(Method::GET, "/healthz", None, None)
        .await
        .expect(200);
    app.call(Method::GET, "/readyz", None, None)
        .await
        .expect(200);
    app.call(Method::GET, "/metrics", None, None)
        .await
        .expect(200);
    app.get("/v1/webhooks", &app.token_a).await.expect(404);
    app.post("/v1/webhooks", &app.token_a, &minimal())
        .await
        .expect(404);
    app.call(Method::GET, "/v1/webhooks/oidc_keys", None, None)
        .await
        .expect(404);
    // Its index links only to what it serves.
    let reply = app.call(Method::GET, "/", None, None).await.expect(200);
    assert_eq!(
        reply.json["links"],
        json!({"healthz": "/healthz", "readyz": "/readyz", "metrics": "/metrics"})
    );
}
