//! The worker's current confirmed [`Publisher`], shared by every message's task and replaced
//! when the publishing connection (or its channel) is opened again on its own: a failure of the
//! publishing side alone never tears down a healthy consumer. A task whose publish was lost with
//! the old channel waits here for the new one and publishes there: the only legitimate second
//! copy of an outcome.

use std::sync::Arc;

use tokio::{sync::watch, time::Instant};

use super::Publisher;

/// Why no publisher could be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// None was open before the deadline.
    Timeout,
    /// The session ended: no publisher will come on this consumer's connection.
    Ended,
}

/// Sets the publisher; dropping it ends the session's outlet.
pub struct OutletSender(watch::Sender<Option<Arc<Publisher>>>);

impl OutletSender {
    /// Makes `publisher` the current one (`None`: the publishing side is being re-opened).
    pub fn set(&self, publisher: Option<Arc<Publisher>>) {
        self.0.send_replace(publisher);
    }

    /// The current publisher, open or not.
    pub fn current(&self) -> Option<Arc<Publisher>> {
        self.0.borrow().clone()
    }
}

/// Where a task gets the current publisher. Cheap to clone.
#[derive(Clone)]
pub struct Outlet(watch::Receiver<Option<Arc<Publisher>>>);

impl Outlet {
    /// An outlet with no publisher yet, and its sender.
    pub fn channel() -> (OutletSender, Outlet) {
        let (sender, receiver) = watch::channel(None);
        (OutletSender(sender), Outlet(receiver))
    }

    /// The current publisher when its channel is open.
    pub fn current(&self) -> Option<Arc<Publisher>> {
        self.0.borrow().clone().filter(|p| p.is_open())
    }

    /// Resolves once the session ended (its sender dropped): a publish still waiting for its
    /// confirm then has nothing more to wait for (a blocked connection's close never completes,
    /// so its confirms would never be answered).
    pub async fn ended(&self) {
        let mut receiver = self.0.clone();
        while receiver.changed().await.is_ok() {}
    }

    /// An open publisher, waiting for one until `deadline`.
    pub async fn ready(&self, deadline: Instant) -> Result<Arc<Publisher>, Unavailable> {
        let mut receiver = self.0.clone();
        loop {
            let current = receiver.borrow_and_update().clone();
            if let Some(publisher) = current.filter(|p| p.is_open()) {
                return Ok(publisher);
            }
            tokio::select! {
                changed = receiver.changed() => {
                    if changed.is_err() {
                        return Err(Unavailable::Ended);
                    }
                }
                // A closed channel is replaced without a word to us until the worker notices.
                _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
                _ = tokio::time::sleep_until(deadline) => return Err(Unavailable::Timeout),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn without_a_publisher_a_wait_ends_at_its_deadline() {
        let (_sender, outlet) = Outlet::channel();
        let deadline = Instant::now() + Duration::from_millis(50);
        assert_eq!(
            outlet.ready(deadline).await.err(),
            Some(Unavailable::Timeout)
        );
    }

    #[tokio::test]
    async fn a_wait_ends_when_the_session_drops_its_sender() {
        let (sender, outlet) = Outlet::channel();
        let waiting = tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            outlet.ready(deadline).await.err()
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(sender);
        assert_eq!(waiting.await.unwrap(), Some(Unavailable::Ended));
    }

    #[tokio::test]
    async fn ended_resolves_once_the_sender_is_dropped() {
        let (sender, outlet) = Outlet::channel();
        sender.set(None);
        let ended = tokio::spawn(async move { outlet.ended().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!ended.is_finished());
        drop(sender);
        tokio::time::timeout(Duration::from_secs(5), ended)
            .await
            .expect("ended")
            .unwrap();
    }
}
