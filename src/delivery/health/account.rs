//! One account's share of the worker: at most `delivery.max_in_flight_per_account` requests in
//! flight over all its webhooks, as a plain state machine over explicit instants (like
//! [`super::endpoint`]), so its rules are tested without a clock.
//!
//! A delivery over the share waits for a turn only while the account's requests complete fast
//! enough for the turn to come within `delivery.max_wait`; otherwise, or when none of its requests
//! has completed for a while (its endpoints hang), it is parked at once. Either way the account
//! keeps no more than its share of requests, and about `max_wait` of waiting work, in the worker:
//! the rest of the prefetch window and of `delivery.max_in_flight` serves other accounts.

use std::time::{Duration, Instant};

/// How long a full account may go without any request completing before its waiting
/// deliveries are parked: its endpoints hang, and its turn is not coming soon.
const PATIENCE: Duration = Duration::from_millis(500);
/// How often a waiting delivery looks again even without a wake-up.
const RECHECK: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    Take,
    Wait { until: Instant },
    Park,
}

#[derive(Debug)]
pub struct AccountState {
    limit: u32,
    max_wait: Duration,
    /// Slots taken (the request may still wait for the worker's global limit).
    in_flight: u32,
    /// Requests actually sent.
    sent: u32,
    /// Deliveries waiting for a slot; newcomers queue behind them.
    pub waiting: u32,
    avg_latency: Option<Duration>,
    /// The last completion, or the start of the current busy period if later.
    progress: Instant,
}

impl AccountState {
    pub fn new(limit: u32, max_wait: Duration, now: Instant) -> Self {
        Self {
            limit: limit.max(1),
            max_wait,
            in_flight: 0,
            sent: 0,
            waiting: 0,
            avg_latency: None,
            progress: now,
        }
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// Slots a waiting delivery could take now.
    pub fn free(&self) -> u32 {
        self.limit.saturating_sub(self.in_flight)
    }

    /// May a delivery (`waiter`: one that has waited already) take a slot now?
    pub fn turn(&mut self, now: Instant, waiter: bool) -> Turn {
        let full = self.in_flight >= self.limit;
        if !full && (waiter || self.waiting == 0) {
            self.in_flight += 1;
            return Turn::Take;
        }
        if full && self.sent > 0 && now.saturating_duration_since(self.progress) >= PATIENCE {
            return Turn::Park;
        }
        if !waiter && self.expected_wait() > self.max_wait {
            return Turn::Park;
        }
        Turn::Wait {
            until: now + RECHECK,
        }
    }

    /// The deliveries ahead, served `limit` at a time at the account's average latency.
    fn expected_wait(&self) -> Duration {
        let Some(average) = self.avg_latency else {
            return Duration::ZERO;
        };
        average.mul_f64(f64::from(self.waiting + 1) / f64::from(self.limit))
    }

    /// A slot's request goes out now.
    pub fn sent(&mut self, now: Instant) {
        if self.sent == 0 {
            self.progress = now;
        }
        self.sent += 1;
    }

    /// A request sent `latency` ago completed, whatever its answer: the slot turns over.
    pub fn finish(&mut self, now: Instant, latency: Duration) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.sent = self.sent.saturating_sub(1);
        self.progress = now;
        self.avg_latency = Some(match self.avg_latency {
            Some(average) => average.mul_f64(0.875) + latency.mul_f64(0.125),
            None => latency,
        });
    }

    /// A slot given up without a completion (`sent`: its request had gone out).
    pub fn dropped(&mut self, sent: bool) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if sent {
            self.sent = self.sent.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn below_its_share_an_account_takes_slots_at_once() {
        let t0 = Instant::now();
        let mut account = AccountState::new(3, ms(1000), t0);
        for _ in 0..3 {
            assert_eq!(account.turn(t0, false), Turn::Take);
        }
        assert_eq!(account.in_flight(), 3);
        assert!(matches!(account.turn(t0, false), Turn::Wait { .. }));
    }

    #[test]
    fn at_its_share_a_fast_account_waits_and_a_slow_one_parks() {
        let t0 = Instant::now();
        let mut fast = AccountState::new(2, ms(1000), t0);
        let mut slow = AccountState::new(2, ms(1000), t0);
        for account in [&mut fast, &mut slow] {
            account.turn(t0, false);
            account.sent(t0);
        }
        fast.finish(t0 + ms(10), ms(10));
        slow.finish(t0 + ms(900), ms(900));
        let now = t0 + ms(900);
        for account in [&mut fast, &mut slow] {
            assert_eq!(account.turn(now, false), Turn::Take);
            account.sent(now);
        }
        // Full now. Two waiting ahead of a newcomer at 900 ms each, two at a time: 1.35 s.
        fast.waiting = 2;
        slow.waiting = 2;
        assert!(matches!(fast.turn(now, false), Turn::Wait { .. }));
        assert_eq!(slow.turn(now, false), Turn::Park);
    }

    #[test]
    fn a_full_account_whose_requests_never_complete_parks_after_its_patience() {
        let t0 = Instant::now();
        let mut account = AccountState::new(1, ms(1000), t0);
        assert_eq!(account.turn(t0, false), Turn::Take);
        account.sent(t0);
        assert!(matches!(
            account.turn(t0 + ms(100), false),
            Turn::Wait { .. }
        ));
        assert_eq!(account.turn(t0 + PATIENCE, true), Turn::Park);
    }

    #[test]
    fn a_slot_waiting_for_the_global_limit_is_not_silence() {
        let t0 = Instant::now();
        let mut account = AccountState::new(1, ms(1000), t0);
        assert_eq!(account.turn(t0, false), Turn::Take);
        // Not sent yet (waiting for the worker's global limit) long past the patience.
        assert!(matches!(
            account.turn(t0 + ms(5000), false),
            Turn::Wait { .. }
        ));
        account.sent(t0 + ms(5000));
        assert!(matches!(
            account.turn(t0 + ms(5100), false),
            Turn::Wait { .. }
        ));
    }

    #[test]
    fn newcomers_queue_behind_waiting_deliveries_and_dropped_slots_free_up() {
        let t0 = Instant::now();
        let mut account = AccountState::new(1, ms(1000), t0);
        assert_eq!(account.turn(t0, false), Turn::Take);
        account.dropped(false);
        account.waiting = 1;
        assert!(matches!(account.turn(t0, false), Turn::Wait { .. }));
        assert_eq!(account.turn(t0, true), Turn::Take);
    }
}
