//! The retry schedule: how long to wait after each failed attempt before the next, and when to
//! give up. Each distinct delay has its own RabbitMQ delay queue, so a long delay never holds
//! back a short one.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
}

impl RetrySchedule {
    pub fn new(delays: Vec<Duration>) -> Self {
        Self { delays }
    }

    /// `delivery.retry_schedule`.
    pub fn from_config(config: &crate::config::DeliveryConfig) -> Self {
        Self::new(config.retry_schedule.iter().map(|d| d.0).collect())
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

    /// The distinct delays, shortest first, the parking delay included: one delay queue each.
    pub fn distinct_delays(&self) -> Vec<Duration> {
        let mut delays = self.delays.clone();
        delays.push(self.park_delay());
        delays.sort_unstable();
        delays.dedup();
        delays
    }

    /// How long a delivery whose webhook is saturated waits before it is tried again: the
    /// shortest retry delay, or one second when the schedule has no retries.
    pub fn park_delay(&self) -> Duration {
        self.delays
            .iter()
            .min()
            .copied()
            .unwrap_or(Duration::from_secs(1))
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
    fn labels_are_compact() {
        assert_eq!(label(Duration::from_millis(500)), "500ms");
        assert_eq!(label(Duration::from_secs(5)), "5s");
        assert_eq!(label(Duration::from_secs(120)), "2m");
        assert_eq!(label(Duration::from_secs(36 * 3600)), "36h");
        assert_eq!(label(Duration::from_secs(90)), "90s");
    }

    #[test]
    fn distinct_delays_are_sorted_and_deduplicated() {
        assert_eq!(secs(&[30, 5, 30]).distinct_delays(), secs(&[5, 30]).delays);
    }

    #[test]
    fn a_schedule_without_retries_still_has_a_parking_queue() {
        let schedule = secs(&[]);
        assert_eq!(schedule.park_delay(), Duration::from_secs(1));
        assert_eq!(schedule.distinct_delays(), vec![Duration::from_secs(1)]);
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
