//! What happens to one message: an event from `<prefix>.incoming`, or a retry job from
//! `<prefix>.deliveries`. Match the webhooks, shape and sign, deliver, then make each outcome
//! durable (a retry job or a dead letter, published with a confirm) and only then tell the
//! caller to ack. Nothing here acks on its own: the result is a [`Disposition`].

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use lapin::types::FieldTable;
use tracing::{debug, info, warn};

use crate::{
    config::Config,
    delivery::{
        failing::{DisableReason, Failing},
        health::{Admission, Health},
        outcome::{Outcome, Signal},
        Attempt, AttemptResult, Deliverer,
    },
    delivery_log::{dead_letters::DeadLetterLog, DeliveryLog, LogEntry, LogOutcome},
    event::{Bodies, Body, Event},
    queue::{
        account_header,
        job::{DeadLetter, Job},
        BadAccount, Names, Outlet,
    },
    registry::Registry,
    retry::{RetrySchedule, Tries},
    store::StoreError,
    telemetry::Metrics,
    webhook::Webhook,
};

mod dead;
mod fan_out;
mod in_flight;
mod letters;
mod park;
pub mod session;
mod settle;

pub use settle::Owed;

/// What to do with the message once its outcomes are durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Ack,
    /// Nothing was attempted yet and something needed for it is missing (the database cannot be
    /// read): put the message back to be handled again. The queue's delivery limit bounds this.
    Requeue,
    /// Attempts were made but their outcomes could not be made durable in time: the broker
    /// dead-letters the message (never requeued: that would repeat every attempt).
    Reject,
    /// The session was lost or ended first: left unacked, the broker hands the message back.
    Leave,
}

/// What must happen next for one (event, webhook) pair.
/// (`Job`: a first attempt to make from the deliveries queue, for an event split by fan-out.)
enum Next {
    Done,
    Retry { delay: Duration, job: Job },
    Dead(DeadLetter),
    Job(Job),
}

pub struct Pipeline {
    registry: Arc<Registry>,
    deliverer: Deliverer,
    health: Health,
    failing: Failing,
    names: Names,
    schedule: RetrySchedule,
    default_account: String,
    max_message_bytes: usize,
    /// `amqp.delivery_limit`: a message handed out this many times is dead-lettered here, by
    /// webhook, before the broker would do it without naming any.
    delivery_limit: u32,
    /// How long [`Pipeline::settle`] keeps re-publishing failed outcomes (`amqp.settle_timeout`).
    settle_timeout: Duration,
    /// Above this many matched webhooks an event is split into one job each.
    fan_out_threshold: usize,
    /// First attempts one event makes at once (below the fan-out threshold).
    max_in_flight_per_event: usize,
    metrics: Metrics,
    log: DeliveryLog,
    /// Dead letters owed to webhooks, recorded by webhook once they are in the dead letters.
    dead_log: DeadLetterLog,
    in_flight: Arc<in_flight::InFlight>,
}

impl Pipeline {
    pub fn new(
        config: &Config,
        registry: Arc<Registry>,
        deliverer: Deliverer,
        metrics: Metrics,
    ) -> Self {
        Self {
            failing: Failing::new(
                registry.clone(),
                config.delivery.disable_after.0,
                metrics.clone(),
            ),
            registry,
            deliverer,
            health: Health::new(config, metrics.clone()),
            names: Names::new(&config.amqp.prefix),
            schedule: RetrySchedule::from_config(&config.delivery),
            default_account: config.delivery.default_account.clone(),
            max_message_bytes: config.amqp.max_message_bytes,
            delivery_limit: config.amqp.delivery_limit,
            log: DeliveryLog::off(metrics.clone()),
            dead_log: DeadLetterLog::off(metrics.clone()),
            in_flight: Arc::default(),
            settle_timeout: config.amqp.settle_timeout.0,
            fan_out_threshold: config.delivery.fan_out_threshold,
            max_in_flight_per_event: config.delivery.max_in_flight_per_event,
            metrics,
        }
    }

    /// Records every attempt in `log`.
    pub fn with_delivery_log(mut self, log: DeliveryLog) -> Self {
        self.log = log;
        self
    }

    /// Records every dead letter owed to a webhook in `dead_log`.
    pub fn with_dead_letter_log(mut self, dead_log: DeadLetterLog) -> Self {
        self.dead_log = dead_log;
        self
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        webhook: &Webhook,
        event: &Event,
        number: u32,
        outcome: LogOutcome,
        status: Option<u16>,
        error: Option<&str>,
        duration: Duration,
    ) {
        self.log.record(LogEntry {
            account_id: &webhook.account_id,
            webhook_id: webhook.id,
            event_id: &event.id,
            event_type: &event.event_type,
            attempt: number,
            outcome,
            status,
            error,
            duration,
        });
    }

    /// A new event: first attempt to every subscribed webhook of its account.
    pub async fn handle_event(
        &self,
        outlet: &Outlet,
        raw: &Bytes,
        headers: Option<&FieldTable>,
        routing_key: &str,
    ) -> Disposition {
        self.metrics.events_received.inc();
        // A header that is there but unreadable is poison, never the default account.
        let account = match account_header(headers) {
            Ok(account) => account.unwrap_or_else(|| self.default_account.clone()),
            Err(bad) => {
                let (reason, detail) = (BadAccount::CODE, bad.to_string());
                return self
                    .poison_event(outlet, raw, routing_key, reason, detail, None)
                    .await;
            }
        };
        let event = match Event::parse_shared(raw, self.max_message_bytes) {
            Ok(event) => event,
            Err(reason) => {
                let (code, detail) = (reason.code(), reason.to_string());
                // A message over amqp.max_message_bytes is not published again: headers only.
                let body: &[u8] = match reason {
                    crate::event::PoisonReason::TooLarge { .. } => &[],
                    _ => raw,
                };
                return self
                    .poison_event(outlet, body, routing_key, code, detail, Some(account))
                    .await;
            }
        };
        let webhooks = self.registry.matching(&account, &event.event_type);
        // Webhooks whose rows cannot be decoded: the event is owed to them all the same.
        let unreadable: Vec<Next> = self
            .registry
            .matching_unreadable(&account, &event.event_type)
            .iter()
            .map(|row| self.unreadable_letter(row, &event.event_type, 0))
            .collect();
        if webhooks.is_empty() && unreadable.is_empty() {
            debug!(event_id = %event.id, account, "no webhook subscribed");
            return Disposition::Ack;
        }
        if self.fans_out(webhooks.len()) {
            return self
                .fan_out(outlet, raw, &event.id, &webhooks, unreadable)
                .await;
        }
        let correlation_id = event.correlation_id();
        let mut bodies = Bodies::default();
        let mut nexts = match webhooks.as_slice() {
            [] => Vec::new(),
            // The usual case, made in place: no set of futures to allocate and move it into.
            [webhook] => {
                let body = bodies.get(&event, webhook.include.as_deref());
                vec![self.attempt(webhook, &event, body, correlation_id, 1).await]
            }
            _ => {
                let attempts = webhooks.iter().map(|webhook| {
                    let body = bodies.get(&event, webhook.include.as_deref());
                    self.attempt(webhook, &event, body, correlation_id, 1)
                });
                self.bounded(attempts.collect()).await
            }
        };
        nexts.extend(unreadable);
        self.settle(outlet, raw, &event.id, nexts).await
    }

    /// Dead-letters an event that cannot be delivered to anyone (`reason`: a poison code).
    async fn poison_event(
        &self,
        outlet: &Outlet,
        raw: &[u8],
        routing_key: &str,
        reason: &'static str,
        detail: String,
        account_id: Option<String>,
    ) -> Disposition {
        warn!(
            reason,
            detail, routing_key, "poison event; dead-lettering it"
        );
        self.metrics
            .poison_events
            .get_or_create(&crate::telemetry::ReasonLabels { reason })
            .inc();
        let dead = DeadLetter {
            reason: reason.into(),
            detail,
            account_id,
            event_type: Some(routing_key.to_string()),
            ..DeadLetter::default()
        };
        self.settle(outlet, raw, "poison", vec![Next::Dead(dead)])
            .await
    }

    /// A retry (or a parked first attempt) for one webhook. The webhook is read again, so a new
    /// URL or secret applies, and a deleted or disabled webhook ends the retries.
    pub async fn handle_job(
        &self,
        outlet: &Outlet,
        raw: &Bytes,
        headers: Option<&FieldTable>,
    ) -> Disposition {
        let job = match Job::from_headers(headers) {
            Ok(job) => job,
            Err(detail) => {
                warn!(detail, "invalid retry job; dead-lettering it");
                let dead = DeadLetter {
                    reason: "invalid_job".into(),
                    detail: detail.into(),
                    ..DeadLetter::default()
                };
                return self
                    .settle(outlet, raw, "invalid_job", vec![Next::Dead(dead)])
                    .await;
            }
        };
        let webhook = match self.job_webhook(outlet, raw, &job).await {
            Ok(webhook) => webhook,
            Err(disposition) => return disposition,
        };
        let event = match Event::parse_shared(raw, self.max_message_bytes) {
            Ok(event) => event,
            Err(reason) => {
                let dead = DeadLetter {
                    reason: reason.code().into(),
                    detail: reason.to_string(),
                    webhook_id: Some(job.webhook_id),
                    account_id: Some(job.account_id),
                    ..DeadLetter::default()
                };
                return self.poison(outlet, raw, &reason, dead).await;
            }
        };
        let body = Bodies::default().get(&event, webhook.include.as_deref());
        let correlation_id = event.correlation_id();
        let next = self
            .attempt(&webhook, &event, body, correlation_id, job.tries())
            .await;
        self.settle(outlet, raw, &event.id, vec![next]).await
    }

    /// The job's webhook as it is now. The registry may lag behind the database (a webhook made
    /// on another replica moments ago, a reload that failed), so a webhook it lacks is looked up
    /// in the database before the retry is given up.
    async fn current_webhook(&self, job: &Job) -> Result<Option<Arc<Webhook>>, StoreError> {
        if let Some(webhook) = self.registry.get(job.webhook_id) {
            return Ok(Some(webhook).filter(|w| w.account_id == job.account_id));
        }
        let stored = self
            .registry
            .store()
            .get(&job.account_id, job.webhook_id)
            .await?;
        Ok(stored.map(|webhook| {
            self.registry.upsert(webhook.clone());
            Arc::new(webhook)
        }))
    }

    /// One delivery: wait for the endpoint's turn (or park), send, and decide what follows.
    async fn attempt(
        &self,
        webhook: &Webhook,
        event: &Event,
        body: Body,
        correlation_id: Option<&str>,
        tries: impl Into<Tries>,
    ) -> Next {
        let tries = tries.into();
        let permit = match self.health.admit(webhook.id, &webhook.account_id).await {
            Admission::Send(permit) => permit,
            Admission::Park(reason) => return self.park(webhook, event, &tries, reason),
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
        let started = std::time::Instant::now();
        let result = self.deliverer.deliver(webhook, &attempt).await;
        let took = started.elapsed();
        self.metrics.in_flight.dec();
        permit.finish(Signal::of(&result));
        self.decide(webhook, event, tries.attempt, result, took)
            .await
    }

    /// What follows attempt `number`, by what its answer means (see [`Outcome`]).
    async fn decide(
        &self,
        webhook: &Webhook,
        event: &Event,
        number: u32,
        result: AttemptResult,
        took: Duration,
    ) -> Next {
        let outcome = Outcome::of(&result);
        let failure = match result {
            AttemptResult::Delivered { status } => {
                debug!(event_id = %event.id, webhook_id = %webhook.id, attempt = number, status, "delivered");
                self.metrics.delivery("delivered");
                self.record(
                    webhook,
                    event,
                    number,
                    LogOutcome::Delivered,
                    Some(status),
                    None,
                    took,
                );
                self.failing.succeeded(webhook).await;
                return Next::Done;
            }
            AttemptResult::Failed(failure) => failure,
        };
        let log = |outcome| {
            let error = Some(failure.reason.as_str());
            self.record(webhook, event, number, outcome, failure.status, error, took);
        };
        let dead = |reason: &str| {
            self.metrics.delivery("dead_lettered");
            Next::Dead(dead::dead_letter(
                webhook,
                event,
                reason,
                &failure.reason,
                number,
                failure.status,
            ))
        };
        let not_before = match outcome {
            Outcome::Delivered => return Next::Done,
            Outcome::Gone => {
                self.failing.disable(webhook, DisableReason::Gone).await;
                log(LogOutcome::Disabled);
                warn!(event_id = %event.id, webhook_id = %webhook.id, attempt = number,
                    "the endpoint answered 410 Gone; webhook disabled, delivery dead-lettered");
                return dead("endpoint_gone");
            }
            Outcome::Retry { not_before } => not_before,
        };
        if self.failing.failed(webhook).await {
            log(LogOutcome::Disabled);
            info!(event_id = %event.id, webhook_id = %webhook.id, attempt = number,
                reason = %failure.reason, "delivery failed and the webhook is now disabled; kept as a dead letter");
            return dead("webhook_disabled");
        }
        // No sooner than the endpoint asked (Retry-After), never sooner than the schedule.
        let delay = match not_before {
            Some(at_least) => self.schedule.delay_after_at_least(number, at_least),
            None => self.schedule.delay_after(number),
        };
        let Some(delay) = delay else {
            log(LogOutcome::DeadLettered);
            warn!(event_id = %event.id, webhook_id = %webhook.id, attempt = number,
                reason = %failure.reason, "delivery failed; retries exhausted, dead-lettering");
            return dead("retries_exhausted");
        };
        log(LogOutcome::Failed);
        info!(event_id = %event.id, webhook_id = %webhook.id, attempt = number,
            reason = %failure.reason, retry_in = ?delay, "delivery failed; will retry");
        self.metrics.delivery("retry_scheduled");
        let tries = Tries::from(number + 1);
        Next::Retry {
            delay,
            job: Job::new(
                webhook.id,
                &webhook.account_id,
                &tries,
                failure.reason.clone(),
            ),
        }
    }
}
