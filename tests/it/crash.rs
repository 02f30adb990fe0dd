//! Shutdown safety of the worker binary: SIGTERM ends it cleanly, even in the middle of a connect
//! that never finishes. (SIGKILL mid-stream is in the fault suite, [`crate::faults`].)

use std::time::Duration;

use crate::support::{
    eventually, random_key, unique_prefix, InProcessWorker, WorkerProcessBuilder,
};

#[tokio::test]
async fn the_worker_binary_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}/term.db", dir.path().display());
    let prefix = unique_prefix();
    let broker = InProcessWorker::publisher_for(&prefix).await;
    let mut worker = WorkerProcessBuilder::new(&prefix, &database_url, &random_key()).spawn();
    // Wait until it consumes, so that SIGTERM meets a running worker.
    eventually(Duration::from_secs(30), "the worker to consume", || async {
        broker.queue_counts(&broker.names.incoming).await.1 > 0
    })
    .await;
    worker
        .terminate_and_expect_clean_exit(Duration::from_secs(30), "exits within the grace period")
        .await;
    broker.delete_topology().await;
}

#[tokio::test]
async fn sigterm_interrupts_a_connect_to_a_broker_that_never_answers() {
    // Accepts TCP connections and never speaks AMQP: a connect that would hang.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("amqp://guest:guest@{}/%2f", silent.local_addr().unwrap());
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let held = tokio::spawn({
        let accepted = accepted.clone();
        async move {
            let mut sockets = Vec::new();
            while let Ok((socket, _)) = silent.accept().await {
                sockets.push(socket);
                accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}/hang.db", dir.path().display());
    let mut worker = WorkerProcessBuilder::new(&unique_prefix(), &database_url, &random_key())
        .env("AMQP__URL", &url)
        .spawn();
    // SIGTERM is to meet the worker inside its connect.
    eventually(Duration::from_secs(30), "the worker to connect", || async {
        accepted.load(std::sync::atomic::Ordering::SeqCst) > 0
    })
    .await;
    worker
        .terminate_and_expect_clean_exit(
            Duration::from_secs(10),
            "exits although the connect never finished",
        )
        .await;
    held.abort();
}
