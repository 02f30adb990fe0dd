//! The headers that travel with a message once the worker has touched it: a retry job (which
//! webhook, which attempt comes next, what went wrong last) and a dead letter (why it died).
//! (A fan-out batch, the first attempts to many webhooks, has its own: [`super::batch`].)
//! The body is always the original event bytes, so a dead letter can be replayed as it was.

use chrono::{DateTime, Utc};
use lapin::types::{AMQPValue, FieldTable, LongString};
use uuid::Uuid;

use super::{header_int, header_text};
use crate::dead_reason::DeadReason;

pub const ACCOUNT_ID: &str = "account_id";
pub const WEBHOOK_ID: &str = "x-webhook-id";
pub const ATTEMPT: &str = "x-attempt";
pub const LAST_ERROR: &str = "x-last-error";
pub const DEAD_REASON: &str = "x-dead-reason";
pub const DEAD_DETAIL: &str = "x-dead-detail";
pub const ATTEMPTS: &str = "x-attempts";
pub const LAST_STATUS: &str = "x-last-status";
pub const EVENT_TYPE: &str = "x-event-type";
pub const DEAD_AT: &str = "x-dead-at";
/// How often the attempt has been parked, and since when (ms since the epoch): parks back off
/// and, once they have lasted as long as the next retry delay, count as the attempt.
pub const PARKS: &str = "x-parks";
pub const PARKED_SINCE: &str = "x-parked-since";

/// The message ids of dead letters that carry no event id (a poison message, an invalid job):
/// they name what the message is, not an event, so nothing is recorded or replayed by them.
pub const NO_EVENT_MESSAGE_IDS: [&str; 2] = [POISON_MESSAGE_ID, INVALID_JOB_MESSAGE_ID];
pub const POISON_MESSAGE_ID: &str = "poison";
pub const INVALID_JOB_MESSAGE_ID: &str = "invalid_job";

/// One pending delivery of an event to one webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub webhook_id: Uuid,
    pub account_id: String,
    /// The attempt to make next, counting from 1.
    pub attempt: u32,
    pub last_error: Option<String>,
    /// Parks of this attempt so far (0 when it was never parked).
    pub parks: u32,
    pub parked_since: Option<DateTime<Utc>>,
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

impl Job {
    /// The delivery of the same event to `webhook_id`, as `tries` says.
    pub fn new(
        webhook_id: Uuid,
        account_id: &str,
        tries: &crate::retry::Tries,
        last_error: String,
    ) -> Self {
        Job {
            webhook_id,
            account_id: account_id.to_string(),
            attempt: tries.attempt,
            last_error: Some(last_error),
            parks: tries.parks,
            parked_since: tries.parked_since,
        }
    }

    pub fn headers(&self) -> FieldTable {
        let mut headers = FieldTable::default();
        headers.insert(WEBHOOK_ID.into(), text(&self.webhook_id.to_string()));
        headers.insert(ACCOUNT_ID.into(), text(&self.account_id));
        headers.insert(
            ATTEMPT.into(),
            AMQPValue::LongLongInt(i64::from(self.attempt)),
        );
        if let Some(error) = &self.last_error {
            headers.insert(LAST_ERROR.into(), text(error));
        }
        if self.parks > 0 {
            headers.insert(PARKS.into(), AMQPValue::LongLongInt(i64::from(self.parks)));
        }
        if let Some(since) = self.parked_since {
            headers.insert(
                PARKED_SINCE.into(),
                AMQPValue::LongLongInt(since.timestamp_millis()),
            );
        }
        headers
    }

    /// The first attempt of the event to `webhook_id`: what fan-out owes each webhook.
    pub fn first(webhook_id: Uuid, account_id: &str) -> Self {
        Job {
            webhook_id,
            account_id: account_id.to_string(),
            attempt: 1,
            last_error: None,
            parks: 0,
            parked_since: None,
        }
    }

    /// Where the delivery stands in its schedule.
    pub fn tries(&self) -> crate::retry::Tries {
        crate::retry::Tries {
            attempt: self.attempt,
            parks: self.parks,
            parked_since: self.parked_since,
        }
    }

    pub fn from_headers(headers: Option<&FieldTable>) -> Result<Self, &'static str> {
        let webhook_id = header_text(headers, WEBHOOK_ID)
            .and_then(|id| id.parse().ok())
            .ok_or("missing or invalid x-webhook-id")?;
        let account_id = header_text(headers, ACCOUNT_ID).ok_or("missing account_id")?;
        let attempt = header_int(headers, ATTEMPT)
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n >= 1)
            .ok_or("missing or invalid x-attempt")?;
        // Park headers are advisory: missing or odd ones mean "not parked", never a bad job.
        let parks = header_int(headers, PARKS)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0);
        let parked_since =
            header_int(headers, PARKED_SINCE).and_then(DateTime::<Utc>::from_timestamp_millis);
        Ok(Job {
            webhook_id,
            account_id,
            attempt,
            last_error: header_text(headers, LAST_ERROR),
            parks,
            parked_since,
        })
    }
}

/// Why a message was dead-lettered.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Owed to a webhook (named in `webhook_id`, also recorded by webhook) or poison; see
    /// [`DeadReason`].
    pub reason: DeadReason,
    pub detail: String,
    pub webhook_id: Option<Uuid>,
    pub account_id: Option<String>,
    pub event_type: Option<String>,
    pub attempts: Option<u32>,
    pub last_status: Option<u16>,
}

impl DeadLetter {
    /// A letter that names nothing more than why.
    pub fn new(reason: DeadReason, detail: String) -> Self {
        DeadLetter {
            reason,
            detail,
            webhook_id: None,
            account_id: None,
            event_type: None,
            attempts: None,
            last_status: None,
        }
    }

    pub fn headers(&self) -> FieldTable {
        let mut headers = FieldTable::default();
        headers.insert(DEAD_REASON.into(), text(self.reason.as_str()));
        headers.insert(DEAD_DETAIL.into(), text(&self.detail));
        headers.insert(DEAD_AT.into(), text(&crate::webhook::timestamp(Utc::now())));
        if let Some(id) = self.webhook_id {
            headers.insert(WEBHOOK_ID.into(), text(&id.to_string()));
        }
        if let Some(account) = &self.account_id {
            headers.insert(ACCOUNT_ID.into(), text(account));
        }
        if let Some(event_type) = &self.event_type {
            headers.insert(EVENT_TYPE.into(), text(event_type));
        }
        if let Some(attempts) = self.attempts {
            headers.insert(ATTEMPTS.into(), AMQPValue::LongLongInt(i64::from(attempts)));
        }
        if let Some(status) = self.last_status {
            headers.insert(
                LAST_STATUS.into(),
                AMQPValue::LongLongInt(i64::from(status)),
            );
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_round_trips_through_headers() {
        let job = Job {
            webhook_id: Uuid::new_v4(),
            account_id: "acct".into(),
            attempt: 3,
            last_error: Some("http_503".into()),
            parks: 0,
            parked_since: None,
        };
        assert_eq!(Job::from_headers(Some(&job.headers())), Ok(job.clone()));
        let since = DateTime::<Utc>::from_timestamp_millis(1_800_000_000_123).unwrap();
        let job = Job {
            parks: 4,
            parked_since: Some(since),
            ..job
        };
        assert_eq!(Job::from_headers(Some(&job.headers())), Ok(job));
    }

    #[test]
    fn a_job_without_headers_is_invalid() {
        assert!(Job::from_headers(None).is_err());
        assert!(Job::from_headers(Some(&FieldTable::default())).is_err());
    }
}
