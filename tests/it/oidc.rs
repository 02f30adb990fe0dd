//! Interop: the worker's token client and cache against a real OAuth 2.0 server (oidc-provider),
//! for both methods, with and without scope and resource; one token request per cache entry;
//! expiry; invalidation; assertions accepted once. Failures are in `oidc_errors`; the helpers
//! here serve both.

use std::{
    path::PathBuf,
    sync::{Arc, OnceLock},
    time::{Duration, SystemTime},
};

use futures_util::future::join_all;
use serde_json::{json, Value};
use webhook_worker::{
    config::{HumanDuration, OidcConfig},
    oidc::{
        assertion, keygen, token::CLIENT_ASSERTION_TYPE, AccountKeys, SigningKeys, TokenClient,
        TokenProvider,
    },
    secret::Secret,
    telemetry::Metrics,
    webhook::{EndpointUrl, OidcAuthMethod, OidcSettings},
};

use crate::oidc_provider::{
    loopback_allowed, test_http_client, OidcProvider, RESOURCE, SCOPE, SHORT_LIVED_RESOURCE,
};

pub const POST_CLIENT: &str = "client-secret-post";
pub const POST_SECRET: &str = "post-client-secret-5f2c9a1e7b3d4c6a";
pub const JWT_CLIENT: &str = "private-key-jwt";

/// The worker's keys for these tests, made once per test run.
pub struct TestKeys {
    /// Key A (with a certificate) signs, key C is published too: the client's JWKS.
    pub a_then_c: Arc<SigningKeys>,
    /// Key C (no certificate) signs: rotation to the second published key.
    pub c_then_a: Arc<SigningKeys>,
    /// A key the provider has never seen.
    pub unregistered: Arc<SigningKeys>,
    /// The PEM files behind `a_then_c` and `unregistered`, for `oidc.signing_keys`.
    pub a_then_c_files: Vec<PathBuf>,
    pub unregistered_files: Vec<PathBuf>,
    _dir: tempfile::TempDir,
}

pub fn keys() -> &'static TestKeys {
    static KEYS: OnceLock<TestKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let write = |name: &str, text: String| -> PathBuf {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write a key file");
            path
        };
        let a = keygen::generate_key(2048).expect("key A");
        let cert = keygen::self_signed_certificate(&a, "webhook-worker", Duration::from_secs(3600))
            .expect("certificate A");
        let a = write("a.pem", format!("{a}{cert}"));
        let c = write("c.pem", keygen::generate_key(2048).expect("key C"));
        let b = write("b.pem", keygen::generate_key(2048).expect("key B"));
        let load = |paths: &[PathBuf]| Arc::new(SigningKeys::load(paths).expect("load keys"));
        TestKeys {
            a_then_c: load(&[a.clone(), c.clone()]),
            c_then_a: load(&[c.clone(), a.clone()]),
            unregistered: load(std::slice::from_ref(&b)),
            a_then_c_files: vec![a, c],
            unregistered_files: vec![b],
            _dir: dir,
        }
    })
}

pub async fn start_provider() -> OidcProvider {
    OidcProvider::start(vec![
        json!({
            "client_id": POST_CLIENT,
            "client_secret": POST_SECRET,
            "token_endpoint_auth_method": "client_secret_post",
        }),
        json!({
            "client_id": JWT_CLIENT,
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": keys().a_then_c.jwks(),
        }),
    ])
    .await
}

pub fn settings(provider: &OidcProvider, method: OidcAuthMethod) -> OidcSettings {
    let (client_id, client_secret) = match method {
        OidcAuthMethod::ClientSecret => (POST_CLIENT, Some(Secret::new(POST_SECRET))),
        OidcAuthMethod::PrivateKeyJwt => (JWT_CLIENT, None),
    };
    OidcSettings {
        account_id: KEY_ACCOUNT.to_string(),
        method,
        client_id: client_id.to_string(),
        client_secret,
        token_endpoint: EndpointUrl::parse(provider.token_endpoint.clone()).unwrap(),
        scope: None,
        resource: None,
        access_token_ttl: Duration::from_secs(3600),
    }
}

fn oidc_config(margin: Duration) -> OidcConfig {
    let mut config = webhook_worker::config::Config::from_toml("")
        .expect("the defaults are valid")
        .oidc;
    config.assertion_lifetime = HumanDuration(Duration::from_secs(60));
    config.token_expiry_margin = HumanDuration(margin);
    config
}

/// The account the direct token-client tests sign for, with the test keys as its key files.
pub const KEY_ACCOUNT: &str = "acct";

pub fn account_keys(keys: &Arc<SigningKeys>) -> AccountKeys {
    AccountKeys::from_files(KEY_ACCOUNT, keys.clone())
}

pub fn token_provider(keys: &Arc<SigningKeys>, margin: Duration) -> (TokenProvider, Metrics) {
    let metrics = Metrics::new();
    let tokens = TokenProvider::new(
        test_http_client(),
        account_keys(keys),
        &oidc_config(margin),
        65536,
        metrics.clone(),
    )
    .with_address_policy(loopback_allowed());
    (tokens, metrics)
}

/// Asserts the provider says `token` is active, issued to `client_id`, with `scope` and `aud`.
async fn assert_active(
    provider: &OidcProvider,
    token: &Secret,
    client_id: &str,
    scope: Option<&str>,
    aud: Option<&str>,
) {
    let answer = provider.introspect(token.expose()).await;
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["client_id"], client_id, "{answer}");
    assert_eq!(answer["token_type"], "Bearer", "{answer}");
    assert_eq!(
        answer.get("scope").and_then(Value::as_str),
        scope,
        "{answer}"
    );
    assert_eq!(answer.get("aud").and_then(Value::as_str), aud, "{answer}");
}

/// Every combination of scope and resource, for one method: each token is active and the
/// client's, with the scope asked for and the resource as its audience.
async fn tokens_for_every_scope_and_resource(method: OidcAuthMethod, keys: &Arc<SigningKeys>) {
    let provider = start_provider().await;
    let (tokens, _) = token_provider(keys, Duration::ZERO);
    for (scope, resource) in [
        (None, None),
        (Some(SCOPE), None),
        (None, Some(RESOURCE)),
        (Some(SCOPE), Some(RESOURCE)),
    ] {
        let mut settings = settings(&provider, method);
        settings.scope = scope.map(str::to_string);
        settings.resource = resource.map(str::to_string);
        let token = tokens
            .token(&settings)
            .await
            .unwrap_or_else(|e| panic!("{scope:?} {resource:?}: {e}\n{}", provider.log()));
        assert_active(&provider, &token, &settings.client_id, scope, resource).await;
    }
    assert_eq!(
        provider
            .token_requests(&settings(&provider, method).client_id)
            .await,
        4
    );
}

#[tokio::test]
async fn client_secret_tokens_are_active_and_the_clients_with_and_without_scope_and_resource() {
    tokens_for_every_scope_and_resource(OidcAuthMethod::ClientSecret, &keys().a_then_c).await;
}

#[tokio::test]
async fn private_key_jwt_tokens_are_active_and_the_clients_with_and_without_scope_and_resource() {
    // Key A has a certificate, so its assertions carry x5t as well as kid.
    tokens_for_every_scope_and_resource(OidcAuthMethod::PrivateKeyJwt, &keys().a_then_c).await;
}

#[tokio::test]
async fn the_second_published_key_signs_after_rotation() {
    tokens_for_every_scope_and_resource(OidcAuthMethod::PrivateKeyJwt, &keys().c_then_a).await;
}

async fn concurrent_calls_make_one_request(method: OidcAuthMethod) {
    let provider = start_provider().await;
    let (tokens, metrics) = token_provider(&keys().a_then_c, Duration::ZERO);
    let settings = settings(&provider, method);
    let results = join_all((0..200).map(|_| tokens.token(&settings))).await;
    let first = results[0].clone().expect("a token");
    assert!(results.iter().all(|r| r.as_ref() == Ok(&first)));
    assert_eq!(provider.token_requests(&settings.client_id).await, 1);
    // One call more, after the token is cached: a hit.
    assert_eq!(tokens.token(&settings).await.as_ref(), Ok(&first));
    let text = metrics.render();
    for line in [
        r#"webhook_worker_token_requests_total{outcome="issued"} 1"#,
        r#"webhook_worker_token_cache_total{outcome="miss"} 200"#,
        r#"webhook_worker_token_cache_total{outcome="hit"} 1"#,
        "webhook_worker_token_request_duration_seconds_count 1",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
}

#[tokio::test]
async fn two_hundred_concurrent_client_secret_calls_make_exactly_one_token_request() {
    concurrent_calls_make_one_request(OidcAuthMethod::ClientSecret).await;
}

#[tokio::test]
async fn two_hundred_concurrent_private_key_jwt_calls_make_exactly_one_token_request() {
    concurrent_calls_make_one_request(OidcAuthMethod::PrivateKeyJwt).await;
}

#[tokio::test]
async fn after_the_ttl_the_next_calls_make_exactly_one_more_request() {
    let provider = start_provider().await;
    let (tokens, _) = token_provider(&keys().a_then_c, Duration::ZERO);
    let mut settings = settings(&provider, OidcAuthMethod::ClientSecret);
    settings.access_token_ttl = Duration::from_secs(1);
    let first = tokens.token(&settings).await.expect("first token");
    assert_eq!(tokens.token(&settings).await.as_ref(), Ok(&first));
    assert_eq!(provider.token_requests(POST_CLIENT).await, 1);

    tokio::time::sleep(Duration::from_millis(1300)).await;
    let results = join_all((0..200).map(|_| tokens.token(&settings))).await;
    let second = results[0].clone().expect("second token");
    assert_ne!(second, first);
    assert!(results.iter().all(|r| r.as_ref() == Ok(&second)));
    assert_eq!(provider.token_requests(POST_CLIENT).await, 2);
}

#[tokio::test]
async fn a_shorter_expires_in_than_the_ttl_decides_when_the_token_is_renewed() {
    let provider = start_provider().await;
    let (tokens, _) = token_provider(&keys().a_then_c, Duration::ZERO);
    let mut settings = settings(&provider, OidcAuthMethod::PrivateKeyJwt);
    // The provider issues tokens for this resource with expires_in = 1; the TTL is an hour.
    settings.resource = Some(SHORT_LIVED_RESOURCE.to_string());
    let first = tokens.token(&settings).await.expect("first token");
    assert_eq!(tokens.token(&settings).await.as_ref(), Ok(&first));
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let second = tokens.token(&settings).await.expect("second token");
    assert_ne!(second, first);
    assert_eq!(provider.token_requests(JWT_CLIENT).await, 2);
}

#[tokio::test]
async fn a_token_with_no_lifetime_left_is_returned_but_not_cached() {
    let provider = start_provider().await;
    let (tokens, _) = token_provider(&keys().a_then_c, Duration::from_secs(5));
    let mut settings = settings(&provider, OidcAuthMethod::ClientSecret);
    settings.access_token_ttl = Duration::ZERO;
    let first = tokens.token(&settings).await.expect("first token");
    let second = tokens.token(&settings).await.expect("second token");
    assert_ne!(first, second);
    assert_active(&provider, &second, POST_CLIENT, None, None).await;
    assert_eq!(provider.token_requests(POST_CLIENT).await, 2);
}

#[tokio::test]
async fn invalidate_then_token_fetches_a_fresh_token() {
    let provider = start_provider().await;
    let (tokens, _) = token_provider(&keys().a_then_c, Duration::ZERO);
    let settings = settings(&provider, OidcAuthMethod::PrivateKeyJwt);
    let first = tokens.token(&settings).await.expect("first token");
    tokens.invalidate(&settings).await;
    let second = tokens.token(&settings).await.expect("second token");
    assert_ne!(first, second);
    assert_active(&provider, &second, JWT_CLIENT, None, None).await;
    assert_eq!(provider.token_requests(JWT_CLIENT).await, 2);
}

#[tokio::test]
async fn invalidating_a_stale_token_twice_fetches_only_one_fresh_token() {
    let provider = start_provider().await;
    let (tokens, _) = token_provider(&keys().a_then_c, Duration::ZERO);
    let settings = settings(&provider, OidcAuthMethod::ClientSecret);
    let stale = tokens.token(&settings).await.expect("first token");
    tokens.invalidate_token(&settings, &stale).await;
    let fresh = tokens.token(&settings).await.expect("fresh token");
    assert_ne!(stale, fresh);
    // A second delivery that failed with the stale token must not throw the fresh one away.
    tokens.invalidate_token(&settings, &stale).await;
    assert_eq!(tokens.token(&settings).await.as_ref(), Ok(&fresh));
    assert_eq!(provider.token_requests(POST_CLIENT).await, 2);
}

#[tokio::test]
async fn the_provider_accepts_every_assertion_so_no_jti_is_reused() {
    let provider = start_provider().await;
    let keys = &keys().a_then_c;
    let client = TokenClient::new(
        test_http_client(),
        account_keys(keys),
        Duration::from_secs(60),
        65536,
    )
    .with_address_policy(loopback_allowed());
    let settings = settings(&provider, OidcAuthMethod::PrivateKeyJwt);
    for _ in 0..20 {
        client
            .request(&settings)
            .await
            .expect("each assertion is accepted");
    }
    assert_eq!(provider.tokens_issued(JWT_CLIENT).await, 20);

    // The provider does reject a replayed assertion, so the 20 acceptances above prove 20 jtis.
    let key = keys.signing().expect("a signing key");
    let claims = assertion::AssertionClaims::new(
        JWT_CLIENT,
        &provider.token_endpoint,
        SystemTime::now(),
        Duration::from_secs(60),
    );
    let jwt = assertion::sign(key, &claims).expect("signed");
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", JWT_CLIENT),
        ("client_assertion_type", CLIENT_ASSERTION_TYPE),
        ("client_assertion", jwt.expose()),
    ];
    let http = test_http_client();
    let send = || http.post(&provider.token_endpoint).form(&form).send();
    assert_eq!(send().await.expect("first use").status(), 200);
    let replay = send().await.expect("replay");
    assert_eq!(replay.status(), 401);
    let body: Value = replay.json().await.expect("error JSON");
    assert_eq!(body["error"], "invalid_client", "{body}");
}
