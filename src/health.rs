//! Readiness: what `/readyz` reports. The worker role is ready while it holds a broker
//! connection with its consumers running and the broker does not block its publishing (a memory
//! or disk alarm: no retry job or dead letter could be made durable, so nothing could be acked
//! after a failure); every role needs the database to answer and a registry snapshot that is not
//! stale.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

#[derive(Clone, Debug)]
pub struct Readiness {
    broker_ready: Arc<AtomicBool>,
    broker_blocked: Arc<AtomicBool>,
    needs_broker: bool,
}

impl Readiness {
    /// `needs_broker`: this process consumes from RabbitMQ (roles `worker` and `all`).
    pub fn new(needs_broker: bool) -> Self {
        Self {
            broker_ready: Arc::new(AtomicBool::new(false)),
            broker_blocked: Arc::new(AtomicBool::new(false)),
            needs_broker,
        }
    }

    pub fn set_broker_ready(&self, ready: bool) {
        self.broker_ready.store(ready, Ordering::Release);
    }

    /// The broker blocked (or unblocked) the publishing connection.
    pub fn set_broker_blocked(&self, blocked: bool) {
        self.broker_blocked.store(blocked, Ordering::Release);
    }

    pub fn broker_blocked(&self) -> bool {
        self.broker_blocked.load(Ordering::Acquire)
    }

    /// Whether this process consumes from the broker at all (role `api` does not).
    pub fn needs_broker(&self) -> bool {
        self.needs_broker
    }

    pub fn broker_ok(&self) -> bool {
        !self.needs_broker || (self.broker_ready.load(Ordering::Acquire) && !self.broker_blocked())
    }
}
