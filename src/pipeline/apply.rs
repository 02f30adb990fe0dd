//! One delivery, start to end: the span it runs in, the attempt (wait for the endpoint's turn
//! or park, send), and [`Pipeline::apply`], the one place a [`Decision`] is acted on: logged,
//! counted, recorded in the delivery log (with when the delivery is due again), the webhook's
//! failing streak kept, and turned into the outcome [`Pipeline::settle`] publishes ([`Next`]).

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use tracing::{debug, info, warn, Span};
use uuid::Uuid;

use super::{
    dead::dead_letter,
    decision::{decide, decide_park, disabled_letter_reason, Decision},
    Next, Pipeline,
};
use crate::{
    delivery::{
        failing::DisableReason,
        health::{Admission, ParkReason},
        outcome::{Outcome, Signal},
        Attempt, AttemptResult,
    },
    delivery_log::{LogEntry, LogOutcome},
    event::{Body, Event},
    queue::job::Job,
    retry::Tries,
    telemetry::ReasonLabels,
    webhook::Webhook,
};

/// The span one delivery runs in, so that its log lines need no ids of their own (`event_id`
/// is absent when the message's body does not read). At ERROR level: a span below the log's
/// level is not made, and a warning inside it would then name nothing.
pub fn delivery_span(event_id: Option<&str>, webhook_id: Uuid, attempt: u32) -> Span {
    tracing::error_span!("delivery", event_id, %webhook_id, attempt)
}

/// What an attempt (or a park standing in for one) was: what its row, its log line and its
/// dead letter say.
#[derive(Clone, Copy)]
pub(super) struct Attempted<'a> {
    pub webhook: &'a Webhook,
    pub event: &'a Event,
    /// The attempt's number, from 1.
    pub number: u32,
    /// The HTTP status, when the endpoint answered.
    pub status: Option<u16>,
    /// The failure's short code, or why the delivery was parked.
    pub error: Option<&'a str>,
    pub took: Duration,
}

impl Pipeline {
    /// One delivery: wait for the endpoint's turn (or park), send, and act on what follows.
    pub(super) async fn attempt(
        &self,
        webhook: &Webhook,
        event: &Event,
        body: Body,
        correlation_id: Option<&str>,
        tries: Tries,
    ) -> Next {
        let permit = match self.health.admit(webhook.id, &webhook.account_id).await {
            Admission::Send(permit) => permit,
            Admission::Park(reason) => return self.park(webhook, event, &tries, reason).await,
        };
        // None: the session is lost; never settled (`settle` leaves the message, see [`session`]).
        let Some(_claim) = self.in_flight.claim(&event.id, webhook.id).await else {
            return Next::Done;
        };
        let attempt = Attempt {
            event,
            body,
            correlation_id,
            number: tries.attempt,
        };
        self.metrics.in_flight.inc();
        let started = Instant::now();
        let result = self.deliverer.deliver(webhook, &attempt).await;
        let took = started.elapsed();
        self.metrics.in_flight.dec();
        permit.finish(Signal::of(&result));
        let outcome = Outcome::of(&result);
        // Only a failure that would be retried counts towards `delivery.disable_after`.
        let disabled_for_failing =
            matches!(outcome, Outcome::Retry { .. }) && self.failing.failed(webhook).await;
        let decision = decide(outcome, &tries, &self.schedule, disabled_for_failing);
        let (status, error) = match &result {
            AttemptResult::Delivered { status } => (Some(*status), None),
            AttemptResult::Failed(failure) => (failure.status, Some(failure.reason.as_str())),
        };
        let attempted = Attempted {
            webhook,
            event,
            number: tries.attempt,
            status,
            error,
            took,
        };
        self.apply(decision, &attempted).await
    }

    /// The endpoint makes no progress, or its (or its account's) turn would come too late: no
    /// request, the delivery waits in a delay queue. Parks back off; those of an endpoint that
    /// makes no progress in time count as attempts (see [`crate::retry::RetrySchedule::park`]),
    /// busy ones never do ([`crate::retry::RetrySchedule::park_busy`]).
    async fn park(
        &self,
        webhook: &Webhook,
        event: &Event,
        tries: &Tries,
        reason: ParkReason,
    ) -> Next {
        let parking = if reason.is_busy() {
            self.schedule.park_busy(tries)
        } else {
            self.schedule.park(tries, Utc::now())
        };
        let (number, decision) = decide_park(parking, reason);
        let attempted = Attempted {
            webhook,
            event,
            number,
            status: None,
            error: Some(reason.detail()),
            took: Duration::ZERO,
        };
        self.apply(decision, &attempted).await
    }

    /// Acts on `decision` for the delivery `attempted` says: the one place that logs, counts
    /// and records a delivery's outcome, and makes what must be published of it.
    pub(super) async fn apply(&self, decision: Decision, attempted: &Attempted<'_>) -> Next {
        let webhook = attempted.webhook;
        if decision == Decision::Disable(DisableReason::Gone) {
            self.failing.disable(webhook, DisableReason::Gone).await;
        }
        let due_at = decision.due_in().and_then(due_at);
        self.record(attempted, decision.log_outcome(), due_at);
        self.metrics.delivery(decision.metric());
        let error = attempted.error.unwrap_or_default();
        let job = |next: &Tries| Job::new(webhook.id, &webhook.account_id, next, error.into());
        let letter = |reason| {
            let (event, number, status) = (attempted.event, attempted.number, attempted.status);
            Next::Dead(dead_letter(webhook, event, reason, error, number, status))
        };
        match decision {
            Decision::Delivered => {
                debug!(status = attempted.status, "delivered");
                self.failing.succeeded(webhook).await;
                Next::Done
            }
            Decision::Retry { delay, next } => {
                info!(reason = error, retry_in = ?delay, "delivery failed; will retry");
                let job = job(&next);
                Next::Retry { delay, job }
            }
            Decision::Park {
                delay,
                next,
                reason,
            } => {
                debug!(next_attempt = next.attempt, parks = next.parks, reason = reason.code(),
                    retry_in = ?delay, "delivery parked");
                let labels = ReasonLabels {
                    reason: reason.code(),
                };
                self.metrics.parks.get_or_create(&labels).inc();
                let job = job(&next);
                Next::Retry { delay, job }
            }
            Decision::DeadLetter(reason) => {
                warn!(
                    reason = error,
                    "retries exhausted; dead-lettering the delivery"
                );
                letter(reason)
            }
            Decision::Disable(why) => {
                match why {
                    DisableReason::Gone => warn!(
                        "the endpoint answered 410 Gone; webhook disabled, delivery dead-lettered"
                    ),
                    DisableReason::Failing => {
                        info!(reason = error,
                        "delivery failed and the webhook is now disabled; kept as a dead letter")
                    }
                }
                letter(disabled_letter_reason(why))
            }
        }
    }

    /// The attempt's row in the delivery log.
    fn record(
        &self,
        attempted: &Attempted<'_>,
        outcome: LogOutcome,
        next_attempt_at: Option<DateTime<Utc>>,
    ) {
        self.log.record(LogEntry {
            account_id: &attempted.webhook.account_id,
            webhook_id: attempted.webhook.id,
            event_id: &attempted.event.id,
            event_type: &attempted.event.event_type,
            attempt: attempted.number,
            outcome,
            status: attempted.status,
            error: attempted.error,
            duration: attempted.took,
            next_attempt_at,
        });
    }
}

/// When a delivery waiting `delay` from now is due.
fn due_at(delay: Duration) -> Option<DateTime<Utc>> {
    Utc::now().checked_add_signed(TimeDelta::from_std(delay).ok()?)
}

#[cfg(test)]
mod tests {
    use tracing::Instrument;
    use tracing_subscriber::EnvFilter;

    use super::*;
    use crate::telemetry::captured::Lines;

    #[tokio::test]
    async fn a_line_logged_in_a_delivery_carries_its_ids_in_json() {
        let lines = Lines::default();
        let writer = lines.clone();
        // At "warn", as an operator might set it: the delivery's span is kept all the same.
        let subscriber =
            crate::telemetry::json_logs(EnvFilter::new("warn"), move || writer.clone());
        let _default = tracing::subscriber::set_default(subscriber);
        let webhook_id = Uuid::new_v4();
        let event = async {
            warn!("in the event, outside its deliveries");
            // Made inside the event's span, as the pipeline makes it: nested in it.
            let span = delivery_span(Some("evt_1"), webhook_id, 3);
            let delivery = async { warn!("retries exhausted; dead-lettering the delivery") };
            delivery.instrument(span).await;
        };
        event
            .instrument(tracing::error_span!("event", event_id = "evt_1"))
            .await;
        let job_without_event = delivery_span(None, webhook_id, 2);
        job_without_event.in_scope(|| warn!("poison message; dead-lettering it"));

        let lines = lines.json();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[0]["span"]["event_id"], "evt_1", "{}", lines[0]);
        assert_eq!(lines[0]["span"]["name"], "event");
        let delivered = &lines[1]["span"];
        assert_eq!(
            lines[1]["message"],
            "retries exhausted; dead-lettering the delivery"
        );
        assert_eq!(delivered["name"], "delivery", "{}", lines[1]);
        assert_eq!(delivered["event_id"], "evt_1");
        assert_eq!(delivered["webhook_id"], webhook_id.to_string());
        assert_eq!(delivered["attempt"], 3);
        assert_eq!(lines[1]["spans"].as_array().map(Vec::len), Some(2));
        let unread = &lines[2]["span"];
        assert_eq!(unread["webhook_id"], webhook_id.to_string(), "{}", lines[2]);
        assert_eq!(unread["attempt"], 2);
        assert!(unread.get("event_id").is_none(), "{}", lines[2]);
    }
}
