//! Restarting RabbitMQ under a running worker, and raising a memory alarm under one ([`alarm`]).
//! These change a shared service's state, so they are their own test binary, run alone after
//! every other test (see scripts/test.sh), and they always restore the broker, even when they
//! fail.

// Shared with the main integration tests; this binary uses only part of them.
#[allow(dead_code)]
#[path = "../it/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "../it/receiver.rs"]
mod receiver;

mod alarm;

use std::{collections::HashSet, process::Command, time::Duration};

use harness::TestWorker;
use receiver::TestReceiver;

/// Starts the broker's application again when dropped, whatever happened.
struct BrokerRestartGuard;

impl BrokerRestartGuard {
    fn stop_app() -> Self {
        let status = Command::new("rabbitmqctl")
            .arg("stop_app")
            .status()
            .expect("rabbitmqctl");
        assert!(status.success(), "rabbitmqctl stop_app failed");
        BrokerRestartGuard
    }
}

impl Drop for BrokerRestartGuard {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").arg("start_app").status();
        let _ = Command::new("rabbitmqctl")
            .args(["await_startup", "--timeout", "60"])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_rabbitmq_mid_stream_loses_no_event_and_readiness_follows_the_connection() {
    const EVENTS: usize = 2_000;
    // The gated receiver holds requests while the broker is away, so they time out and the
    // endpoint looks dead to the circuit breaker for a moment: a short park delay and a few
    // retries let the probe find it healthy again before any delivery runs out of attempts.
    let worker = TestWorker::start(
        "[amqp]\nreconnect_max_backoff = \"1s\"\n[delivery]\npark_delay = \"200ms\"\n\
         retry_schedule = [\"500ms\", \"2s\", \"5s\", \"5s\", \"5s\"]",
    )
    .await;
    // The receiver answers only what it is allowed to, so the restart lands mid-stream.
    let receiver = TestReceiver::gated().await;
    receiver.release(EVENTS / 10);
    worker.subscribe(&receiver).await;
    let mut ids = HashSet::new();
    for _ in 0..EVENTS {
        let (id, _) = worker.publish_event().await;
        ids.insert(id);
    }
    receiver
        .wait_for(EVENTS / 10, Duration::from_secs(60))
        .await;

    {
        let _guard = BrokerRestartGuard::stop_app();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while worker.app().readiness().broker_ok() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "still ready without a broker"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    } // the guard starts the broker again
    receiver.release(1_000_000);

    receiver
        .wait_for_event_ids(&ids, Duration::from_secs(120))
        .await;
    assert!(
        worker.app().readiness().broker_ok(),
        "ready again after reconnecting"
    );
    worker.stop().await;
}
