//! A hanging endpoint's deliveries: parked without a request while its circuit is open, parks
//! backing off (so their number grows with the logarithm of time), and in time counting as
//! attempts, so that they end in the dead letters.

use std::time::Duration;

use serde_json::json;

use super::{publish_burst, receiver::PacedReceiver, PARKED};
use webhook_worker::queue::header_text;

use crate::harness::TestWorker;

#[tokio::test]
async fn a_hanging_endpoints_deliveries_are_parked_less_and_less_often() {
    // The 2-minute scenario at a shorter scale: parks from 1 s, a schedule growing x4.
    let worker = TestWorker::start(
        "[delivery]\ntimeout = \"1s\"\npark_delay = \"1s\"\nretry_schedule = [\"1s\", \"4s\", \"16s\", \"64s\"]",
    )
    .await;
    let hanging = PacedReceiver::hanging().await;
    worker
        .add_webhook(
            "acct",
            json!({"url": hanging.url(), "enabled_events": ["*"]}),
        )
        .await;
    publish_burst(&worker, &["business.updated"; 20]).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let first_half = worker.metric(PARKED);
    tokio::time::sleep(Duration::from_secs(20)).await;
    let second_half = worker.metric(PARKED) - first_half;
    println!(
        "parks of 20 deliveries: {first_half} in the first 20 s, {second_half} in the next 20 s"
    );
    assert!(first_half >= 20, "every delivery was parked: {first_half}");
    // Linear growth would park as often in the second half as in the first (and parking at
    // the shortest delay, as before, about 40 times per delivery in all). Alone this measured
    // 136 then 26; on a loaded machine delays stretch, so the bound is loose.
    assert!(
        second_half < first_half,
        "{second_half} parks in the second half, {first_half} in the first"
    );
    assert!(
        first_half + second_half <= 20 * 15,
        "{} parks of 20 deliveries in 40 s",
        first_half + second_half
    );
    assert!(
        hanging.max_in_flight() <= worker.config.delivery.concurrency_initial as usize,
        "held {} requests at once",
        hanging.max_in_flight()
    );
    worker.stop().await;
}

#[tokio::test]
async fn with_a_short_schedule_a_hanging_endpoints_deliveries_end_in_the_dead_letters() {
    let worker = TestWorker::start(
        "[delivery]\ntimeout = \"1s\"\npark_delay = \"500ms\"\nretry_schedule = [\"500ms\", \"1s\"]",
    )
    .await;
    let hanging = PacedReceiver::hanging().await;
    worker
        .add_webhook(
            "acct",
            json!({"url": hanging.url(), "enabled_events": ["*"]}),
        )
        .await;
    publish_burst(&worker, &["business.updated"; 40]).await;
    let letters = worker.dead_letters(40, Duration::from_secs(60)).await;
    for (headers, _) in &letters {
        let reason = header_text(Some(headers), "x-dead-reason");
        assert_eq!(reason.as_deref(), Some("retries_exhausted"));
    }
    assert!(
        worker.metric(PARKED) > 0,
        "deliveries were parked on the way"
    );
    assert!(
        hanging.max_in_flight() <= worker.config.delivery.concurrency_initial as usize,
        "held {} requests at once",
        hanging.max_in_flight()
    );
    worker.stop().await;
}
