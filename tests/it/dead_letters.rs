//! The dead-letter tools: listing changes nothing; replaying sends exhausted deliveries back for
//! a fresh first attempt and leaves poison where it is.

use std::time::Duration;

use webhook_worker::dead_letters;

use crate::{harness::TestWorker, receiver::TestReceiver};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn exhausted_deliveries_are_listed_then_replayed_once_the_endpoint_is_fixed() {
    let worker = TestWorker::start("[delivery]\nretry_schedule = []").await;
    let receiver = TestReceiver::start().await;
    receiver.always(503);
    let webhook = worker.subscribe(&receiver).await;
    let (id, _) = worker.publish_event().await;
    worker
        .publish(Some("acct"), "business.updated", b"not json")
        .await;
    worker
        .wait_for_metric("deliveries_total{outcome=\"dead_lettered\"}", 1, WAIT)
        .await;
    worker
        .wait_for_metric("poison_events_total{reason=\"invalid_json\"}", 1, WAIT)
        .await;
    let dead = worker.names.dead.clone();
    worker.wait_for_ready(&dead, 2, WAIT).await;

    let listed = dead_letters::list(&worker.config, 10).await.unwrap();
    assert_eq!(listed.len(), 2);
    let exhausted = listed
        .iter()
        .find(|l| l.reason.as_deref() == Some("retries_exhausted"))
        .expect("the exhausted delivery is listed");
    assert_eq!(exhausted.event_id.as_deref(), Some(id.as_str()));
    assert_eq!(exhausted.webhook_id, Some(webhook.id.to_string()));
    assert_eq!(exhausted.detail.as_deref(), Some("http_503"));
    assert_eq!(exhausted.last_status, Some(503));
    let poison = listed
        .iter()
        .find(|l| l.reason.as_deref() == Some("invalid_json"))
        .expect("the poison message is listed");
    assert_eq!(poison.event_id, None, "a poison message has no event id");
    let detail = poison.detail.as_deref().unwrap_or_default();
    assert!(
        detail.starts_with("not JSON") && !detail.contains("invalid_json"),
        "the reason is said once: {detail}"
    );
    // The listing's connection hands every message back: none was taken.
    worker.wait_for_ready(&dead, 2, WAIT).await;

    receiver.always(200);
    let summary = dead_letters::replay(&worker.config, 10, None)
        .await
        .unwrap();
    assert_eq!((summary.replayed, summary.skipped), (1, 1));
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(got[1].json()["id"], id.as_str());
    assert_eq!(got[1].header("x-webhook-attempt").as_deref(), Some("1"));
    // Only the poison message stays.
    worker.wait_for_ready(&dead, 1, WAIT).await;
    worker.stop().await;
}
