//! The delivery pipeline end to end: the real RabbitMQ, a worker in-process, real HTTP receivers
//! on 127.0.0.1.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use crate::support::{event, InProcessWorker, TestReceiver};

const WAIT: Duration = Duration::from_secs(20);
const DELIVERED: &str = "deliveries_total{outcome=\"delivered\"}";

fn header<'a>(
    headers: &'a lapin::types::FieldTable,
    name: &str,
) -> Option<&'a lapin::types::AMQPValue> {
    headers.inner().get(name)
}

pub fn text(headers: &lapin::types::FieldTable, name: &str) -> String {
    match header(headers, name) {
        Some(lapin::types::AMQPValue::LongString(s)) => {
            String::from_utf8_lossy(s.as_bytes()).into_owned()
        }
        other => panic!("header {name}: {other:?}"),
    }
}

fn int(headers: &lapin::types::FieldTable, name: &str) -> i64 {
    match header(headers, name) {
        Some(lapin::types::AMQPValue::LongLongInt(n)) => *n,
        other => panic!("header {name}: {other:?}"),
    }
}

#[tokio::test]
async fn each_event_reaches_exactly_the_subscribed_enabled_webhooks_of_its_account() {
    let worker = InProcessWorker::start("").await;
    let receivers: Vec<TestReceiver> =
        futures_util::future::join_all((0..6).map(|_| TestReceiver::start())).await;
    let hook = |i: usize, events: serde_json::Value| json!({"url": receivers[i].url(), "enabled_events": events});
    worker
        .add_webhook("acct-a", hook(0, json!(["business.updated"])))
        .await;
    worker.add_webhook("acct-a", hook(1, json!(["*"]))).await;
    worker
        .add_webhook("acct-a", hook(2, json!(["business.created"])))
        .await;
    let mut disabled = hook(3, json!(["*"]));
    disabled["disabled_at"] = json!("2020-01-01T00:00:00Z");
    worker.add_webhook("acct-a", disabled).await;
    worker.add_webhook("acct-b", hook(4, json!(["*"]))).await;
    worker
        .add_webhook("default", hook(5, json!(["business.updated"])))
        .await;

    let (id_a, body_a) = event("business.updated");
    let (id_default, body_default) = event("business.updated");
    worker
        .publish(Some("acct-a"), "business.updated", &body_a)
        .await;
    worker
        .publish(None, "business.updated", &body_default)
        .await;
    worker.wait_for_metric(DELIVERED, 3, WAIT).await;
    worker
        .wait_for_metric("events_received_total", 2, WAIT)
        .await;

    let ids = |r: &TestReceiver| -> Vec<String> {
        r.received()
            .iter()
            .map(|m| m.json()["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&receivers[0]), std::slice::from_ref(&id_a));
    assert_eq!(ids(&receivers[1]), [id_a]);
    assert!(ids(&receivers[2]).is_empty(), "not subscribed to the type");
    assert!(ids(&receivers[3]).is_empty(), "disabled");
    assert!(ids(&receivers[4]).is_empty(), "another account");
    assert_eq!(
        ids(&receivers[5]),
        [id_default],
        "no account header means the default account"
    );
    assert_eq!(worker.metric(DELIVERED), 3);
    worker.stop().await;
}

#[tokio::test]
async fn the_include_setting_shapes_data_object_and_leaves_the_envelope() {
    let worker = InProcessWorker::start("").await;
    let settings = [
        None,
        Some("*"),
        Some("identifiers"),
        Some("addresses,tin"),
        Some("nonexistent"),
    ];
    let mut receivers = Vec::new();
    for include in settings {
        let receiver = TestReceiver::start().await;
        let mut body = json!({"url": receiver.url(), "enabled_events": ["*"]});
        if let Some(include) = include {
            body["include"] = include.into();
        }
        worker.add_webhook("acct", body).await;
        receivers.push(receiver);
    }
    let (id, body) = worker.publish_event().await;
    let original: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let object = |i: usize| receivers[i].received()[0].json()["data"]["object"].clone();
    for receiver in &receivers {
        let got = receiver.wait_for(1, WAIT).await[0].json();
        assert_eq!(got["id"], id.as_str());
        assert_eq!(got["object"], "event");
        assert_eq!(got["created_at"], original["created_at"]);
    }
    assert_eq!(
        object(0),
        original["data"]["object"],
        "absent include sends everything"
    );
    assert_eq!(object(1), original["data"]["object"], "* sends everything");
    let identifiers = object(2);
    for scalar in [
        "id",
        "external_id",
        "name",
        "status",
        "tags",
        "liens",
        "monitor",
        "created_at",
    ] {
        assert!(
            identifiers.get(scalar).is_some(),
            "identifiers keeps {scalar}"
        );
    }
    for association in ["addresses", "tin", "people", "review", "requester", "names"] {
        assert!(
            identifiers.get(association).is_none(),
            "identifiers drops {association}"
        );
    }
    let listed = object(3);
    assert_eq!(listed["addresses"], original["data"]["object"]["addresses"]);
    assert_eq!(listed["tin"], original["data"]["object"]["tin"]);
    assert!(listed.get("people").is_none() && listed.get("name").is_some());
    assert_eq!(object(4), identifiers, "unknown names add nothing");
    worker.stop().await;
}

#[tokio::test]
async fn the_signature_verifies_over_the_raw_body_and_the_contract_headers_are_sent() {
    let worker = InProcessWorker::start("").await;
    let receiver = TestReceiver::start().await;
    let secret = "whsec_test_0123456789";
    worker
        .add_webhook(
            "acct",
            json!({"url": receiver.url(), "enabled_events": ["*"], "secret": secret}),
        )
        .await;
    let (id, _) = worker.publish_event().await;
    let got = receiver.wait_for(1, WAIT).await.remove(0);

    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&got.body);
    let expected = hex::encode(mac.finalize().into_bytes());
    assert_eq!(
        got.header("x-middesk-signature-256").as_deref(),
        Some(expected.as_str())
    );
    assert_eq!(
        got.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        got.header("x-correlation-id").as_deref(),
        Some("cust-42817")
    );
    assert_eq!(got.header("x-webhook-event-id"), Some(id));
    assert_eq!(
        got.header("x-webhook-event-type").as_deref(),
        Some("business.updated")
    );
    assert_eq!(got.header("x-webhook-attempt").as_deref(), Some("1"));
    assert!(got
        .header("user-agent")
        .unwrap()
        .starts_with("webhook-worker/"));
    assert!(got.header("authorization").is_none());
    // Compact JSON: what was signed is what was sent, without pretty-printing.
    assert!(!got.body.contains(&b'\n'));
    worker.stop().await;
}

#[tokio::test]
async fn a_webhook_without_a_secret_gets_no_signature_header() {
    let worker = InProcessWorker::start("").await;
    let receiver = TestReceiver::start().await;
    worker.subscribe(&receiver).await;
    worker.publish_event().await;
    let got = receiver.wait_for(1, WAIT).await.remove(0);
    assert!(got.header("x-middesk-signature-256").is_none());
    worker.stop().await;
}

#[tokio::test]
async fn a_receiver_failing_twice_then_succeeding_gets_the_event_on_attempt_3() {
    let worker = InProcessWorker::start("").await;
    let receiver = TestReceiver::start().await;
    receiver.plan(&[500, 503]);
    worker.subscribe(&receiver).await;
    let (id, _) = worker.publish_event().await;
    let got = receiver.wait_for(3, WAIT).await;
    let attempts: Vec<_> = got
        .iter()
        .map(|r| r.header("x-webhook-attempt").unwrap())
        .collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    assert!(got.iter().all(|r| r.json()["id"] == id.as_str()));
    worker.wait_for_metric(DELIVERED, 1, WAIT).await;
    worker.stop().await;
}

#[tokio::test]
async fn a_receiver_that_always_fails_ends_in_the_dead_letter_queue_with_the_reason() {
    let worker = InProcessWorker::start("").await;
    let receiver = TestReceiver::start().await;
    receiver.always(500);
    let webhook = worker.subscribe(&receiver).await;
    let (id, body) = worker.publish_event().await;
    let (headers, dead_body) = worker.dead_letters(1, WAIT).await.remove(0);
    assert_eq!(text(&headers, "x-dead-reason"), "retries_exhausted");
    assert_eq!(text(&headers, "x-dead-detail"), "http_500");
    assert_eq!(int(&headers, "x-last-status"), 500);
    assert_eq!(int(&headers, "x-attempts"), 3);
    assert_eq!(text(&headers, "x-webhook-id"), webhook.id.to_string());
    assert_eq!(text(&headers, "account_id"), "acct");
    assert_eq!(
        dead_body, body,
        "the dead letter carries the original event"
    );
    worker.until_quiet(|| receiver.count()).await;
    assert_eq!(receiver.count(), 3, "one first attempt and two retries");
    assert!(receiver
        .received()
        .iter()
        .all(|r| r.json()["id"] == id.as_str()));
    worker.stop().await;
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_counts_as_a_failure() {
    let worker = InProcessWorker::start("[delivery]\nretry_schedule = []").await;
    let target = TestReceiver::start().await;
    let redirecting = TestReceiver::start().await;
    redirecting.redirect_to(&target.url());
    worker
        .add_webhook(
            "acct",
            json!({"url": redirecting.url(), "enabled_events": ["*"]}),
        )
        .await;
    worker.publish_event().await;
    let (headers, _) = worker.dead_letters(1, WAIT).await.remove(0);
    assert_eq!(int(&headers, "x-last-status"), 302);
    assert_eq!(text(&headers, "x-dead-detail"), "redirect_302");
    worker
        .until_quiet(|| (redirecting.count(), target.count()))
        .await;
    assert_eq!(redirecting.count(), 1);
    assert_eq!(target.count(), 0, "the redirect was not followed");
    worker.stop().await;
}

#[tokio::test]
async fn non_public_addresses_are_refused_and_never_connected_to() {
    // No allow-list: the default rules apply.
    let worker =
        InProcessWorker::start("[delivery]\nallow_networks = []\nretry_schedule = []").await;
    let receiver = TestReceiver::start().await;
    let port = receiver.addr.port();
    // Without IPv6 loopback on the machine the URL is still refused; only the check is skipped.
    let v6 = tokio::net::TcpListener::bind("[::1]:0").await.ok();
    let v6_port = v6
        .as_ref()
        .map(|l| l.local_addr().unwrap().port())
        .unwrap_or(9);
    let urls = [
        format!("http://127.0.0.1:{port}/hook"),
        format!("http://localhost:{port}/hook"),
        format!("http://2130706433:{port}/hook"),
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
        format!("http://[::1]:{v6_port}/hook"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
    ];
    let mut template = worker
        .add_webhook(
            "acct",
            json!({"url": "http://example.invalid/", "enabled_events": ["other"]}),
        )
        .await;
    for url in &urls {
        template.id = uuid::Uuid::new_v4();
        template.url = url.clone();
        template.enabled_events = vec!["*".into()];
        worker.insert(template.clone()).await;
    }
    worker.publish_event().await;
    let letters = worker.dead_letters(urls.len(), WAIT).await;
    for (headers, _) in &letters {
        let detail = text(headers, "x-dead-detail");
        assert!(detail.starts_with("blocked_address"), "{detail}");
    }
    worker.until_quiet(|| receiver.count()).await;
    assert_eq!(receiver.count(), 0, "nothing reached the loopback receiver");
    if let Some(listener) = v6 {
        let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "nothing connected to [::1]");
    }
    worker.stop().await;
}

#[tokio::test]
async fn a_poison_message_is_dead_lettered_and_the_next_good_event_is_still_delivered() {
    let worker = InProcessWorker::start("[amqp]\nmax_message_bytes = 20000").await;
    let receiver = TestReceiver::start().await;
    worker.subscribe(&receiver).await;
    worker
        .publish(Some("acct"), "business.updated", b"{not json")
        .await;
    worker
        .publish(
            Some("acct"),
            "business.updated",
            br#"{"id":"x","type":"t"}"#,
        )
        .await;
    worker
        .publish(Some("acct"), "business.updated", &vec![b' '; 30_000])
        .await;
    let (id, _) = worker.publish_event().await;
    assert_eq!(
        receiver.wait_for(1, WAIT).await[0].json()["id"],
        id.as_str()
    );
    let mut reasons: Vec<String> = worker
        .dead_letters(3, WAIT)
        .await
        .iter()
        .map(|(headers, _)| text(headers, "x-dead-reason"))
        .collect();
    reasons.sort();
    assert_eq!(reasons, ["invalid_event", "invalid_json", "too_large"]);
    worker.stop().await;
}

#[tokio::test]
async fn deleting_a_webhook_stops_its_retries_without_a_dead_letter() {
    let worker = InProcessWorker::start("[delivery]\nretry_schedule = [\"1s\"]").await;
    let receiver = TestReceiver::start().await;
    receiver.always(500);
    let webhook = worker.subscribe(&receiver).await;
    worker.publish_event().await;
    receiver.wait_for(1, WAIT).await;
    worker
        .app()
        .registry()
        .store()
        .delete("acct", webhook.id)
        .await
        .unwrap();
    worker.app().registry().remove(webhook.id);
    worker
        .wait_for_metric("deliveries_total{outcome=\"dropped\"}", 1, WAIT)
        .await;
    worker.until_quiet(|| receiver.count()).await;
    assert_eq!(receiver.count(), 1);
    assert_eq!(
        worker.metric("deliveries_total{outcome=\"dead_lettered\"}"),
        0
    );
    worker.stop().await;
}

#[tokio::test]
async fn a_retry_uses_the_webhooks_current_url() {
    let worker = InProcessWorker::start("[delivery]\nretry_schedule = [\"500ms\"]").await;
    let old = TestReceiver::start().await;
    old.always(503);
    let new = TestReceiver::start().await;
    let mut webhook = worker
        .add_webhook("acct", json!({"url": old.url(), "enabled_events": ["*"]}))
        .await;
    let (id, _) = worker.publish_event().await;
    old.wait_for(1, WAIT).await;
    webhook.url = new.url();
    worker.app().registry().upsert(webhook);
    let got = new.wait_for(1, WAIT).await;
    assert_eq!(got[0].json()["id"], id.as_str());
    assert_eq!(got[0].header("x-webhook-attempt").as_deref(), Some("2"));
    worker.stop().await;
}

#[tokio::test]
async fn a_hanging_endpoint_does_not_hold_back_deliveries_to_other_endpoints() {
    let worker = InProcessWorker::start(
        "[amqp]\nprefetch = 16\n[delivery]\nconcurrency_initial = 2\nconcurrency_max = 2\ntimeout = \"60s\"\nretry_schedule = [\"1s\", \"2s\", \"4s\", \"8s\", \"16s\"]",
    )
    .await;
    let hanging = TestReceiver::gated().await;
    let healthy = TestReceiver::start().await;
    worker
        .add_webhook(
            "acct",
            json!({"url": hanging.url(), "enabled_events": ["slow"]}),
        )
        .await;
    worker
        .add_webhook(
            "acct",
            json!({"url": healthy.url(), "enabled_events": ["fast"]}),
        )
        .await;
    // Far more events for the hanging endpoint than the prefetch window holds.
    for _ in 0..60 {
        worker.publish(Some("acct"), "slow", &event("slow").1).await;
    }
    for _ in 0..60 {
        worker.publish(Some("acct"), "fast", &event("fast").1).await;
    }
    // The hanging endpoint has answered nothing yet, and the healthy one gets everything.
    healthy.wait_for(60, WAIT).await;
    assert!(
        hanging.count() <= 2,
        "only its share of requests reached it"
    );
    hanging.release(1_000);
    hanging.wait_for(60, Duration::from_secs(60)).await;
    worker.stop().await;
}

#[tokio::test]
async fn on_shutdown_an_unfinished_delivery_goes_back_to_the_queue() {
    let mut worker = InProcessWorker::start("[shutdown]\ngrace = \"300ms\"").await;
    let hanging = TestReceiver::gated().await;
    worker
        .add_webhook(
            "acct",
            json!({"url": hanging.url(), "enabled_events": ["*"]}),
        )
        .await;
    worker.publish_event().await;
    hanging.wait_for(1, WAIT).await;
    let app = worker.app.take().unwrap();
    tokio::time::timeout(Duration::from_secs(30), app.stop())
        .await
        .expect("shutdown ends after the grace period");
    let queue = worker
        .channel
        .queue_declare(
            &worker.names.incoming,
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        queue.message_count(),
        1,
        "the event is back in the queue, not lost"
    );
    hanging.release(10);
    worker.stop().await;
}

#[tokio::test]
async fn a_retry_whose_webhook_the_registry_lacks_is_looked_up_in_the_database() {
    // No refresh during the test: only the database lookup can find the webhook again.
    let worker = InProcessWorker::start("[registry]\nrefresh = \"1h\"").await;
    let receiver = TestReceiver::start().await;
    receiver.plan(&[500]);
    let webhook = worker.subscribe(&receiver).await;
    let (id, _) = worker.publish_event().await;
    receiver.wait_for(1, WAIT).await;
    // As on a replica whose snapshot predates the webhook.
    worker.app().registry().remove(webhook.id);
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(got[1].json()["id"], id.as_str());
    assert_eq!(got[1].header("x-webhook-attempt").as_deref(), Some("2"));
    assert_eq!(worker.metric("deliveries_total{outcome=\"dropped\"}"), 0);
    worker.stop().await;
}
