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
        crate::delivery::mark_delivery_thread(worker.thread);
        let result = run_as_task(&runtime, worker.run(cancel));
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

/// Runs `future` on `runtime` as a task, not as `block_on`'s own future: `block_on` polls with a
/// waker whose clones lapin cannot tell from it (`Waker::will_wake` is false between them), so
/// an idle consumer kept one more clone at every poll of the consuming loop and compared each
/// poll against all of them: over a million-event drain, a growing share of the thread's CPU and
/// memory (docs/performance.md). A task's waker and its clones are alike.
fn run_as_task<F>(runtime: &Runtime, future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    runtime.block_on(async move {
        match tokio::spawn(future).await {
            Ok(output) => output,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            // Only the runtime's shutdown cancels a task, and it is not shut down before.
            Err(_) => std::panic::panic_any("the delivery thread's worker was cancelled"),
        }
    })
}

fn current_thread_runtime() -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_of_the_worker_is_the_threads_panic() {
        let runtime = current_thread_runtime().unwrap();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_as_task(&runtime, async { panic!("the worker's own panic") })
        }));
        let payload = panicked.expect_err("the panic is passed on");
        assert_eq!(
            payload.downcast_ref::<&str>(),
            Some(&"the worker's own panic")
        );
    }
}
