//! The address rules on IPv6 spellings that lead to an IPv4 address (6to4, Teredo, NAT64,
//! IPv4-translated): 127.0.0.1 and 169.254.169.254 written so are refused by the API for a
//! webhook URL and a token endpoint, and refused at delivery when stored some other way, also
//! with `allow_networks = ["127.0.0.0/8"]`.

use std::{sync::Arc, time::Duration};

use lapin::types::AMQPValue;
use serde_json::json;
use webhook_worker::{
    oidc::{AccountKeys, SigningKeys, TokenClient, TokenError},
    secret::Secret,
    webhook::{OidcAuthMethod, OidcSettings},
};

use crate::{
    oidc_provider::{loopback_allowed, test_http_client},
    support::{spawn_app, with, Backend, InProcessWorker, TestReceiver},
};

const WAIT: Duration = Duration::from_secs(20);

/// 127.0.0.1 and 169.254.169.254 in each spelling, as URL hosts.
const SPELLINGS: [&str; 9] = [
    "[2002:7f00:1::1]",              // 6to4
    "[2002:a9fe:a9fe::1]",           // 6to4
    "[2001:0:808:808::80ff:fffe]",   // Teredo, client 127.0.0.1
    "[2001:0:a9fe:a9fe::f7f7:f7f7]", // Teredo, server 169.254.169.254
    "[64:ff9b::7f00:1]",             // NAT64
    "[64:ff9b::a9fe:a9fe]",          // NAT64
    "[64:ff9b:1::7f00:1]",           // local-use NAT64
    "[::ffff:0:7f00:1]",             // IPv4-translated
    "[::ffff:0:a9fe:a9fe]",          // IPv4-translated
];

#[tokio::test]
async fn the_api_refuses_every_spelling_as_a_webhook_url_and_as_a_token_endpoint() {
    let app = spawn_app(Backend::Sqlite).await;
    for host in SPELLINGS {
        let body = with(json!({"url": format!("https://{host}/hook")}));
        let reply = app.post("/v1/webhooks", &app.token_a, &body).await;
        let reply = reply.expect(422);
        assert_eq!(reply.error_fields(), ["url"], "{host}");

        let body = with(json!({
            "oidc_auth_method": "client_secret",
            "oidc_client_id": "c",
            "oidc_client_secret": "s",
            "oidc_token_endpoint": format!("https://{host}/token"),
            "oidc_access_token_ttl_seconds": 60,
        }));
        let reply = app.post("/v1/webhooks", &app.token_a, &body).await;
        let reply = reply.expect(422);
        assert_eq!(reply.error_fields(), ["oidc_token_endpoint"], "{host}");
    }
    let listed = app.get("/v1/webhooks", &app.token_a).await.expect(200);
    assert_eq!(listed.json["data"].as_array().map(Vec::len), Some(0));
}

fn dead_detail(headers: &lapin::types::FieldTable) -> String {
    match headers.inner().get("x-dead-detail") {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        other => panic!("x-dead-detail: {other:?}"),
    }
}

#[tokio::test]
async fn stored_webhooks_and_token_endpoints_in_these_spellings_are_never_connected_to() {
    // Loopback allowed, as in local testing: that opens 127.0.0.0/8, not the relays to it.
    let worker = InProcessWorker::start("[delivery]\nretry_schedule = []").await;
    let receiver = TestReceiver::start().await;
    let port = receiver.addr.port();
    let plain = worker
        .add_webhook(
            "acct",
            json!({"url": "http://example.invalid/", "enabled_events": ["other"]}),
        )
        .await;
    let oidc = worker
        .add_webhook(
            "acct",
            json!({
                "url": receiver.url(), "enabled_events": ["other"],
                "oidc_auth_method": "client_secret", "oidc_client_id": "c",
                "oidc_client_secret": "s", "oidc_access_token_ttl_seconds": 60,
                "oidc_token_endpoint": format!("http://127.0.0.1:{port}/token"),
            }),
        )
        .await;
    for host in SPELLINGS {
        let mut webhook = plain.clone();
        webhook.id = uuid::Uuid::new_v4();
        webhook.url = format!("http://{host}:{port}/hook");
        webhook.enabled_events = vec!["*".into()];
        worker.insert(webhook).await;
        // The webhook URL is allowed; only its token endpoint is in the spelling.
        let mut webhook = oidc.clone();
        webhook.id = uuid::Uuid::new_v4();
        webhook.oidc_token_endpoint = Some(format!("http://{host}:{port}/token"));
        webhook.enabled_events = vec!["*".into()];
        worker.insert(webhook).await;
    }
    worker.publish_event().await;
    let letters = worker.dead_letters(SPELLINGS.len() * 2, WAIT).await;
    let details: Vec<String> = letters.iter().map(|(h, _)| dead_detail(h)).collect();
    let blocked_urls = details
        .iter()
        .filter(|d| d.starts_with("blocked_address"))
        .count();
    let blocked_tokens = details
        .iter()
        .filter(|d| d.as_str() == "token: blocked_address")
        .count();
    assert_eq!(
        (blocked_urls, blocked_tokens),
        (SPELLINGS.len(), SPELLINGS.len()),
        "{details:?}"
    );
    worker.until_quiet(|| receiver.count()).await;
    assert_eq!(receiver.count(), 0, "nothing reached the receiver");
    worker.stop().await;
}

#[tokio::test]
async fn the_token_client_itself_refuses_literal_non_public_endpoints() {
    // A plain HTTP client, without the worker's resolver: the check is the token client's own.
    let receiver = TestReceiver::start().await;
    let port = receiver.addr.port();
    let client = |policy: Option<webhook_worker::safety::AddressPolicy>| {
        let client = TokenClient::new(
            test_http_client(),
            AccountKeys::from_files("acct", Arc::new(SigningKeys::default())),
            Duration::from_secs(60),
            65536,
        );
        match policy {
            Some(policy) => client.with_address_policy(policy),
            None => client,
        }
    };
    let settings = |host: &str| OidcSettings {
        account_id: "acct".into(),
        method: OidcAuthMethod::ClientSecret,
        client_id: "c".into(),
        client_secret: Some(Secret::new("s")),
        token_endpoint: format!("http://{host}:{port}/token"),
        scope: None,
        resource: None,
        access_token_ttl: Duration::from_secs(60),
    };
    let strict = client(None);
    let loopback = client(Some(loopback_allowed()));
    for host in SPELLINGS.iter().chain(&["127.0.0.1", "[::ffff:127.0.0.1]"]) {
        let error = strict.request(&settings(host)).await.expect_err(host);
        assert!(matches!(error, TokenError::Blocked(_)), "{host}: {error:?}");
        assert_eq!(error.reason(), "blocked_address");
    }
    for host in SPELLINGS {
        let error = loopback.request(&settings(host)).await.expect_err(host);
        assert!(matches!(error, TokenError::Blocked(_)), "{host}: {error:?}");
    }
    assert_eq!(receiver.count(), 0, "nothing reached the receiver");
    // The check can pass: allowed loopback is asked (and answers no token).
    let error = loopback
        .request(&settings("127.0.0.1"))
        .await
        .expect_err("the receiver is no token endpoint");
    assert!(!matches!(error, TokenError::Blocked(_)), "{error:?}");
    assert_eq!(receiver.count(), 1);
}
