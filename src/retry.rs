//! The retry schedule: how long to wait after each failed attempt before the next, and when to
//! give up. Each distinct delay has its own RabbitMQ delay queue, so a long delay never holds
//! back a short one.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The first park's delay when the configuration names none.
const DEFAULT_PARK_DELAY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
    park_delay: Duration,
}

/// Where one delivery stands: the attempt to make next, and how often (since when) that attempt
/// has been parked behind an endpoint that made no progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tries {
    pub attempt: u32,
    pub parks: u32,
    pub parked_since: Option<DateTime<Utc>>,
}

impl From<u32> for Tries {
    fn from(attempt: u32) -> Self {
        Tries {
            attempt,
            parks: 0,
            parked_since: None,
        }
    }
}

/// What becomes of a delivery that cannot be attempted now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parking {
    /// Wait `delay`, then come back as `tries`.
    Park { delay: Duration, tries: Tries },
    /// The parks stood in for the last attempt: the delivery is over.
    Exhausted { attempts: u32 },
}

impl RetrySchedule {
    pub fn new(delays: Vec<Duration>) -> Self {
        Self {
            delays,
            park_delay: DEFAULT_PARK_DELAY,
        }
    }

    /// The first park's delay (each further park of the same attempt doubles it).
    pub fn with_park_delay(mut self, park_delay: Duration) -> Self {
        self.park_delay = park_delay;
        self
    }

    /// `delivery.retry_schedule` and `delivery.park_delay`.
    pub fn from_config(config: &crate::config::DeliveryConfig) -> Self {
        Self::new(config.retry_schedule.iter().map(|d| d.0).collect())
            .with_park_delay(config.park_delay.0)
    }

    /// The wait before attempt `failed_attempt + 1`, or `None` when `failed_attempt` was the last.
    /// Attempts count from 1.
    pub fn delay_after(&self, failed_attempt: u32) -> Option<Duration> {
        let index = usize::try_from(failed_attempt).ok()?.checked_sub(1)?;
        self.delays.get(index).copied()
    }

    /// Attempts in all: the first plus one per retry.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.delays.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1)
    }

    /// The wait before attempt `failed_attempt + 1` when the endpoint asked for `at_least`
    /// (`Retry-After`): the first delay queue that long, capped at the longest; never shorter
    /// than the schedule's own delay. `None` when `failed_attempt` was the last.
    pub fn delay_after_at_least(
        &self,
        failed_attempt: u32,
        at_least: Duration,
    ) -> Option<Duration> {
        let scheduled = self.delay_after(failed_attempt)?;
        let delays = self.distinct_delays();
        let asked = delays
            .iter()
            .copied()
            .find(|d| *d >= at_least)
            .or_else(|| delays.last().copied())
            .unwrap_or(scheduled);
        Some(scheduled.max(asked))
    }

    /// The distinct delays, shortest first, park delays included: one delay queue each.
    pub fn distinct_delays(&self) -> Vec<Duration> {
        let mut delays = self.park_budgets();
        let longest = delays.iter().max().copied().unwrap_or(self.park_delay);
        let mut park = self.park_delay;
        while park < longest {
            delays.push(park);
            park = park.saturating_mul(2);
        }
        delays.sort_unstable();
        delays.dedup();
        delays
    }

    /// How long the parks of `attempt` may last before they count as that attempt: the delay
    /// that a failure of it would have led to (the longest delay after the last attempt).
    fn park_budget(&self, attempt: u32) -> Duration {
        self.delay_after(attempt)
            .or_else(|| self.delays.iter().max().copied())
            .unwrap_or(self.park_delay)
    }

    fn park_budgets(&self) -> Vec<Duration> {
        let mut budgets = self.delays.clone();
        if budgets.is_empty() {
            budgets.push(self.park_delay);
        }
        budgets
    }

    /// Parks a delivery whose endpoint makes no progress. Parks back off (`park_delay`, twice
    /// that, ...) capped at the next retry delay; once the parks of an attempt have lasted as
    /// long as that delay, they count as the attempt, so a dead endpoint's deliveries move
    /// through the schedule to the dead letters instead of churning forever. The backoff goes on
    /// across the attempts the parks stand in for (it does not start again from `park_delay`),
    /// so a delivery is parked about once per doubling of the time its endpoint has been dead.
    pub fn park(&self, tries: &Tries, now: DateTime<Utc>) -> Parking {
        let mut tries = tries.clone();
        if let Some(since) = tries.parked_since {
            let parked_for = (now - since).to_std().unwrap_or_default();
            if parked_for >= self.park_budget(tries.attempt) {
                if tries.attempt >= self.max_attempts() {
                    return Parking::Exhausted {
                        attempts: tries.attempt,
                    };
                }
                tries = Tries {
                    attempt: tries.attempt + 1,
                    parks: tries.parks,
                    parked_since: None,
                };
            }
        }
        let doubled = self.park_delay.saturating_mul(1u32 << tries.parks.min(20));
        Parking::Park {
            delay: doubled.min(self.park_budget(tries.attempt)),
            tries: Tries {
                attempt: tries.attempt,
                parks: tries.parks.saturating_add(1),
                parked_since: Some(tries.parked_since.unwrap_or(now)),
            },
        }
    }
}

/// Busy parks double at most this often: `park_delay` up to 8 times it (5 s to 40 s by default).
const BUSY_DOUBLINGS: u32 = 3;

impl RetrySchedule {
    /// Parks a delivery whose endpoint or account is busy: it answers, but the delivery's turn
    /// would come too late to hold it in the worker. The delay grows while it stays busy
    /// (`park_delay`, twice that, ... up to eight times), but these parks never count as
    /// attempts, since nothing failed: the delivery waits its turn outside the worker.
    pub fn park_busy(&self, tries: &Tries) -> Parking {
        let doubled = self
            .park_delay
            .saturating_mul(1u32 << tries.parks.min(BUSY_DOUBLINGS));
        // Every park delay shorter than the longest delay has a queue, and so does the longest.
        let longest = self.delays.iter().max().copied().unwrap_or(self.park_delay);
        Parking::Park {
            delay: doubled.min(longest),
            tries: Tries {
                parks: tries.parks.saturating_add(1),
                ..tries.clone()
            },
        }
    }
}

/// `delay` less a random part of up to a half: spreads out the retries of many tasks (or the
/// reconnects of many replicas) that failed at the same moment, so they do not come back in step.
pub fn jittered(delay: Duration) -> Duration {
    use rand::Rng;
    let half = delay / 2;
    half + rand::thread_rng().gen_range(Duration::ZERO..=half)
}

/// A compact, queue-name-safe spelling of a delay: `500ms`, `5s`, `2m`, `36h`.
pub fn label(delay: Duration) -> String {
    let ms = delay.as_millis();
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms >= size && ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &[u64]) -> RetrySchedule {
        RetrySchedule::new(s.iter().map(|s| Duration::from_secs(*s)).collect())
    }

    #[test]
    fn each_failed_attempt_maps_to_the_next_delay_until_the_schedule_ends() {
        let schedule = secs(&[5, 30]);
        assert_eq!(schedule.delay_after(1), Some(Duration::from_secs(5)));
        assert_eq!(schedule.delay_after(2), Some(Duration::from_secs(30)));
        assert_eq!(schedule.delay_after(3), None);
        assert_eq!(schedule.delay_after(0), None);
        assert_eq!(schedule.max_attempts(), 3);
    }

    #[test]
    fn the_default_schedule_spans_about_three_days() {
        let config = crate::config::Config::from_toml("").unwrap();
        let total: Duration = config.delivery.retry_schedule.iter().map(|d| d.0).sum();
        assert!(total > Duration::from_secs(2 * 86_400) && total < Duration::from_secs(4 * 86_400));
        assert!(config.delivery.retry_schedule[0].0 <= Duration::from_secs(30));
    }

    #[test]
    fn busy_parks_back_off_to_eight_park_delays_and_never_use_up_attempts() {
        let schedule = secs(&[5, 30, 120]).with_park_delay(Duration::from_secs(5));
        let mut tries = Tries::from(2);
        let mut delays = Vec::new();
        for _ in 0..6 {
            let Parking::Park { delay, tries: next } = schedule.park_busy(&tries) else {
                panic!("a busy park never exhausts the schedule");
            };
            delays.push(delay.as_secs());
            tries = next;
        }
        assert_eq!(delays, [5, 10, 20, 40, 40, 40]);
        assert_eq!(tries.attempt, 2);
        assert_eq!(tries.parked_since, None);
        let queues = schedule.distinct_delays();
        assert!(delays
            .iter()
            .all(|d| queues.contains(&Duration::from_secs(*d))));
        // A schedule shorter than the park delay: its longest delay, which has a queue.
        let short = RetrySchedule::new(vec![Duration::from_millis(100)]);
        let Parking::Park { delay, .. } = short.park_busy(&Tries::from(1)) else {
            panic!("parked");
        };
        assert_eq!(delay, Duration::from_millis(100));
    }

    #[test]
    fn labels_are_compact() {
        assert_eq!(label(Duration::from_millis(500)), "500ms");
        assert_eq!(label(Duration::from_secs(5)), "5s");
        assert_eq!(label(Duration::from_secs(120)), "2m");
        assert_eq!(label(Duration::from_secs(36 * 3600)), "36h");
        assert_eq!(label(Duration::from_secs(90)), "90s");
    }

    #[test]
    fn distinct_delays_are_sorted_and_deduplicated_with_the_park_delays() {
        let delays = secs(&[30, 5, 30]).distinct_delays();
        assert_eq!(delays, secs(&[5, 10, 20, 30]).delays);
    }

    #[test]
    fn a_schedule_without_retries_still_has_a_parking_queue() {
        let schedule = secs(&[]);
        assert_eq!(schedule.distinct_delays(), vec![Duration::from_secs(5)]);
    }

    #[test]
    fn retry_after_picks_the_first_queue_at_least_that_long_capped_at_the_longest() {
        let schedule = secs(&[1, 5, 60]);
        let at_least = |s| schedule.delay_after_at_least(1, Duration::from_secs(s));
        assert_eq!(at_least(3), Some(Duration::from_secs(5)));
        assert_eq!(at_least(0), Some(Duration::from_secs(1)));
        assert_eq!(at_least(3600), Some(Duration::from_secs(60)));
        assert_eq!(
            schedule.delay_after_at_least(4, Duration::from_secs(3)),
            None
        );
    }

    fn park_all(schedule: &RetrySchedule, mut tries: Tries) -> (Vec<u64>, Option<u32>) {
        let mut now = chrono::Utc::now();
        let mut delays = Vec::new();
        for _ in 0..100 {
            match schedule.park(&tries, now) {
                Parking::Park { delay, tries: next } => {
                    delays.push(delay.as_secs());
                    now += chrono::TimeDelta::from_std(delay).unwrap();
                    tries = next;
                }
                Parking::Exhausted { attempts } => return (delays, Some(attempts)),
            }
        }
        (delays, None)
    }

    #[test]
    fn parks_back_off_capped_at_the_next_retry_delay_and_count_as_attempts() {
        let schedule = secs(&[5, 30, 120]);
        let (delays, exhausted) = park_all(&schedule, Tries::from(1));
        // attempt 1: 5 (= its next delay); attempt 2: 10 20 (the backoff goes on); attempt 3:
        // 40 80; attempt 4 (the last): as long as the longest delay (160, capped), then over.
        assert_eq!(delays, [5, 10, 20, 40, 80, 120], "{delays:?}");
        assert_eq!(exhausted, Some(4));
    }

    #[test]
    fn with_the_default_schedule_a_dead_endpoints_delivery_is_parked_18_times_in_all() {
        let config = crate::config::Config::from_toml("").unwrap();
        let schedule = RetrySchedule::from_config(&config.delivery);
        let (delays, exhausted) = park_all(&schedule, Tries::from(1));
        assert_eq!((delays.len(), exhausted), (18, Some(11)), "{delays:?}");
        let days = delays.iter().sum::<u64>() as f64 / 86_400.0;
        assert!((5.5..5.7).contains(&days), "{days} days");
    }

    #[test]
    fn a_parked_delivery_carries_its_park_count_and_start() {
        let schedule = secs(&[60]);
        let now = chrono::Utc::now();
        let Parking::Park { delay, tries } = schedule.park(&Tries::from(1), now) else {
            panic!("parked")
        };
        assert_eq!(delay, Duration::from_secs(5));
        assert_eq!(
            (tries.attempt, tries.parks, tries.parked_since),
            (1, 1, Some(now))
        );
        let Parking::Park { delay, tries } = schedule.park(&tries, now) else {
            panic!("parked")
        };
        assert_eq!((delay, tries.parks), (Duration::from_secs(10), 2));
    }

    #[test]
    fn jitter_spreads_a_delay_over_its_upper_half() {
        let delay = Duration::from_secs(8);
        let waits: std::collections::HashSet<Duration> = (0..50).map(|_| jittered(delay)).collect();
        assert!(waits
            .iter()
            .all(|w| *w >= Duration::from_secs(4) && *w <= delay));
        assert!(waits.len() > 1, "replicas would reconnect in lockstep");
    }
}
