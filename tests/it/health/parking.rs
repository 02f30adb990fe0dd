//! A hanging endpoint's deliveries: parked without a request while its circuit is open, parks
//! backing off (so their number grows with the logarithm of time, over two minutes), and in
//! time counting as attempts, so that they end in the dead letters.

use std::time::Duration;

use serde_json::json;

use crate::support::{publish_burst, InProcessWorker, PacedReceiver, PARKED};
use webhook_worker::queue::header_text;

#[tokio::test]
async fn over_two_minutes_a_hanging_endpoints_parks_grow_with_the_logarithm_of_time() {
    // Parks from 1 s, doubling, capped by a schedule long enough that nothing is dead-lettered
    // within the two minutes.
    let worker = InProcessWorker::start(
        "[delivery]\ntimeout = \"1s\"\npark_delay = \"1s\"\n\
         retry_schedule = [\"2s\", \"8s\", \"32s\", \"128s\", \"512s\"]",
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
    let start = tokio::time::Instant::now();
    // Parks counted at the ends of doubling windows: 7.5 s, 15 s, 30 s, 60 s, 120 s.
    let mut at = Vec::new();
    for end in [7.5, 15.0, 30.0, 60.0, 120.0] {
        tokio::time::sleep_until(start + Duration::from_secs_f64(end)).await;
        at.push(worker.metric(PARKED));
    }
    let windows: Vec<u64> = at.windows(2).map(|w| w[1] - w[0]).collect();
    println!(
        "parks of 20 deliveries at 7.5/15/30/60/120 s: {at:?}; per doubling window: {windows:?}"
    );
    assert!(at[0] >= 20, "every delivery was parked: {}", at[0]);
    // Growing with the logarithm of time, each doubling window adds about as many parks as the
    // one before; growing linearly, the window from 60 s to 120 s would hold four times as many
    // as the one from 15 s to 30 s (and parking at the shortest delay, as before, about 60 per
    // delivery).
    let (from_15_to_30, from_60_to_120) = (windows[1], windows[3]);
    // Alone this measured 18, 21, 21 and 20 parks per window; the bound leaves room for a loaded
    // machine.
    assert!(
        2 * from_60_to_120 <= 3 * from_15_to_30,
        "{from_60_to_120} parks from 60 s to 120 s, {from_15_to_30} from 15 s to 30 s"
    );
    assert!(
        at[4] <= 20 * 10,
        "{} parks of 20 deliveries in two minutes",
        at[4]
    );
    assert_eq!(
        worker.queue_counts(&worker.names.dead).await.0,
        0,
        "nothing ran out of attempts yet"
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
    let worker = InProcessWorker::start(
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
