//! The session a message's task belongs to, as a task-local: once the worker has lost the
//! session's consuming connection, nothing can be acked on it and the broker hands the message
//! to the next session. From then on the task starts no new request (one already in flight is
//! let finish: a receiver would otherwise still be serving it when the next session sends it
//! again) and publishes none of its outcomes (they would start a second retry chain beside the
//! redelivered message's); the pipeline answers [`super::Disposition::Leave`].

use std::future::Future;

use tokio_util::sync::CancellationToken;

tokio::task_local! {
    static SESSION: CancellationToken;
}

/// Runs `work` as part of the session that `lost` is cancelled for when it is lost.
///
/// Not an `async fn`: one would hold `work` twice (its argument, and the scope made of it), and
/// this future is most of every message's task, which is moved whole when it is spawned.
pub fn within<F: Future>(lost: CancellationToken, work: F) -> impl Future<Output = F::Output> {
    SESSION.scope(lost, work)
}

/// Whether the task's session is lost (never, outside one).
pub(super) fn is_lost() -> bool {
    SESSION
        .try_with(|lost| lost.is_cancelled())
        .unwrap_or(false)
}

/// Resolves once the task's session is lost (never, outside one).
pub(super) async fn lost() {
    match SESSION.try_with(CancellationToken::clone) {
        Ok(lost) => lost.cancelled_owned().await,
        Err(_) => std::future::pending().await,
    }
}
