//! Parking: a delivery whose endpoint makes no progress, or whose turn would come too late, is
//! not attempted; it waits in a delay queue (see [`crate::retry::RetrySchedule::park`]).

use std::time::Duration;

use tracing::{debug, warn};

use super::{dead::dead_letter, Next, Pipeline};
use crate::{
    delivery::health::ParkReason,
    delivery_log::LogOutcome,
    event::Event,
    queue::job::Job,
    retry::{Parking, Tries},
    webhook::Webhook,
};

impl Pipeline {
    /// The endpoint makes no progress, or its (or its account's) turn would come too late: no
    /// request, the delivery waits in a delay queue. Parks back off; those of an endpoint that
    /// makes no progress in time count as attempts (see [`crate::retry::RetrySchedule::park`]),
    /// busy ones never do ([`crate::retry::RetrySchedule::park_busy`]).
    pub(super) fn park(
        &self,
        webhook: &Webhook,
        event: &Event,
        tries: &Tries,
        reason: ParkReason,
    ) -> Next {
        let detail = reason.detail();
        let parking = if reason.is_busy() {
            self.schedule.park_busy(tries)
        } else {
            self.schedule.park(tries, chrono::Utc::now())
        };
        match parking {
            Parking::Park { delay, tries } => {
                debug!(event_id = %event.id, webhook_id = %webhook.id, attempt = tries.attempt,
                    parks = tries.parks, reason = reason.code(), retry_in = ?delay, "delivery parked");
                self.metrics.delivery("parked");
                let labels = crate::telemetry::ReasonLabels {
                    reason: reason.code(),
                };
                self.metrics.parks.get_or_create(&labels).inc();
                let outcome = LogOutcome::Parked;
                let error = Some(detail);
                self.record(
                    webhook,
                    event,
                    tries.attempt,
                    outcome,
                    None,
                    error,
                    Duration::ZERO,
                );
                Next::Retry {
                    delay,
                    job: Job::new(webhook.id, &webhook.account_id, &tries, detail.into()),
                }
            }
            Parking::Exhausted { attempts } => {
                warn!(event_id = %event.id, webhook_id = %webhook.id, attempts,
                    reason = reason.code(), "delivery parked through its whole schedule; dead-lettering");
                let (outcome, error) = (LogOutcome::DeadLettered, Some(detail));
                self.record(
                    webhook,
                    event,
                    attempts,
                    outcome,
                    None,
                    error,
                    Duration::ZERO,
                );
                self.metrics.delivery("dead_lettered");
                let letter =
                    dead_letter(webhook, event, "retries_exhausted", detail, attempts, None);
                Next::Dead(letter)
            }
        }
    }
}
