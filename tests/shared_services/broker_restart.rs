//! `rabbitmqctl stop_app` / `start_app` with 10,000 events in flight: the worker reports not
//! ready while the broker is away, reconnects, and delivers every event; only what it held
//! unacked when the broker went comes again.

use std::time::Duration;

use crate::support::{
    eventually,
    fault_scenario::{assert_settled, hook, paced_config, slow_receiver, Stream, PREFETCH},
    InProcessWorker,
};

/// Starts the broker's application again when dropped, whatever happened.
struct BrokerRestartGuard;

impl BrokerRestartGuard {
    fn stop_app() -> Self {
        let status = crate::support::rabbitmqctl()
            .arg("stop_app")
            .status()
            .expect("rabbitmqctl");
        assert!(status.success(), "rabbitmqctl stop_app failed");
        BrokerRestartGuard
    }
}

impl Drop for BrokerRestartGuard {
    fn drop(&mut self) {
        let _ = crate::support::rabbitmqctl().arg("start_app").status();
        let _ = crate::support::rabbitmqctl()
            .args(["await_startup", "--timeout", "60"])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_rabbitmq_with_10000_events_in_flight_loses_none_and_readiness_follows() {
    let worker = InProcessWorker::start(&paced_config("reconnect_max_backoff = \"1s\"")).await;
    let receiver = slow_receiver().await;
    worker.add_webhook("acct", hook(&receiver)).await;
    let stream = Stream::publish(&worker, &receiver).await;
    stream.until_a_fifth_delivered().await;

    let before = {
        let _guard = BrokerRestartGuard::stop_app();
        eventually(
            Duration::from_secs(30),
            "not ready without a broker",
            || async { !worker.app().readiness().broker_ok() },
        )
        .await;
        stream.tally()
    }; // the guard starts the broker again
    assert!(!before.all_delivered(), "the restart came mid-stream");

    let after = stream.until_all_delivered().await;
    assert_settled(&worker, Duration::from_secs(30)).await;
    assert!(
        worker.app().readiness().broker_ok(),
        "ready again after reconnecting"
    );
    after.assert_duplicates_within(PREFETCH);
    after.report(&format!(
        "rabbitmqctl stop_app/start_app after {} delivered",
        before.delivered
    ));
    worker.stop().await;
}
