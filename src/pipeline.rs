//! What happens to one message: an event from `<prefix>.incoming`, or a retry job (or a fan-out
//! batch) from `<prefix>.deliveries`. Match the webhooks, shape and sign, deliver, then make
//! each outcome durable (a retry job or a dead letter, published with a confirm) and only then
//! tell the caller to ack. Nothing here acks on its own: the result is a [`Disposition`].

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use lapin::types::FieldTable;
use tracing::{debug, Instrument};

use crate::{
    config::Config,
    dead_reason::DeadReason,
    delivery::{failing::Failing, health::Health, Deliverer},
    delivery_log::{dead_letters::DeadLetterLog, DeliveryLog},
    event::{Bodies, Body, Event, PoisonReason},
    queue::{
        account_header,
        batch::Batch,
        job::{DeadLetter, Job, INVALID_JOB_MESSAGE_ID, POISON_MESSAGE_ID},
        BadAccount, Names, Outlet,
    },
    registry::Registry,
    retry::{RetrySchedule, Tries},
    store::StoreError,
    telemetry::Metrics,
    webhook::Webhook,
};

mod apply;
mod batch;
mod dead;
mod decision;
mod fan_out;
mod in_flight;
mod letters;
mod over_limit;
mod poison;
pub mod session;
mod settle;

pub use apply::delivery_span;
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
/// (`Job`: a first attempt to make from the deliveries queue, for an event split by fan-out;
/// `Batch`: the same for many webhooks at once.)
enum Next {
    Done,
    Retry { delay: Duration, job: Job },
    Dead(DeadLetter),
    Job(Job),
    Batch(Batch),
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
    /// Above this many matched webhooks an event is split into batch jobs.
    fan_out_threshold: usize,
    /// Most webhooks in one batch job (`delivery.fan_out_batch`; 1: a job each).
    fan_out_batch: usize,
    /// Bytes of header a batch may take: half the frame the worker asks for.
    batch_header_budget: usize,
    /// Each account's first attempts from batches in the worker at once: `amqp.prefetch`.
    batch_gates: batch::BatchGates,
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
                registry.store().clone(),
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
            fan_out_batch: config.delivery.fan_out_batch,
            batch_gates: batch::BatchGates::new(usize::from(config.amqp.prefetch)),
            batch_header_budget: crate::queue::batch::header_budget(
                crate::queue::connect::requested_frame_max(&config.amqp.url),
            ),
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

    /// A new event: first attempt to every subscribed webhook of its account.
    pub async fn handle_event(
        &self,
        outlet: &Outlet,
        raw: &Bytes,
        headers: Option<&FieldTable>,
        routing_key: &str,
    ) -> Disposition {
        self.metrics.events_received.inc();
        // Only a dead letter needs it owned.
        let event_type = || Some(routing_key.to_string());
        // A header that is there but unreadable is poison, never the default account.
        let account = match account_header(headers) {
            Ok(account) => account.unwrap_or_else(|| self.default_account.clone()),
            Err(bad) => {
                let letter = DeadLetter {
                    event_type: event_type(),
                    ..DeadLetter::new(BadAccount::REASON, bad.to_string())
                };
                return self.poison(outlet, raw, POISON_MESSAGE_ID, letter).await;
            }
        };
        let event = match Event::parse_shared(raw, self.max_message_bytes) {
            Ok(event) => event,
            Err(reason) => {
                let letter = DeadLetter {
                    account_id: Some(account),
                    event_type: event_type(),
                    ..DeadLetter::new(reason.dead_reason(), reason.to_string())
                };
                return self.poison(outlet, raw, POISON_MESSAGE_ID, letter).await;
            }
        };
        self.deliver_event(outlet, raw, &account, &event).await
    }

    /// The first attempts of `event` to the webhooks of `account` subscribed to it (or its jobs,
    /// when it fans out), and the letters owed to those whose rows cannot be read.
    async fn deliver_event(
        &self,
        outlet: &Outlet,
        raw: &Bytes,
        account: &str,
        event: &Event,
    ) -> Disposition {
        let webhooks = self.registry.matching(account, &event.event_type);
        // Webhooks whose rows cannot be decoded: the event is owed to them all the same.
        let unreadable: Vec<Next> = self
            .registry
            .matching_unreadable(account, &event.event_type)
            .iter()
            .map(|row| {
                delivery_span(Some(&event.id), row.id, 1)
                    .in_scope(|| self.unreadable_letter(row, &event.event_type, 0))
            })
            .collect();
        if webhooks.is_empty() && unreadable.is_empty() {
            debug!(event_id = %event.id, account, "no webhook subscribed");
            return Disposition::Ack;
        }
        if let ([webhook], true, false) =
            (webhooks.as_slice(), unreadable.is_empty(), self.fans_out(1))
        {
            // The usual case, made in place, in the delivery's span alone: an event span
            // around it would say nothing more, and each span costs as much to make as
            // signing the body.
            let span = delivery_span(Some(&event.id), webhook.id, 1);
            let work = async {
                let body = Bodies::default().get(event, webhook.include.include());
                let tries = Tries::from(1);
                let correlation_id = event.correlation_id();
                let next = self
                    .attempt(webhook, event, body, correlation_id, tries)
                    .await;
                self.settle(outlet, raw, &event.id, vec![next]).await
            };
            return work.instrument(span).await;
        }
        let span = tracing::error_span!("event", event_id = %event.id);
        self.deliver_to_many(outlet, raw, account, event, &webhooks, unreadable)
            .instrument(span)
            .await
    }

    /// The first attempts of `event` to several webhooks (or its fan-out jobs), in the event's
    /// span.
    async fn deliver_to_many(
        &self,
        outlet: &Outlet,
        raw: &Bytes,
        account: &str,
        event: &Event,
        webhooks: &[Arc<Webhook>],
        unreadable: Vec<Next>,
    ) -> Disposition {
        if self.fans_out(webhooks.len()) {
            return self
                .fan_out(outlet, raw, account, &event.id, webhooks, unreadable)
                .await;
        }
        let correlation_id = event.correlation_id();
        let mut bodies = Bodies::default();
        let attempts = webhooks.iter().map(|webhook| {
            let body = bodies.get(event, webhook.include.include());
            self.first_attempt(webhook, event, body, correlation_id)
        });
        let mut nexts = self.bounded(attempts.collect()).await;
        nexts.extend(unreadable);
        self.settle(outlet, raw, &event.id, nexts).await
    }

    /// An event's first attempt to `webhook`, in its delivery span.
    async fn first_attempt(
        &self,
        webhook: &Webhook,
        event: &Event,
        body: Body,
        correlation_id: Option<&str>,
    ) -> Next {
        let span = delivery_span(Some(&event.id), webhook.id, 1);
        self.attempt(webhook, event, body, correlation_id, Tries::from(1))
            .instrument(span)
            .await
    }

    /// A retry (or a parked first attempt) for one webhook, or a fan-out batch's first attempts
    /// for many. The webhook is read again, so a new URL or secret applies, and a deleted or
    /// disabled webhook ends the retries.
    pub async fn handle_job(
        &self,
        outlet: &Outlet,
        raw: &Bytes,
        headers: Option<&FieldTable>,
    ) -> Disposition {
        let job = match Batch::from_headers(headers) {
            Ok(Some(batch)) => return self.handle_batch(outlet, raw, batch).await,
            Ok(None) => Job::from_headers(headers),
            Err(detail) => Err(detail),
        };
        let job = match job {
            Ok(job) => job,
            Err(detail) => {
                let letter = DeadLetter::new(DeadReason::InvalidJob, detail.into());
                return self
                    .poison(outlet, raw, INVALID_JOB_MESSAGE_ID, letter)
                    .await;
            }
        };
        let event = Event::parse_shared(raw, self.max_message_bytes);
        let event_id = event.as_ref().ok().map(|event| event.id.as_str());
        let span = delivery_span(event_id, job.webhook_id, job.attempt);
        self.deliver_job(outlet, raw, job, event)
            .instrument(span)
            .await
    }

    /// The job's attempt, once its webhook can be delivered to and its event reads.
    async fn deliver_job(
        &self,
        outlet: &Outlet,
        raw: &Bytes,
        job: Job,
        event: Result<Event, PoisonReason>,
    ) -> Disposition {
        let webhook = match self
            .job_webhook(outlet, raw, &job, event.as_ref().ok())
            .await
        {
            Ok(webhook) => webhook,
            Err(disposition) => return disposition,
        };
        let event = match event {
            Ok(event) => event,
            Err(reason) => {
                let letter = DeadLetter {
                    webhook_id: Some(job.webhook_id),
                    account_id: Some(job.account_id),
                    ..DeadLetter::new(reason.dead_reason(), reason.to_string())
                };
                return self.poison(outlet, raw, POISON_MESSAGE_ID, letter).await;
            }
        };
        let body = Bodies::default().get(&event, webhook.include.include());
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
}
