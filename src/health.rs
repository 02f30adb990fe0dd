//! Readiness: what `/readyz` reports. The worker role is ready while it holds a broker
//! connection with its consumers running; every role needs the database to answer.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

#[derive(Clone, Debug)]
pub struct Readiness {
    broker_ready: Arc<AtomicBool>,
    needs_broker: bool,
}

impl Readiness {
    /// `needs_broker`: this process consumes from RabbitMQ (roles `worker` and `all`).
    pub fn new(needs_broker: bool) -> Self {
        Self {
            broker_ready: Arc::new(AtomicBool::new(false)),
            needs_broker,
        }
    }

    pub fn set_broker_ready(&self, ready: bool) {
        self.broker_ready.store(ready, Ordering::Release);
    }

    /// Whether this process consumes from the broker at all (role `api` does not).
    pub fn needs_broker(&self) -> bool {
        self.needs_broker
    }

    pub fn broker_ok(&self) -> bool {
        !self.needs_broker || self.broker_ready.load(Ordering::Acquire)
    }
}
