//! Standard Webhooks signatures and secret rotation end to end (issue #20): deliveries checked by
//! the published `standardwebhooks` library ([`verifier`]), a rotation's overlap seen from the
//! receiver ([`delivery`]), a PATCH of the secret under a stream of deliveries to a receiver that
//! switches secrets mid-overlap ([`stream`]), and no secret in the worker's log ([`logs`]).

mod delivery;
mod logs;
mod stream;
mod verifier;

use reqwest::Method;
use serde_json::Value;
use sha2::Digest;

use crate::support::InProcessWorker;

const TOKEN: &str = "whk_test_standard_webhooks_acct";

/// The worker's `[api]` tokens (account `acct`) and the rotation's overlap.
fn config(overlap: &str) -> String {
    let hash = hex::encode(sha2::Sha256::digest(TOKEN.as_bytes()));
    format!(
        "[api]\ntokens = [{{ account_id = \"acct\", token_sha256 = \"{hash}\" }}]\n\
         [signature]\nrotation_overlap = \"{overlap}\"\n"
    )
}

/// One call to the worker's API as account `acct`: the status and the JSON answer.
async fn call(worker: &InProcessWorker, method: Method, path: &str, body: &Value) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(
            method.clone(),
            format!("http://{}{path}", worker.app().api_addr()),
        )
        .bearer_auth(TOKEN);
    if method != Method::GET {
        request = request.json(body);
    }
    let response = request.send().await.expect("the API answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Creates a webhook through the API; returns its path.
async fn create(worker: &InProcessWorker, body: Value) -> String {
    let (status, created) = call(worker, Method::POST, "/v1/webhooks", &body).await;
    assert_eq!(status, 201, "{created}");
    format!("/v1/webhooks/{}", created["id"].as_str().expect("an id"))
}

/// PATCHes a webhook's secret through the API; the answer shows none.
async fn patch_secret(worker: &InProcessWorker, path: &str, secret: &str) {
    let body = serde_json::json!({ "secret": secret });
    let (status, updated) = call(worker, Method::PATCH, path, &body).await;
    assert_eq!(status, 200, "{updated}");
    assert!(updated.get("secret").is_none(), "{updated}");
}
