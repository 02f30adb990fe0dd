//! What follows an attempt, or a delivery that could not be attempted, decided by pure
//! functions: [`decide`] reads the endpoint's answer ([`Outcome`]), where the delivery stands
//! in its schedule and whether its failures have disabled the webhook; [`decide_park`] reads
//! the schedule's answer for a parked delivery. Acting on a [`Decision`] (publishing, logging,
//! counting, recording) is `Pipeline::apply`'s, in `apply.rs`.

use std::time::Duration;

use crate::{
    dead_reason::DeadReason,
    delivery::{failing::DisableReason, health::ParkReason, outcome::Outcome},
    delivery_log::LogOutcome,
    retry::{Parking, RetrySchedule, Tries},
    telemetry::DeliveryOutcome,
};

/// What becomes of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Decision {
    /// The endpoint took it (2xx).
    Delivered,
    /// It failed: attempt it again after `delay`, as `next`.
    Retry { delay: Duration, next: Tries },
    /// It was not attempted (the endpoint makes no progress, or its turn would come too late):
    /// it comes back after `delay` as `next`.
    Park {
        delay: Duration,
        next: Tries,
        reason: ParkReason,
    },
    /// It is over without a delivery; the webhook stays as it is.
    DeadLetter(DeadReason),
    /// The webhook is disabled (at once for 410 Gone; already, by the failure that ends a
    /// failing streak) and the delivery kept as its dead letter.
    Disable(DisableReason),
}

/// What follows attempt `tries.attempt`, whose answer meant `outcome`. `disabled_for_failing`:
/// this failure ended `delivery.disable_after` of failures and disabled the webhook (only a
/// failure that would be retried can do that).
pub(super) fn decide(
    outcome: Outcome,
    tries: &Tries,
    schedule: &RetrySchedule,
    disabled_for_failing: bool,
) -> Decision {
    let not_before = match outcome {
        Outcome::Delivered => return Decision::Delivered,
        Outcome::Gone => return Decision::Disable(DisableReason::Gone),
        Outcome::Retry { .. } if disabled_for_failing => {
            return Decision::Disable(DisableReason::Failing)
        }
        Outcome::Retry { not_before } => not_before,
    };
    // No sooner than the endpoint asked (Retry-After), never sooner than the schedule.
    let delay = match not_before {
        Some(at_least) => schedule.delay_after_at_least(tries.attempt, at_least),
        None => schedule.delay_after(tries.attempt),
    };
    match delay {
        Some(delay) => Decision::Retry {
            delay,
            next: Tries::from(tries.attempt.saturating_add(1)),
        },
        None => Decision::DeadLetter(DeadReason::RetriesExhausted),
    }
}

/// What follows a delivery parked for `reason`, by the schedule's `parking`; and the attempt
/// its row in the delivery log is recorded for (the one the parks now stand in for).
pub(super) fn decide_park(parking: Parking, reason: ParkReason) -> (u32, Decision) {
    match parking {
        Parking::Park { delay, tries } => (
            tries.attempt,
            Decision::Park {
                delay,
                next: tries,
                reason,
            },
        ),
        Parking::Exhausted { attempts } => {
            (attempts, Decision::DeadLetter(DeadReason::RetriesExhausted))
        }
    }
}

/// The reason of the dead letter a delivery becomes when it disabled its webhook for `why`.
pub(super) fn disabled_letter_reason(why: DisableReason) -> DeadReason {
    match why {
        DisableReason::Gone => DeadReason::EndpointGone,
        DisableReason::Failing => DeadReason::WebhookDisabled,
    }
}

impl Decision {
    /// The outcome of the attempt's row in the delivery log.
    pub(super) fn log_outcome(&self) -> LogOutcome {
        match self {
            Decision::Delivered => LogOutcome::Delivered,
            Decision::Retry { .. } => LogOutcome::Failed,
            Decision::Park { .. } => LogOutcome::Parked,
            Decision::DeadLetter(_) => LogOutcome::DeadLettered,
            Decision::Disable(_) => LogOutcome::Disabled,
        }
    }

    /// The `outcome` label it counts under in `deliveries_total`.
    pub(super) fn metric(&self) -> DeliveryOutcome {
        match self {
            Decision::Delivered => DeliveryOutcome::Delivered,
            Decision::Retry { .. } => DeliveryOutcome::RetryScheduled,
            Decision::Park { .. } => DeliveryOutcome::Parked,
            Decision::DeadLetter(_) | Decision::Disable(_) => DeliveryOutcome::DeadLettered,
        }
    }

    /// How long until the delivery is due again, when it will be.
    pub(super) fn due_in(&self) -> Option<Duration> {
        match self {
            Decision::Retry { delay, .. } | Decision::Park { delay, .. } => Some(*delay),
            Decision::Delivered | Decision::DeadLetter(_) | Decision::Disable(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    /// Two retries, 5 s and 30 s apart: three attempts in all.
    fn schedule() -> RetrySchedule {
        RetrySchedule::new(vec![S(5), S(30)])
    }

    fn retry(delay: u64, next: u32) -> Decision {
        Decision::Retry {
            delay: S(delay),
            next: Tries::from(next),
        }
    }

    const FAILED: Outcome = Outcome::Retry { not_before: None };
    const fn asked(seconds: u64) -> Outcome {
        Outcome::Retry {
            not_before: Some(Duration::from_secs(seconds)),
        }
    }
    const EXHAUSTED: Decision = Decision::DeadLetter(DeadReason::RetriesExhausted);

    #[test]
    fn each_answer_attempt_and_failing_streak_has_its_decision() {
        // (what the answer meant, attempt made, failures disabled the webhook, decision)
        let table = [
            (Outcome::Delivered, 1, false, Decision::Delivered),
            (Outcome::Delivered, 3, false, Decision::Delivered),
            (
                Outcome::Gone,
                1,
                false,
                Decision::Disable(DisableReason::Gone),
            ),
            (
                Outcome::Gone,
                3,
                false,
                Decision::Disable(DisableReason::Gone),
            ),
            (FAILED, 1, false, retry(5, 2)),
            (FAILED, 2, false, retry(30, 3)),
            (FAILED, 3, false, EXHAUSTED),
            (FAILED, 1, true, Decision::Disable(DisableReason::Failing)),
            (FAILED, 3, true, Decision::Disable(DisableReason::Failing)),
            // Retry-After: the first delay queue at least that long (park queues of 5, 10 and
            // 20 s included) ...
            (asked(10), 1, false, retry(10, 2)),
            (asked(11), 1, false, retry(20, 2)),
            // ... capped at the longest ...
            (asked(3_600), 1, false, retry(30, 2)),
            // ... and never sooner than the schedule.
            (asked(1), 2, false, retry(30, 3)),
            (asked(0), 1, false, retry(5, 2)),
            (asked(10), 3, false, EXHAUSTED),
            (
                asked(10),
                2,
                true,
                Decision::Disable(DisableReason::Failing),
            ),
        ];
        for (row, (outcome, attempt, failing, expected)) in table.into_iter().enumerate() {
            let decision = decide(outcome, &Tries::from(attempt), &schedule(), failing);
            assert_eq!(
                decision, expected,
                "row {row}: {outcome:?}, attempt {attempt}"
            );
        }
    }

    #[test]
    fn without_retries_the_first_failure_is_the_last() {
        let none = RetrySchedule::new(Vec::new());
        assert_eq!(decide(FAILED, &Tries::from(1), &none, false), EXHAUSTED);
        assert_eq!(decide(asked(5), &Tries::from(1), &none, false), EXHAUSTED);
        let ok = decide(Outcome::Delivered, &Tries::from(1), &none, false);
        assert_eq!(ok, Decision::Delivered);
    }

    #[test]
    fn a_retry_starts_its_next_attempt_unparked() {
        let parked = Tries {
            attempt: 2,
            parks: 3,
            parked_since: Some(chrono::Utc::now()),
        };
        assert_eq!(decide(FAILED, &parked, &schedule(), false), retry(30, 3));
    }

    #[test]
    fn a_park_comes_back_or_ends_in_the_dead_letters() {
        let next = Tries {
            attempt: 2,
            parks: 1,
            parked_since: None,
        };
        let parked = Parking::Park {
            delay: S(5),
            tries: next.clone(),
        };
        let expected = Decision::Park {
            delay: S(5),
            next,
            reason: ParkReason::CircuitOpen,
        };
        assert_eq!(decide_park(parked, ParkReason::CircuitOpen), (2, expected));
        let over = Parking::Exhausted { attempts: 3 };
        assert_eq!(decide_park(over, ParkReason::Stalled), (3, EXHAUSTED));
    }

    #[test]
    fn a_disabled_webhooks_delivery_is_a_dead_letter_that_says_why() {
        let gone = disabled_letter_reason(DisableReason::Gone);
        assert_eq!(gone, DeadReason::EndpointGone);
        let failing = disabled_letter_reason(DisableReason::Failing);
        assert_eq!(failing, DeadReason::WebhookDisabled);
    }

    #[test]
    fn each_decision_has_its_row_metric_and_due_time() {
        let park = Decision::Park {
            delay: S(5),
            next: Tries::from(1),
            reason: ParkReason::Busy,
        };
        use DeliveryOutcome as M;
        let (gone, failing) = (DisableReason::Gone, DisableReason::Failing);
        // (decision, delivery log outcome, metric label, due again in)
        let table = [
            (
                Decision::Delivered,
                LogOutcome::Delivered,
                M::Delivered,
                None,
            ),
            (
                retry(30, 3),
                LogOutcome::Failed,
                M::RetryScheduled,
                Some(S(30)),
            ),
            (park, LogOutcome::Parked, M::Parked, Some(S(5))),
            (EXHAUSTED, LogOutcome::DeadLettered, M::DeadLettered, None),
            (
                Decision::Disable(gone),
                LogOutcome::Disabled,
                M::DeadLettered,
                None,
            ),
            (
                Decision::Disable(failing),
                LogOutcome::Disabled,
                M::DeadLettered,
                None,
            ),
        ];
        for (decision, row, metric, due) in table {
            assert_eq!(decision.log_outcome(), row, "{decision:?}");
            assert_eq!(decision.metric(), metric, "{decision:?}");
            assert_eq!(decision.due_in(), due, "{decision:?}");
        }
    }
}
