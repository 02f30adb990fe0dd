//! Readiness: what `/readyz` reports. The worker role is ready while each of its delivery
//! threads holds a broker connection with its consumers running and the broker does not block
//! their publishing (a memory or disk alarm: no retry job or dead letter could be made durable,
//! so nothing could be acked after a failure); every role needs the database to answer and a
//! registry snapshot that is not stale.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

/// Most delivery threads one process may run: one bit each in the broker state.
pub const MAX_DELIVERY_THREADS: usize = 64;

/// The broker state of a process whose consuming side runs on one or more delivery threads
/// (`delivery.threads`), each with connections of its own: ready while every thread holds its
/// connection, blocked while any of them is blocked. Each thread writes its own bit.
#[derive(Clone, Debug)]
pub struct Readiness {
    /// Bit `i` set: delivery thread `i` holds its connection with its consumers running.
    broker_ready: Arc<AtomicU64>,
    /// Bit `i` set: the broker blocks a connection of delivery thread `i`.
    broker_blocked: Arc<AtomicU64>,
    /// Every thread's bit.
    threads: u64,
    /// The bit this handle writes (thread 0's unless made by [`Readiness::for_thread`]).
    own: u64,
    needs_broker: bool,
}

impl Readiness {
    /// `needs_broker`: this process consumes from RabbitMQ (roles `worker` and `all`), on one
    /// delivery thread; see [`Readiness::with_threads`].
    pub fn new(needs_broker: bool) -> Self {
        Self {
            broker_ready: Arc::new(AtomicU64::new(0)),
            broker_blocked: Arc::new(AtomicU64::new(0)),
            threads: 1,
            own: 1,
            needs_broker,
        }
    }

    /// Consuming on `threads` delivery threads (1 to [`MAX_DELIVERY_THREADS`]; more are
    /// counted as that many): the broker is ready only once each of them is.
    pub fn with_threads(mut self, threads: usize) -> Self {
        let threads = threads.clamp(1, MAX_DELIVERY_THREADS) as u32;
        self.threads = u64::MAX >> (64 - threads);
        self
    }

    /// The handle delivery thread `index` reports its connection's state with.
    pub fn for_thread(&self, index: usize) -> Self {
        Self {
            own: 1 << (index % MAX_DELIVERY_THREADS),
            ..self.clone()
        }
    }

    /// This thread holds (or lost) its connection with its consumers running.
    pub fn set_broker_ready(&self, ready: bool) {
        set_bit(&self.broker_ready, self.own, ready);
    }

    /// The broker blocked (or unblocked) a connection of this thread.
    pub fn set_broker_blocked(&self, blocked: bool) {
        set_bit(&self.broker_blocked, self.own, blocked);
    }

    /// Whether the broker blocks a connection of this handle's thread.
    pub fn own_broker_blocked(&self) -> bool {
        self.broker_blocked.load(Ordering::Acquire) & self.own != 0
    }

    /// Whether the broker blocks a connection of any delivery thread.
    pub fn broker_blocked(&self) -> bool {
        self.broker_blocked.load(Ordering::Acquire) & self.threads != 0
    }

    /// Whether every delivery thread holds its connection.
    pub fn broker_connected(&self) -> bool {
        self.broker_ready.load(Ordering::Acquire) & self.threads == self.threads
    }

    /// Whether this process consumes from the broker at all (role `api` does not).
    pub fn needs_broker(&self) -> bool {
        self.needs_broker
    }

    pub fn broker_ok(&self) -> bool {
        !self.needs_broker || (self.broker_connected() && !self.broker_blocked())
    }
}

fn set_bit(bits: &AtomicU64, bit: u64, on: bool) {
    if on {
        bits.fetch_or(bit, Ordering::AcqRel);
    } else {
        bits.fetch_and(!bit, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_is_ready_once_every_delivery_thread_is_and_blocked_while_any_is() {
        let readiness = Readiness::new(true).with_threads(3);
        let threads: Vec<_> = (0..3).map(|i| readiness.for_thread(i)).collect();
        threads[0].set_broker_ready(true);
        threads[2].set_broker_ready(true);
        assert!(!readiness.broker_ok(), "thread 1 is not connected yet");
        threads[1].set_broker_ready(true);
        assert!(readiness.broker_ok());
        threads[1].set_broker_blocked(true);
        assert!(!readiness.broker_ok());
        assert!(readiness.broker_blocked());
        assert!(threads[1].own_broker_blocked());
        assert!(!threads[0].own_broker_blocked());
        threads[1].set_broker_blocked(false);
        threads[2].set_broker_ready(false);
        assert!(!readiness.broker_ok(), "thread 2 lost its connection");
        threads[2].set_broker_ready(true);
        assert!(readiness.broker_ok());
    }

    #[test]
    fn one_thread_is_the_default_and_a_role_without_a_consumer_needs_no_broker() {
        let readiness = Readiness::new(true);
        assert!(!readiness.broker_ok());
        readiness.set_broker_ready(true);
        assert!(readiness.broker_ok());
        assert!(Readiness::new(false).broker_ok());
        let all = Readiness::new(true).with_threads(64);
        for i in 0..64 {
            all.for_thread(i).set_broker_ready(true);
        }
        assert!(all.broker_ok());
    }
}
