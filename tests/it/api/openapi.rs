//! The OpenAPI document: what the API serves equals the committed `docs/openapi.json`, and every
//! operation it documents is a route the API answers (so the document cannot name a route that
//! does not exist). The schemathesis fuzzing against it is `scripts/fuzz-api.sh`.

use reqwest::Method;
use serde_json::Value;

use crate::support::{spawn_app, Backend};

const COMMITTED: &str = include_str!("../../../docs/openapi.json");

#[tokio::test]
async fn the_served_document_equals_the_committed_copy() {
    let app = spawn_app(Backend::Sqlite).await;
    let reply = app
        .call(Method::GET, "/openapi.json", None, None)
        .await
        .expect(200);
    assert!(
        reply.text == COMMITTED,
        "GET /openapi.json differs from docs/openapi.json; regenerate it with \
         `cargo run -- openapi > docs/openapi.json`"
    );
    assert_eq!(reply.json["openapi"], "3.1.0");
    // The binary's subcommand prints the same document.
    assert_eq!(webhook_worker::api::openapi::document(), COMMITTED);
}

#[tokio::test]
async fn every_documented_operation_is_routed_and_v1_ones_need_a_token() {
    let app = spawn_app(Backend::Sqlite).await;
    let document: Value = serde_json::from_str(COMMITTED).expect("the committed copy is JSON");
    let paths = document["paths"].as_object().expect("paths");
    assert!(paths.len() >= 12, "{:?}", paths.keys());
    let mut operations = 0;
    for (path, item) in paths {
        let concrete = path
            .replace("{id}", &uuid::Uuid::new_v4().to_string())
            .replace("{event_id}", "evt_1")
            .replace("{job_id}", &uuid::Uuid::new_v4().to_string())
            .replace("{jwks_id}", "unknown");
        for (method, operation) in item.as_object().expect("a path item") {
            let method: Method = method.to_uppercase().parse().expect("an HTTP method");
            let reply = app.call(method.clone(), &concrete, None, None).await;
            assert_ne!(reply.status, 405, "{method} {path} is not routed");
            assert!(
                !reply.text.contains("no such route"),
                "{method} {path} is not routed"
            );
            let secured = operation.get("security").is_some();
            assert_eq!(secured, path.starts_with("/v1/"), "{method} {path}");
            if secured {
                assert_eq!(reply.status, 401, "{method} {path}: {}", reply.text);
                let responses = &operation["responses"];
                assert!(responses.get("401").is_some(), "{method} {path}");
            }
            operations += 1;
        }
    }
    assert_eq!(operations, 19);
}

#[tokio::test]
async fn every_error_status_documented_uses_the_error_format() {
    let document: Value = serde_json::from_str(COMMITTED).expect("the committed copy is JSON");
    for (path, item) in document["paths"].as_object().expect("paths") {
        if path == "/readyz" {
            continue; // its 503 is the readiness report, by design
        }
        for (method, operation) in item.as_object().expect("a path item") {
            for (status, response) in operation["responses"].as_object().expect("responses") {
                if status.starts_with('4') || status.starts_with('5') {
                    let schema = &response["content"]["application/json"]["schema"]["$ref"];
                    assert_eq!(
                        schema, "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
}
