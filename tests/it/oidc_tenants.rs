//! The tenant boundary of OAuth, end to end against a real provider (oidc-provider): each
//! account signs client assertions with keys of its own, so a client registered with account
//! A's keys issues tokens to A's webhooks only, never to account B's webhook that names the same
//! client and token endpoint, whether or not A's token is cached; and an account's key rotates
//! with deliveries flowing, without losing one.

use std::{collections::HashSet, time::Duration};

use serde_json::{json, Value};
use webhook_worker::{cli::Role, oidc::AccountKeys};

use crate::{
    oidc_provider::OidcProvider,
    pipeline::text,
    support::{event, InProcessWorker, TestReceiver},
};

const WAIT: Duration = Duration::from_secs(30);
const CLIENT: &str = "tenant-a-client";

fn account_keys(worker: &InProcessWorker) -> AccountKeys {
    AccountKeys::new(
        Some(worker.app().registry().store().clone()),
        &worker.config.oidc,
    )
    .expect("account keys")
}

fn jwt_hook(url: &str, provider: &OidcProvider, ttl: u64) -> Value {
    json!({
        "url": url, "enabled_events": ["*"], "oidc_auth_method": "private_key_jwt",
        "oidc_client_id": CLIENT, "oidc_token_endpoint": provider.token_endpoint,
        "oidc_access_token_ttl_seconds": ttl,
    })
}

#[tokio::test]
async fn another_accounts_webhook_naming_the_same_client_never_gets_a_token_even_when_one_is_cached(
) {
    let worker = InProcessWorker::start("").await;
    let keys = account_keys(&worker);
    let a_keys = keys.current("acct-a").await.expect("A's keys");
    let b_keys = keys.current("acct-b").await.expect("B's keys");
    assert_ne!(
        a_keys.jwks(chrono::Utc::now())["keys"][0]["kid"],
        b_keys.jwks(chrono::Utc::now())["keys"][0]["kid"]
    );
    let provider = OidcProvider::start(vec![json!({
        "client_id": CLIENT,
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": a_keys.jwks(chrono::Utc::now()),
    })])
    .await;
    let (receiver_a, receiver_b) = (TestReceiver::start().await, TestReceiver::start().await);
    worker
        .add_webhook("acct-a", jwt_hook(&receiver_a.url(), &provider, 3600))
        .await;
    let hook_b = worker
        .add_webhook("acct-b", jwt_hook(&receiver_b.url(), &provider, 3600))
        .await;

    // A's delivery gets a token, which is now in the cache.
    let body = event("business.updated").1;
    worker
        .publish(Some("acct-a"), "business.updated", &body)
        .await;
    let received = receiver_a.wait_for(1, WAIT).await;
    let token = received[0]
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer ").map(str::to_string))
        .expect("A's delivery carries a token");
    assert_eq!(provider.introspect(&token).await["client_id"], CLIENT);

    // B names the same client and endpoint: its assertions are signed with B's key, which the
    // provider does not trust, and A's cached token is not B's to use.
    worker
        .publish(Some("acct-b"), "business.updated", &body)
        .await;
    let letters = worker.dead_letters(1, WAIT).await;
    let headers = &letters[0].0;
    assert_eq!(text(headers, "x-dead-reason"), "retries_exhausted");
    assert_eq!(text(headers, "x-dead-detail"), "token: invalid_client");
    assert_eq!(text(headers, "x-webhook-id"), hook_b.id.to_string());
    worker.until_quiet(|| receiver_b.count()).await;
    assert_eq!(receiver_b.count(), 0, "B's endpoint never got a request");
    assert_eq!(
        provider.tokens_issued(CLIENT).await,
        1,
        "only A's token was issued"
    );
    let schedule_attempts = 1 + worker.config.delivery.retry_schedule.len();
    assert_eq!(
        provider.token_requests(CLIENT).await,
        1 + schedule_attempts,
        "each of B's attempts asked the provider, which refused"
    );
    worker.stop().await;
}

#[tokio::test]
async fn a_key_rotation_with_deliveries_flowing_loses_no_delivery() {
    // The new key signs 3 s after the rotation; the old one stays published 20 s more.
    let worker = InProcessWorker::start_as(
        "[oidc]\nkey_rotation_delay = \"3s\"\nkey_retirement_grace = \"20s\"\ntoken_expiry_margin = \"0s\"",
        Role::All,
    )
    .await;
    let keys = account_keys(&worker);
    let before = keys.current("acct").await.expect("the account's keys");
    let old_kid = before.keys[0].key.kid().to_string();
    // The provider fetches the account's public JWKS from the worker, as a jwks_uri.
    let jwks_uri = format!("http://{}/jwks/{}", worker.app().api_addr(), before.jwks_id);
    let provider = OidcProvider::start(vec![json!({
        "client_id": CLIENT,
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks_uri": jwks_uri,
    })])
    .await;
    let receiver = TestReceiver::start().await;
    // Tokens live 1 s, so assertions are made all through the rotation.
    worker
        .add_webhook("acct", jwt_hook(&receiver.url(), &provider, 1))
        .await;

    let mut ids = Vec::new();
    let mut rotation = None;
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_secs(14) {
        if rotation.is_none() && started.elapsed() > Duration::from_secs(2) {
            rotation = Some(keys.rotate("acct").await.expect("rotated"));
            // Stored and published at once, but the old key still signs until the delay ends.
            let stored = keys.current("acct").await.expect("the account's keys");
            assert_eq!(stored.keys.len(), 2, "the new key is stored beside the old");
            let signing = stored
                .signing_at(chrono::Utc::now())
                .expect("a signing key");
            assert_eq!(signing.kid(), old_kid, "the new key does not sign at once");
            // The provider picks up the published key before it signs (here, at once).
            provider.refresh_jwks(CLIENT).await;
        }
        let (id, body) = event("business.updated");
        worker
            .publish(Some("acct"), "business.updated", &body)
            .await;
        ids.push(id);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rotation = rotation.expect("the rotation happened");
    let stored = keys.current("acct").await.expect("the account's keys");
    let signing = stored
        .signing_at(chrono::Utc::now())
        .expect("a signing key");
    assert_eq!(
        signing.kid(),
        rotation.kid,
        "after its delay the new key signs"
    );
    let ids: HashSet<String> = ids.into_iter().collect();
    assert!(
        ids.len() > 150,
        "deliveries flowed throughout: {}",
        ids.len()
    );
    receiver.wait_for_event_ids(&ids, WAIT).await;
    assert_eq!(
        worker.metric("deliveries_total{outcome=\"dead_lettered\"}"),
        0
    );
    let requests = provider.token_requests(CLIENT).await;
    assert_eq!(
        provider.tokens_issued(CLIENT).await,
        requests,
        "the provider accepted every assertion"
    );
    let kids = provider.assertion_kids(CLIENT).await;
    assert!(
        kids.get(&old_kid).copied().unwrap_or(0) > 0,
        "the old key signed first: {kids:?}"
    );
    assert!(
        kids.get(&rotation.kid).copied().unwrap_or(0) > 0,
        "the new key signed after its delay: {kids:?}"
    );
    assert_eq!(kids.len(), 2, "{kids:?}");
    worker.stop().await;
}
