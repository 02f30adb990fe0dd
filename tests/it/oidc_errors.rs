//! Interop failures against oidc-provider: rejected credentials become `invalid_client` without
//! revealing anything; oversized and unreachable token endpoints; and no secret, token or
//! assertion in the worker's logs, even at trace level.

use std::{sync::Arc, time::Duration};

use webhook_worker::{
    oidc::{TokenClient, TokenError},
    secret::Secret,
    webhook::{EndpointUrl, OidcAuthMethod, OidcSettings},
};

use crate::{
    oidc::{keys, settings, start_provider, token_provider, JWT_CLIENT, POST_CLIENT, POST_SECRET},
    oidc_provider::{loopback_allowed, test_http_client},
};

/// The error is `Rejected` with `invalid_client`, and says nothing secret.
fn assert_invalid_client(error: &TokenError, secrets: &[&str]) {
    assert!(
        matches!(error, TokenError::Rejected { code, .. } if code == "invalid_client"),
        "{error:?}"
    );
    assert_eq!(error.reason(), "invalid_client");
    let text = format!("{error} {error:?}");
    for secret in secrets {
        assert!(!text.contains(secret), "{text}");
    }
    // No JWT (assertion) either: they all start with a base64url '{"'.
    assert!(!text.contains("eyJ"), "{text}");
}

#[tokio::test]
async fn a_wrong_client_secret_is_rejected_as_invalid_client_without_revealing_it() {
    let provider = start_provider().await;
    let (tokens, metrics) = token_provider(&keys().a_then_c, Duration::ZERO);
    let mut settings = settings(&provider, OidcAuthMethod::ClientSecret);
    let wrong = "wrong-secret-a81f3e0c5d7b";
    settings.client_secret = Some(Secret::new(wrong));
    let error = tokens.token(&settings).await.expect_err("a wrong secret");
    assert_invalid_client(&error, &[wrong, POST_SECRET]);
    // A failure is not cached: the next call asks again.
    let again = tokens.token(&settings).await.expect_err("still wrong");
    assert_invalid_client(&again, &[wrong, POST_SECRET]);
    assert_eq!(provider.token_requests(POST_CLIENT).await, 2);
    assert_eq!(provider.tokens_issued(POST_CLIENT).await, 0);
    let text = metrics.render();
    assert!(
        text.contains(r#"webhook_worker_token_requests_total{outcome="rejected"} 2"#),
        "{text}"
    );
    assert!(!text.contains(wrong));
}

#[tokio::test]
async fn an_unregistered_key_is_rejected_as_invalid_client_without_revealing_the_assertion() {
    let provider = start_provider().await;
    let (tokens, _) = token_provider(&keys().unregistered, Duration::ZERO);
    let settings = settings(&provider, OidcAuthMethod::PrivateKeyJwt);
    let error = tokens.token(&settings).await.expect_err("an unknown key");
    assert_invalid_client(&error, &[]);
    assert_eq!(provider.token_requests(JWT_CLIENT).await, 1);
}

#[tokio::test]
async fn a_response_over_the_size_limit_is_refused() {
    let provider = start_provider().await;
    let client = TokenClient::new(
        test_http_client(),
        crate::oidc::account_keys(&keys().a_then_c),
        Duration::from_secs(60),
        16,
    )
    .with_address_policy(loopback_allowed());
    let error = client
        .request(&settings(&provider, OidcAuthMethod::ClientSecret))
        .await
        .expect_err("the token response is longer than 16 bytes");
    assert_eq!(error.reason(), "invalid_token_response", "{error}");
    assert!(error.to_string().contains("16 bytes"), "{error}");
}

#[tokio::test]
async fn an_unreachable_token_endpoint_fails_without_printing_its_url() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let (tokens, _) = token_provider(&keys().a_then_c, Duration::ZERO);
    let settings = OidcSettings {
        account_id: crate::oidc::KEY_ACCOUNT.to_string(),
        method: OidcAuthMethod::ClientSecret,
        client_id: "c".into(),
        client_secret: Some(Secret::new("s3cr3t-value")),
        token_endpoint: EndpointUrl::parse(format!(
            "http://127.0.0.1:{port}/token?api_key=query-secret"
        ))
        .unwrap(),
        scope: None,
        resource: None,
        access_token_ttl: Duration::from_secs(60),
    };
    let error = tokens.token(&settings).await.expect_err("nothing listens");
    assert_eq!(error.reason(), "token_endpoint_unreachable", "{error}");
    let text = format!("{error} {error:?}");
    assert!(
        !text.contains("query-secret") && !text.contains("s3cr3t"),
        "{text}"
    );
}

/// A `tracing` writer that keeps everything in memory.
#[derive(Clone, Default)]
struct CapturedLog(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut log) = self.0.lock() {
            log.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLog {
    fn text(&self) -> String {
        self.0
            .lock()
            .map(|log| String::from_utf8_lossy(&log).into_owned())
            .unwrap_or_default()
    }
}

#[tokio::test]
async fn debug_logs_of_token_requests_carry_no_secret_token_or_assertion() {
    let log = CapturedLog::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // This test's runtime is single-threaded, so the thread-local subscriber sees everything.
    // While only one dispatcher exists, tracing-core computes the interest of a callsite from
    // the default of whichever thread hits it first: a parallel test's thread, without a
    // subscriber, would cache "never" for the worker's log lines. A second live dispatcher makes
    // every callsite consult all of them (and rebuilds those already cached).
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    let _guard = tracing::subscriber::set_default(subscriber);

    let provider = start_provider().await;
    let (tokens, _) = token_provider(&keys().a_then_c, Duration::ZERO);
    let secret_token = tokens
        .token(&settings(&provider, OidcAuthMethod::ClientSecret))
        .await
        .expect("client_secret token");
    let jwt_token = tokens
        .token(&settings(&provider, OidcAuthMethod::PrivateKeyJwt))
        .await
        .expect("private_key_jwt token");
    let mut wrong = settings(&provider, OidcAuthMethod::ClientSecret);
    wrong.client_secret = Some(Secret::new("wrong-secret-77e1c0d9"));
    tokens.token(&wrong).await.expect_err("wrong secret");
    let unregistered = token_provider(&keys().unregistered, Duration::ZERO).0;
    unregistered
        .token(&settings(&provider, OidcAuthMethod::PrivateKeyJwt))
        .await
        .expect_err("unregistered key");

    let text = log.text();
    assert!(
        text.contains("access token issued"),
        "nothing captured:\n{text}"
    );
    assert!(text.contains("invalid_client"), "{text}");
    for secret in [
        POST_SECRET,
        "wrong-secret-77e1c0d9",
        secret_token.expose(),
        jwt_token.expose(),
        "eyJ",
    ] {
        assert!(!text.contains(secret), "{secret} in the log:\n{text}");
    }
}
