//! The endpoint fails for 30 s, answering 503 to everything, with 10,000 events in flight; then
//! it recovers, and the retries deliver what failed.

use std::time::Duration;

use crate::support::fault_scenario::{assert_settled, hook, paced_config, slow_receiver, Stream};
use crate::support::InProcessWorker;

#[tokio::test]
async fn an_endpoint_failing_for_30_s_gets_all_10000_events_once_it_recovers() {
    // Attempts at 0, 10 s and 40 s: an event whose first two attempts fall in the 30 s of
    // failure is delivered by the third.
    let worker = InProcessWorker::start(&paced_config(
        "[delivery]\nretry_schedule = [\"10s\", \"30s\", \"1m\"]",
    ))
    .await;
    let receiver = slow_receiver().await;
    worker.add_webhook("acct", hook(&receiver)).await;
    let stream = Stream::publish(&worker, &receiver).await;
    stream.until_a_fifth_delivered().await;
    receiver.change(|b| b.status = 503);
    tokio::time::sleep(Duration::from_secs(30)).await;
    let during = stream.tally();
    receiver.change(|b| b.status = 200);
    assert!(!during.all_delivered(), "the failure came mid-stream");
    let failed = receiver.answers().iter().filter(|(_, s)| *s == 503).count();
    assert!(failed > 0, "the endpoint failed some deliveries");

    let after = stream.until_all_delivered().await;
    assert_settled(&worker, Duration::from_secs(30)).await;
    assert!(
        worker.app().readiness().broker_ok(),
        "the worker still runs"
    );
    after.report(&format!(
        "endpoint answering 503 for 30 s after {} delivered ({failed} answers 503)",
        during.delivered
    ));
    worker.stop().await;
}
