//! One endpoint's health as a plain state machine over explicit instants, so its rules can be
//! tested without a clock or a network:
//!
//! - **Adaptive limit** (AIMD): slow start (+1 per good answer, so it doubles per round trip)
//!   until the first sign of overload, then +1 per round trip; growth only while answers come
//!   back within twice the endpoint's own recent minimum latency (plus 5 ms of scheduling noise)
//!   and while at least half the limit is in use. It shrinks ×0.9 on 429/502/503/504 and ×0.5 on
//!   timeouts and connection errors, at most once per round trip (an answer to a request sent
//!   before the last cut does not cut again).
//! - **Progress watch**: a delivery over the limit waits while the endpoint answers something;
//!   when nothing in flight has been answered for its patience (twice its recent slowest answer,
//!   at least 500 ms, at most `delivery.timeout`), it is *stalled* and further deliveries are
//!   parked at once. Only requests actually sent count: a slot whose request still waits for
//!   its account's or the worker's turn says nothing about the endpoint.
//! - **A bounded wait**: a delivery that would queue behind more work than the endpoint gets
//!   through in `delivery.max_wait` (judged by its average latency and limit) is parked at once
//!   as *busy*: a slow endpoint keeps only about `max_wait` of its work in the worker's window.
//! - **Circuit breaker**: opens after `circuit_failures` timeouts or connection failures in a
//!   row, or when nothing in flight has been answered for `delivery.timeout`. While open,
//!   deliveries are parked. After a cool-down (the park delay, doubled after each failed probe,
//!   up to 5 minutes) it is half-open: one probe request; an answer closes it.

use std::time::{Duration, Instant};

pub use super::verdict::{Admission, Change, ParkReason};
use crate::delivery::outcome::Signal;

const PATIENCE_FLOOR: Duration = Duration::from_millis(500);
const MAX_COOLDOWN: Duration = Duration::from_secs(300);
/// How often a waiting delivery looks again even without a wake-up.
const RECHECK: Duration = Duration::from_millis(100);
const OVERLOAD_FACTOR: f64 = 0.9;
const UNREACHABLE_FACTOR: f64 = 0.5;

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub initial: u32,
    pub min: u32,
    pub max: u32,
    pub circuit_failures: u32,
    pub timeout: Duration,
    pub cooldown: Duration,
    /// Longest a delivery should wait for a slot (`delivery.max_wait`).
    pub max_wait: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Circuit {
    Closed,
    Open { until: Instant, cooldown: Duration },
    HalfOpen { probing: bool, cooldown: Duration },
}

#[derive(Debug)]
pub struct EndpointState {
    settings: Settings,
    limit: f64,
    slow_start: bool,
    /// Slots taken: requests sent, and requests waiting for their account's or the worker's turn.
    in_flight: u32,
    /// Requests actually sent: what the progress watch is about.
    sent: u32,
    /// Deliveries waiting for a slot; newcomers queue behind them.
    pub waiting: u32,
    min_latency: Option<Duration>,
    /// The slowest recent answer, decaying: what "no answer for a while" is measured against.
    slow_latency: Duration,
    /// Average latency (exponentially weighted): how fast the queue of waiting deliveries moves.
    avg_latency: Option<Duration>,
    last_cut: Option<Instant>,
    /// The last answer, or the start of the current busy period if later.
    progress: Instant,
    last_answer: Instant,
    failures_in_a_row: u32,
    circuit: Circuit,
}

impl EndpointState {
    pub fn new(settings: Settings, now: Instant) -> Self {
        Self {
            settings,
            limit: f64::from(settings.initial),
            slow_start: true,
            in_flight: 0,
            sent: 0,
            waiting: 0,
            min_latency: None,
            slow_latency: Duration::ZERO,
            avg_latency: None,
            last_cut: None,
            progress: now,
            last_answer: now,
            failures_in_a_row: 0,
            circuit: Circuit::Closed,
        }
    }

    /// The current limit on requests in flight.
    pub fn limit(&self) -> u32 {
        // In [min, max], both u32: the cast cannot truncate.
        (self.limit.floor() as u32).max(1)
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// Slots a waiting delivery could take now.
    pub fn free(&self) -> u32 {
        match self.circuit {
            Circuit::Closed => self.limit().saturating_sub(self.in_flight),
            _ => 0,
        }
    }

    /// Open or half-open.
    pub fn is_open(&self) -> bool {
        self.circuit != Circuit::Closed
    }

    fn patience(&self) -> Duration {
        (self.slow_latency * 2)
            .max(PATIENCE_FLOOR)
            .min(self.settings.timeout)
    }

    /// May a delivery (`waiter`: one that has waited already) send now?
    pub fn admit(&mut self, now: Instant, waiter: bool, changes: &mut Vec<Change>) -> Admission {
        if let Circuit::Open { until, cooldown } = self.circuit {
            if now < until {
                return Admission::Park(ParkReason::CircuitOpen);
            }
            self.circuit = Circuit::HalfOpen {
                probing: false,
                cooldown,
            };
            changes.push(Change::HalfOpen);
        }
        if let Circuit::HalfOpen { probing, cooldown } = self.circuit {
            if probing || self.in_flight >= self.limit() {
                return Admission::Park(ParkReason::CircuitOpen);
            }
            self.circuit = Circuit::HalfOpen {
                probing: true,
                cooldown,
            };
            self.take();
            return Admission::Admit { probe: true };
        }
        let full = self.in_flight >= self.limit();
        if !full && (waiter || self.waiting == 0) {
            self.take();
            return Admission::Admit { probe: false };
        }
        let mut until = now + RECHECK;
        if full && self.sent > 0 {
            let quiet = now.saturating_duration_since(self.progress);
            if quiet >= self.settings.timeout {
                self.open(
                    now,
                    self.settings.cooldown,
                    "no answer for delivery.timeout",
                    changes,
                );
                return Admission::Park(ParkReason::CircuitOpen);
            }
            if quiet >= self.patience() {
                return Admission::Park(ParkReason::Stalled);
            }
            until = until.min(self.progress + self.patience());
        }
        if !waiter && self.expected_wait() > self.settings.max_wait {
            return Admission::Park(ParkReason::Busy);
        }
        Admission::Wait {
            until: until.max(now + Duration::from_millis(1)),
        }
    }

    /// How long a newcomer would wait for a slot: the deliveries ahead of it, served `limit` at
    /// a time, each round taking the average latency; in slow start the limit doubles every
    /// round, so a queue `limit` times `2^n` long takes `n` rounds. Unknown (zero) before the
    /// first answer: the progress watch decides then.
    fn expected_wait(&self) -> Duration {
        let Some(average) = self.avg_latency else {
            return Duration::ZERO;
        };
        let queue = f64::from(self.waiting + 1) / f64::from(self.limit());
        let rounds = if self.slow_start {
            (1.0 + queue).log2()
        } else {
            queue
        };
        average.mul_f64(rounds)
    }

    fn take(&mut self) {
        self.in_flight += 1;
    }

    /// A slot's request goes out now. The endpoint's silence is measured from the first request
    /// of a busy period, not from when its slot was taken.
    pub fn sent(&mut self, now: Instant) {
        if self.sent == 0 {
            self.progress = now;
        }
        self.sent += 1;
    }

    fn open(
        &mut self,
        now: Instant,
        cooldown: Duration,
        why: &'static str,
        changes: &mut Vec<Change>,
    ) {
        let was_open = self.is_open();
        self.circuit = Circuit::Open {
            until: now + cooldown,
            cooldown,
        };
        if !was_open {
            changes.push(Change::Opened { why });
        }
    }

    /// A request sent at `started` ended with `signal`.
    pub fn finish(
        &mut self,
        now: Instant,
        started: Instant,
        probe: bool,
        signal: Signal,
        changes: &mut Vec<Change>,
    ) {
        let in_use = self.in_flight;
        self.in_flight = self.in_flight.saturating_sub(1);
        self.sent = self.sent.saturating_sub(1);
        let latency = now.saturating_duration_since(started);
        if signal != Signal::Neutral {
            self.average(latency);
        }
        match signal {
            Signal::Success | Signal::Answered | Signal::Overloaded => {
                self.answered(now, latency, changes)
            }
            Signal::Unreachable => self.unreachable(now, probe, changes),
            Signal::Neutral => self.abandon(probe),
        }
        match signal {
            Signal::Success => self.grow(latency, in_use),
            Signal::Overloaded => self.cut(now, started, OVERLOAD_FACTOR, changes),
            Signal::Unreachable => self.cut(now, started, UNREACHABLE_FACTOR, changes),
            Signal::Answered | Signal::Neutral => {}
        }
    }

    /// A slot was given up before its request ended (`sent`: it had gone out): its task was
    /// cancelled, or the delivery was parked while waiting for its account's turn.
    pub fn dropped(&mut self, probe: bool, sent: bool) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if sent {
            self.sent = self.sent.saturating_sub(1);
        }
        self.abandon(probe);
    }

    fn average(&mut self, latency: Duration) {
        self.avg_latency = Some(match self.avg_latency {
            Some(average) => average.mul_f64(0.875) + latency.mul_f64(0.125),
            None => latency,
        });
    }

    /// A request ended without a word about the endpoint: a probe lets another one try.
    fn abandon(&mut self, probe: bool) {
        if let (true, Circuit::HalfOpen { cooldown, .. }) = (probe, self.circuit) {
            self.circuit = Circuit::HalfOpen {
                probing: false,
                cooldown,
            };
        }
    }

    fn answered(&mut self, now: Instant, latency: Duration, changes: &mut Vec<Change>) {
        self.progress = now;
        self.last_answer = now;
        self.failures_in_a_row = 0;
        self.slow_latency = latency.max(self.slow_latency - self.slow_latency / 64);
        if self.is_open() {
            self.circuit = Circuit::Closed;
            changes.push(Change::Closed);
        }
    }

    fn unreachable(&mut self, now: Instant, probe: bool, changes: &mut Vec<Change>) {
        self.failures_in_a_row += 1;
        match self.circuit {
            Circuit::HalfOpen { cooldown, .. } if probe => self.open(
                now,
                (cooldown * 2).min(MAX_COOLDOWN),
                "the probe failed",
                changes,
            ),
            Circuit::Closed => {
                if self.failures_in_a_row >= self.settings.circuit_failures {
                    self.open(
                        now,
                        self.settings.cooldown,
                        "timeouts or connection failures in a row",
                        changes,
                    );
                } else if now.saturating_duration_since(self.last_answer) >= self.settings.timeout {
                    self.open(
                        now,
                        self.settings.cooldown,
                        "no answer for delivery.timeout",
                        changes,
                    );
                }
            }
            _ => {}
        }
    }

    fn grow(&mut self, latency: Duration, in_use: u32) {
        let min = match self.min_latency {
            Some(min) if latency >= min => min + (latency - min) / 256,
            _ => latency,
        };
        self.min_latency = Some(min);
        let fast = latency <= min * 2 + Duration::from_millis(5);
        if !fast {
            self.slow_start = false;
            return;
        }
        // A limit that is not used proves nothing: grow only when at least half is in use.
        if in_use * 2 < self.limit() {
            return;
        }
        let step = if self.slow_start {
            1.0
        } else {
            1.0 / self.limit
        };
        self.limit = (self.limit + step).min(f64::from(self.settings.max));
    }

    fn cut(&mut self, now: Instant, started: Instant, factor: f64, changes: &mut Vec<Change>) {
        if self.last_cut.is_some_and(|cut| started < cut) {
            return;
        }
        let from = self.limit();
        self.limit = (self.limit * factor).max(f64::from(self.settings.min));
        self.slow_start = false;
        self.last_cut = Some(now);
        let to = self.limit();
        if to < from {
            changes.push(Change::Shrunk { from, to });
        }
    }
}

#[cfg(test)]
#[path = "endpoint_tests.rs"]
mod tests;
