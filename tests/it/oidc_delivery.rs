//! OAuth end to end: the worker delivers to OIDC webhooks with access tokens from a real OAuth
//! server (oidc-provider), and the provider's introspection endpoint vouches for them.

use std::{collections::HashSet, time::Duration};

use serde_json::{json, Value};

use crate::{
    oidc::{keys, start_provider, JWT_CLIENT, POST_CLIENT, POST_SECRET},
    oidc_provider::{OidcProvider, RESOURCE, SCOPE},
    support::{event, random_key, unique_prefix, InProcessWorker, TestReceiver},
};

const WAIT: Duration = Duration::from_secs(30);

fn signing_keys_toml(files: &[std::path::PathBuf]) -> String {
    let list: Vec<String> = files
        .iter()
        .map(|f| format!("{:?}", f.display().to_string()))
        .collect();
    format!(
        "[oidc]\nsigning_keys = [{}]\nsigning_keys_account = \"acct\"\n",
        list.join(", ")
    )
}

/// Webhook JSON for an OIDC webhook of `method` against `provider`.
fn oidc_hook(url: &str, provider: &OidcProvider, method: &str, ttl: u64) -> Value {
    let mut hook = json!({
        "url": url, "enabled_events": ["*"], "oidc_auth_method": method,
        "oidc_token_endpoint": provider.token_endpoint, "oidc_access_token_ttl_seconds": ttl,
    });
    if method == "client_secret" {
        hook["oidc_client_id"] = POST_CLIENT.into();
        hook["oidc_client_secret"] = POST_SECRET.into();
    } else {
        hook["oidc_client_id"] = JWT_CLIENT.into();
    }
    hook
}

fn bearer(received: &crate::support::Received) -> String {
    received
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer ").map(str::to_string))
        .expect("a bearer token")
}

#[tokio::test]
async fn deliveries_carry_tokens_the_provider_says_are_active_for_both_methods_with_and_without_scope_and_resource(
) {
    let provider = start_provider().await;
    let worker = InProcessWorker::start(&signing_keys_toml(&keys().a_then_c_files)).await;
    let mut cases = Vec::new();
    for method in ["client_secret", "private_key_jwt"] {
        for (scope, resource) in [
            (None, None),
            (Some(SCOPE), None),
            (None, Some(RESOURCE)),
            (Some(SCOPE), Some(RESOURCE)),
        ] {
            let receiver = TestReceiver::start().await;
            let mut hook = oidc_hook(&receiver.url(), &provider, method, 3600);
            if let Some(scope) = scope {
                hook["oidc_scope"] = scope.into();
            }
            if let Some(resource) = resource {
                hook["oidc_resource_uri"] = resource.into();
            }
            worker.add_webhook("acct", hook).await;
            cases.push((method, scope, resource, receiver));
        }
    }
    worker
        .publish(
            Some("acct"),
            "business.updated",
            &event("business.updated").1,
        )
        .await;
    for (method, scope, resource, receiver) in &cases {
        let token = bearer(&receiver.wait_for(1, WAIT).await[0]);
        let answer = provider.introspect(&token).await;
        let client = if *method == "client_secret" {
            POST_CLIENT
        } else {
            JWT_CLIENT
        };
        let case = format!("{method} scope={scope:?} resource={resource:?}: {answer}");
        assert_eq!(answer["active"], true, "{case}");
        assert_eq!(answer["client_id"], client, "{case}");
        assert_eq!(
            answer.get("scope").and_then(Value::as_str),
            *scope,
            "{case}"
        );
        assert_eq!(
            answer.get("aud").and_then(Value::as_str),
            *resource,
            "{case}"
        );
    }
    worker.stop().await;
}

#[tokio::test]
async fn two_hundred_concurrent_deliveries_make_one_token_request_and_one_more_after_the_ttl() {
    let provider = start_provider().await;
    let worker = InProcessWorker::start(
        "[amqp]\nprefetch = 256\n[delivery]\nconcurrency_initial = 256\n[oidc]\ntoken_expiry_margin = \"0s\"",
    )
    .await;
    let receiver = TestReceiver::start().await;
    worker
        .add_webhook(
            "acct",
            oidc_hook(&receiver.url(), &provider, "client_secret", 6),
        )
        .await;
    for _ in 0..200 {
        worker
            .publish(
                Some("acct"),
                "business.updated",
                &event("business.updated").1,
            )
            .await;
    }
    let received = receiver.wait_for(200, WAIT).await;
    let tokens: HashSet<String> = received.iter().map(bearer).collect();
    assert_eq!(provider.token_requests(POST_CLIENT).await, 1);
    assert_eq!(tokens.len(), 1, "every delivery used the one token");

    // The webhook's TTL is 6 s (time enough for the 200 deliveries on a loaded machine) and the
    // margin 0: wait it out, then one more delivery.
    tokio::time::sleep(Duration::from_millis(6_500)).await;
    worker
        .publish(
            Some("acct"),
            "business.updated",
            &event("business.updated").1,
        )
        .await;
    let received = receiver.wait_for(201, WAIT).await;
    assert_eq!(provider.token_requests(POST_CLIENT).await, 2);
    assert!(
        !tokens.contains(&bearer(&received[200])),
        "a fresh token after the TTL"
    );
    worker.stop().await;
}

#[tokio::test]
async fn a_401_from_the_endpoint_drops_the_cached_token_and_the_retry_uses_a_fresh_one() {
    let provider = start_provider().await;
    let worker = InProcessWorker::start(&signing_keys_toml(&keys().a_then_c_files)).await;
    let receiver = TestReceiver::start().await;
    receiver.plan(&[401]);
    worker
        .add_webhook(
            "acct",
            oidc_hook(&receiver.url(), &provider, "private_key_jwt", 3600),
        )
        .await;
    worker
        .publish(
            Some("acct"),
            "business.updated",
            &event("business.updated").1,
        )
        .await;
    let received = receiver.wait_for(2, WAIT).await;
    let (first, second) = (bearer(&received[0]), bearer(&received[1]));
    assert_ne!(first, second, "the retry carried a fresh token");
    assert_eq!(
        received[1].header("x-webhook-attempt").as_deref(),
        Some("1"),
        "retried at once, same attempt"
    );
    assert_eq!(provider.token_requests(JWT_CLIENT).await, 2);
    assert_eq!(provider.introspect(&second).await["active"], true);
    worker
        .wait_for_metric("deliveries_total{outcome=\"delivered\"}", 1, WAIT)
        .await;
    worker.stop().await;
}

/// Runs the worker binary with debug logs captured, against webhooks stored before it starts.
async fn run_binary_until_dead_letters(
    hooks: Vec<Value>,
    signing_key_files: &[std::path::PathBuf],
) -> (Vec<String>, String) {
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}/oidc.db", dir.path().display());
    let key = random_key();
    let prefix = unique_prefix();
    crate::support::seed_webhooks(&database_url, &key, "acct", &hooks).await;
    let broker = InProcessWorker::publisher_for(&prefix).await;
    let log_path = dir.path().join("worker.log");
    let keys: Vec<String> = signing_key_files
        .iter()
        .map(|f| format!("{:?}", f.display().to_string()))
        .collect();
    let mut worker = crate::support::WorkerProcessBuilder::new(&prefix, &database_url, &key)
        .env("OIDC__SIGNING_KEYS", format!("[{}]", keys.join(",")))
        .env("OIDC__SIGNING_KEYS_ACCOUNT", "acct")
        .env("LOG__LEVEL", "trace")
        .stderr_to(std::fs::File::create(&log_path).unwrap())
        .spawn();
    broker
        .publish(
            Some("acct"),
            "business.updated",
            &event("business.updated").1,
        )
        .await;
    let letters = broker.dead_letters(hooks.len(), WAIT).await;
    worker.kill().await;
    broker.delete_topology().await;
    let details = letters
        .iter()
        .map(|(headers, _)| match headers.inner().get("x-dead-detail") {
            Some(lapin::types::AMQPValue::LongString(s)) => {
                String::from_utf8_lossy(s.as_bytes()).into_owned()
            }
            other => panic!("x-dead-detail: {other:?}"),
        })
        .collect();
    (details, std::fs::read_to_string(&log_path).unwrap())
}

#[tokio::test]
async fn a_wrong_client_secret_or_an_unregistered_key_is_retried_then_dead_lettered_as_invalid_client_and_never_logged(
) {
    let provider = start_provider().await;
    let receiver = TestReceiver::start().await;
    let wrong_secret = "wrong-secret-must-not-leak-8d1f0c";
    let mut wrong = oidc_hook(&receiver.url(), &provider, "client_secret", 3600);
    wrong["oidc_client_secret"] = wrong_secret.into();
    let unregistered = oidc_hook(&receiver.url(), &provider, "private_key_jwt", 3600);
    let (details, log) =
        run_binary_until_dead_letters(vec![wrong, unregistered], &keys().unregistered_files).await;
    assert_eq!(details, ["token: invalid_client", "token: invalid_client"]);
    assert_eq!(receiver.count(), 0, "nothing is sent without a token");
    assert_eq!(
        provider.token_requests(POST_CLIENT).await,
        2,
        "the first attempt and one retry"
    );
    assert_eq!(
        provider.token_requests(JWT_CLIENT).await,
        2,
        "the first attempt and one retry"
    );
    assert!(log.contains("invalid_client"), "the log says why: {log}");
    assert!(
        !log.contains(wrong_secret),
        "the client secret leaked into the log"
    );
    assert!(
        !log.contains("eyJ"),
        "a JWT (client assertion) leaked into the log"
    );
    assert!(!log.contains("BEGIN"), "key material leaked into the log");
}

#[tokio::test]
async fn the_file_keys_of_a_single_account_deployment_are_that_accounts_jwks() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}/jwks.db", dir.path().display());
    let token = "whk_test_file_keys_account";
    let config = crate::support::test_config(
        &unique_prefix(),
        &database_url,
        &format!(
            "{}[api]\ntokens = [{{ account_id = \"acct\", token_sha256 = \"{}\" }}]\n",
            signing_keys_toml(&keys().a_then_c_files),
            hex::encode(sha2::Sha256::digest(token.as_bytes()))
        ),
    );
    let app = webhook_worker::app::Application::start(config, webhook_worker::cli::Role::Api)
        .await
        .unwrap();
    let expected: Vec<Value> = keys().a_then_c.jwks()["keys"].as_array().unwrap().clone();
    assert_eq!(expected.len(), 2);
    let http = reqwest::Client::new();
    let base = format!("http://{}", app.api_addr());
    let jwks: Value = http
        .get(format!("{base}/v1/webhooks/oidc_keys"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap(), &expected, "{jwks}");
    let uri = jwks["jwks_uri"].as_str().expect("a jwks_uri");
    let public: Value = http
        .get(format!("{base}{uri}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(public["keys"].as_array().unwrap(), &expected);
    for key in public["keys"].as_array().unwrap() {
        assert!(
            key.get("d").is_none() && key.get("p").is_none(),
            "no private parts"
        );
    }
    // Rotation is the files' business for this account.
    let rotate = http
        .post(format!("{base}/v1/webhooks/oidc_keys/rotate"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(rotate.status(), 409);
    app.stop().await;
}
