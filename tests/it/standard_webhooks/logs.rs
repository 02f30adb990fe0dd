//! Secrets stay write-only through a rotation: the worker binary (role `all`, logging at
//! `trace`) is given a generated secret and then a new one, delivers with both, and neither the
//! log nor any answer after the generating one shows either (the previous secret never).

use std::{path::Path, time::Duration};

use reqwest::Method;
use serde_json::{json, Value};
use sha2::Digest;

use super::verifier::signature_count;
use crate::support::{
    random_key, unique_prefix, InProcessWorker, TestReceiver, WorkerProcess, WorkerProcessBuilder,
};

const WAIT: Duration = Duration::from_secs(30);
const TOKEN: &str = "whk_test_standard_webhooks_logs";

/// One call to the process's API: status, raw text, JSON.
async fn call(base: &str, method: Method, path: &str, body: Option<Value>) -> (u16, String, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the API answers");
    let status = response.status().as_u16();
    let text = response.text().await.expect("a body");
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, text, json)
}

/// The worker binary in role `all`, the test's token for account `acct`, logging everything to
/// `log_path`; ready.
async fn start_worker(prefix: &str, database_url: &str, log_path: &Path) -> WorkerProcess {
    let hash = hex::encode(sha2::Sha256::digest(TOKEN.as_bytes()));
    let tokens = format!("[{{account_id=\"acct\", token_sha256=\"{hash}\"}}]");
    let worker = WorkerProcessBuilder::new_as(prefix, database_url, &random_key(), "all")
        .env("API__TOKENS", tokens)
        .env("LOG__LEVEL", "trace")
        .stderr_to(std::fs::File::create(log_path).unwrap())
        .spawn();
    worker.wait_for_readyz(200, WAIT).await;
    worker
}

#[tokio::test]
async fn a_generated_and_a_previous_secret_never_reach_the_log_or_a_later_answer() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}/logs.db", dir.path().display());
    let prefix = unique_prefix();
    let broker = InProcessWorker::publisher_for(&prefix).await;
    let receiver = TestReceiver::start().await;
    let log_path = dir.path().join("worker.log");
    let mut worker = start_worker(&prefix, &database_url, &log_path).await;
    let base = format!("http://127.0.0.1:{}", worker.port);

    let body = json!({"url": receiver.url(), "enabled_events": ["*"],
        "signature_format": "standard_webhooks"});
    let (status, _, created) = call(&base, Method::POST, "/v1/webhooks", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let generated = created["secret"].as_str().expect("the generated secret");
    let generated = generated.to_string();
    assert!(generated.starts_with("whsec_"), "{generated}");
    let path = format!("/v1/webhooks/{}", created["id"].as_str().unwrap());
    let new = webhook_worker::signing::new_standard_secret();
    let change = Some(json!({"secret": new}));
    let (status, patched, _) = call(&base, Method::PATCH, &path, change).await;
    assert_eq!(status, 200, "{patched}");

    let (_, event) = crate::support::event("business.updated");
    broker
        .publish(Some("acct"), "business.updated", &event)
        .await;
    let delivered = receiver.wait_for(1, WAIT).await.remove(0);
    let why = "signed with the generated and the new secret";
    assert_eq!(signature_count(&delivered), 2, "{why}");

    let mut answers = vec![patched];
    let put = Some(json!({"enabled_events": ["*"]}));
    for (method, path, body) in [
        (Method::GET, path.as_str(), None),
        (Method::GET, "/v1/webhooks", None),
        (Method::PUT, path.as_str(), put),
        (Method::PATCH, path.as_str(), Some(json!({"secret": null}))),
        (Method::DELETE, path.as_str(), None),
    ] {
        answers.push(call(&base, method, path, body).await.1);
    }
    worker.kill().await;
    broker.delete_topology().await;
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("webhook updated"),
        "the log was captured: {log}"
    );
    for secret in [&generated, &new] {
        let key = secret.trim_start_matches("whsec_");
        for text in answers.iter().chain([&log]) {
            assert!(!text.contains(key), "a secret leaked: {text}");
        }
    }
    let refusal = &answers[4];
    assert!(
        refusal.contains("\"secret\""),
        "null is refused, naming secret: {refusal}"
    );
}
