//! The delivery thread: the consuming side runs on a thread of its own, on a current-thread
//! runtime, apart from the runtime that serves the API and keeps the registry.
//!
//! Why: a delivery hops between lapin's I/O thread, its own task, hyper's connection task and
//! the ack batcher. On the multi-thread runtime those hops land on different worker threads,
//! and each one is a futex wake-up, an inter-processor interrupt and a context switch; in the
//! bench's profile that was the largest single share of the worker's CPU. On one thread the
//! hops are queue pushes (docs/performance.md, "Deliveries on threads of their own"). Scaling
//! past one core is done with more threads (`delivery.threads`, each consuming on connections
//! of its own) or more replicas.

use std::{future::Future, time::Duration};

use futures_util::{stream::FuturesUnordered, StreamExt};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

use super::Worker;
use crate::queue::DeclareError;

/// Longest the thread waits, once the worker has ended, for blocking tasks left on its runtime.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(1);
/// How long the runtime stays up after the worker has ended, for lapin's I/O threads to finish
/// closing its connections (they did within 3 ms in the bench).
const LINGER: Duration = Duration::from_millis(250);

/// Starts `worker` on a thread of its own. The future resolves when the worker has ended
/// (drained on `cancel`, or refused by the broker); it panics if the thread did, as the worker's
/// task did when it was a task.
pub fn spawn(
    worker: Worker,
    name: String,
    cancel: CancellationToken,
) -> std::io::Result<impl Future<Output = Result<(), DeclareError>> + Send + 'static> {
    let runtime = current_thread_runtime()?;
    let (done, ended) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name(name).spawn(move || {
        let result = runtime.block_on(worker.run(cancel));
        let _ = done.send(result);
        // The worker has closed its connections, but lapin's I/O threads finish with them on
        // this runtime's reactor a moment later: shut down under them, they log an error.
        runtime.block_on(async { tokio::time::sleep(LINGER).await });
        // What is still spawned here (idle pooled connections and the like) ends with the
        // runtime; a blocking task is not waited for past this.
        runtime.shutdown_timeout(SHUTDOWN_WAIT);
    })?;
    Ok(async move {
        match ended.await {
            Ok(result) => result,
            Err(_) => std::panic::panic_any("a delivery thread panicked"),
        }
    })
}

/// Resolves when every delivery thread has ended, or as soon as one ends with an error, so that
/// the process stops the others.
pub async fn first_to_fail(
    threads: Vec<impl Future<Output = Result<(), DeclareError>>>,
) -> Result<(), DeclareError> {
    let mut running: FuturesUnordered<_> = threads.into_iter().collect();
    while let Some(ended) = running.next().await {
        ended?;
    }
    Ok(())
}

fn current_thread_runtime() -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
