//! What a receiver gets from a `standard_webhooks` webhook, checked with the published library:
//! a delivery verifies, and a tampered body, an old timestamp or another secret does not; during
//! a rotation's overlap either secret verifies, after it only the new one (both formats).

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use webhook_worker::{
    cli::Role,
    signing::{new_standard_secret, sign, standard_key, standard_signature},
};

use super::{
    call, config, create, patch_secret,
    verifier::{signature_count, standard_headers, NpmVerifier},
};
use crate::support::{eventually, InProcessWorker, Received, TestReceiver};

const WAIT: Duration = Duration::from_secs(30);
const HEADER: &str = "x-middesk-signature-256";
const PREVIOUS_HEADER: &str = "x-middesk-signature-256-previous";

fn text(received: &Received) -> String {
    String::from_utf8(received.body.to_vec()).expect("a UTF-8 body")
}

#[tokio::test]
async fn a_standard_webhooks_delivery_verifies_with_the_published_library_and_a_tampered_one_does_not(
) {
    let worker = InProcessWorker::start_as(&config("24h"), Role::All).await;
    let receiver = TestReceiver::start().await;
    let secret = new_standard_secret();
    let body = json!({"url": receiver.url(), "enabled_events": ["*"],
        "signature_format": "standard_webhooks", "secret": secret});
    let path = create(&worker, body).await;
    let (_, view) = call(&worker, Method::GET, &path, &json!(null)).await;
    assert_eq!(view["signature_format"], "standard_webhooks", "{view}");

    let (event_id, _) = worker.publish_event().await;
    let received = receiver.wait_for(1, WAIT).await.remove(0);
    assert_eq!(received.header("webhook-id"), Some(event_id));
    let timestamp: i64 = received
        .header("webhook-timestamp")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (chrono::Utc::now().timestamp() - timestamp).abs() < 60,
        "{timestamp}"
    );
    assert_eq!(signature_count(&received), 1);
    // The platform's header as ever: keyed with the secret's bytes as given.
    let platform = sign(secret.as_bytes(), &received.body);
    assert_eq!(received.header(HEADER), Some(platform));
    assert_eq!(received.header(PREVIOUS_HEADER), None);

    let mut npm = NpmVerifier::start();
    npm.verify_received(&secret, &received)
        .await
        .expect("the library accepts it");
    let bare = secret.trim_start_matches("whsec_");
    npm.verify_received(bare, &received)
        .await
        .expect("the bare base64 form too");

    let headers = standard_headers(&received);
    let tampered = text(&received).replacen("business.updated", "business.updatee", 1);
    assert_ne!(tampered, text(&received));
    let error = npm
        .verify(&secret, headers.clone(), &tampered)
        .await
        .unwrap_err();
    assert!(error.contains("signature"), "{error}");

    // Ten minutes back, signed again for that time: only the tolerance refuses it.
    let old = timestamp - 600;
    let key = standard_key(&secret).unwrap();
    let id = received.header("webhook-id").unwrap();
    let mut stale = headers.clone();
    stale["webhook-timestamp"] = json!(old.to_string());
    stale["webhook-signature"] = json!(standard_signature(&key, &id, old, &received.body));
    let error = npm
        .verify(&secret, stale, &text(&received))
        .await
        .unwrap_err();
    assert!(error.to_lowercase().contains("timestamp"), "{error}");
    // Moved without signing again: refused as well.
    let mut moved = headers.clone();
    moved["webhook-timestamp"] = json!(old.to_string());
    npm.verify(&secret, moved, &text(&received))
        .await
        .unwrap_err();

    let error = npm
        .verify_received(&new_standard_secret(), &received)
        .await
        .unwrap_err();
    assert!(error.contains("signature"), "{error}");
    worker.stop().await;
}

/// Publishes an event and returns its delivery to `receiver` (which got `before` requests so far).
async fn deliver_one(worker: &InProcessWorker, receiver: &TestReceiver) -> Received {
    let before = receiver.count();
    let (event_id, _) = worker.publish_event().await;
    let received = receiver.wait_for(before + 1, WAIT).await;
    let found = received
        .into_iter()
        .skip(before)
        .find(|r| r.header("x-webhook-event-id").as_deref() == Some(event_id.as_str()));
    found.expect("the event's delivery")
}

/// The platform's two headers of a delivery: its signature and the previous secret's.
fn platform_headers(received: &Received) -> (Option<String>, Option<String>) {
    (received.header(HEADER), received.header(PREVIOUS_HEADER))
}

/// The hex signature of `received`'s body with `secret`'s bytes.
fn signed(secret: &str, received: &Received) -> Option<String> {
    Some(sign(secret.as_bytes(), &received.body))
}

/// The delivery of `event_id` at `receiver`, once it came.
async fn delivery_of(receiver: &TestReceiver, event_id: Option<String>) -> Received {
    eventually(WAIT, "the event's delivery", || async {
        let received = receiver.received().into_iter();
        let mut same = received.filter(|r| r.header("x-webhook-event-id") == event_id);
        same.next().ok_or("not yet")
    })
    .await
}

#[tokio::test]
async fn during_a_rotations_overlap_either_secret_verifies_and_after_it_only_the_new_one() {
    let worker = InProcessWorker::start_as(&config("5s"), Role::All).await;
    let (standard, platform) = (TestReceiver::start().await, TestReceiver::start().await);
    let (old, new) = (new_standard_secret(), new_standard_secret());
    let (old_bytes, new_bytes) = ("platform-old-2f6c1b", "platform-new-9a0e44");
    let body = json!({"url": platform.url(), "enabled_events": ["*"], "secret": old_bytes});
    let platform_path = create(&worker, body).await;
    let body = json!({"url": standard.url(), "enabled_events": ["*"],
        "signature_format": "standard_webhooks", "secret": old});
    let standard_path = create(&worker, body).await;
    // The platform webhook first: its overlap ends before the standard one's.
    patch_secret(&worker, &platform_path, new_bytes).await;
    patch_secret(&worker, &standard_path, &new).await;

    let mut npm = NpmVerifier::start();
    let during = deliver_one(&worker, &standard).await;
    let signatures = during.header("webhook-signature");
    assert_eq!(signature_count(&during), 2, "{signatures:?}");
    let verified = npm.verify_received(&old, &during).await;
    verified.expect("the old secret alone verifies");
    let verified = npm.verify_received(&new, &during).await;
    verified.expect("the new secret alone verifies");
    let during_platform = delivery_of(&platform, during.header("x-webhook-event-id")).await;
    assert_eq!(
        platform_headers(&during_platform),
        (
            signed(new_bytes, &during_platform),
            signed(old_bytes, &during_platform)
        )
    );
    assert_eq!(during_platform.header("webhook-signature"), None);

    // The overlap ends: deliveries carry one signature again (observed, not slept for).
    let what = "a delivery signed by the new secret alone";
    let after = eventually(WAIT, what, || async {
        let received = deliver_one(&worker, &standard).await;
        match signature_count(&received) {
            1 => Ok(received),
            n => Err(format!("{n} signatures")),
        }
    })
    .await;
    let verified = npm.verify_received(&new, &after).await;
    verified.expect("the new secret verifies");
    let error = npm.verify_received(&old, &after).await.unwrap_err();
    assert!(error.contains("signature"), "{error}");
    let after_platform = delivery_of(&platform, after.header("x-webhook-event-id")).await;
    assert_eq!(
        platform_headers(&after_platform),
        (signed(new_bytes, &after_platform), None)
    );
    worker.stop().await;
}
