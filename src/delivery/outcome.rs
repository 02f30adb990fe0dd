//! What each answer means, decided in one place (the contract table of DESIGN.md): the typed
//! [`Outcome`] the pipeline acts on, and the [`Signal`] an answer gives the endpoint's health
//! (its concurrency limit and circuit breaker). Nothing else interprets statuses or reasons.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::{AttemptResult, Failure, FailureKind};

/// What happens to the delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Delivered,
    /// 410 Gone: the webhook is disabled at once and the delivery dead-lettered
    /// (`endpoint_gone`); nothing is retried.
    Gone,
    /// The next scheduled retry; when the endpoint sent `Retry-After` (429, 503), no sooner than
    /// that.
    Retry { not_before: Option<Duration> },
}

/// What an attempt says about the endpoint's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// 2xx: a latency sample; the limit may grow.
    Success,
    /// Another answer: the endpoint is up and making progress, nothing more.
    Answered,
    /// 429, 502, 503, 504: it is overloaded; the limit shrinks a little.
    Overloaded,
    /// A timeout or connection failure: the limit shrinks by half, and enough in a row open the
    /// circuit.
    Unreachable,
    /// Nothing was learnt of the endpoint (the request was refused locally, a token could not be
    /// had, the body could not be read).
    Neutral,
}

impl Outcome {
    pub fn of(result: &AttemptResult) -> Self {
        match result {
            AttemptResult::Delivered { .. } => Outcome::Delivered,
            AttemptResult::Failed(Failure {
                status: Some(410), ..
            }) => Outcome::Gone,
            AttemptResult::Failed(Failure {
                kind: FailureKind::Status { retry_after },
                ..
            }) => Outcome::Retry {
                not_before: *retry_after,
            },
            AttemptResult::Failed(_) => Outcome::Retry { not_before: None },
        }
    }
}

impl Signal {
    pub fn of(result: &AttemptResult) -> Self {
        let failure = match result {
            AttemptResult::Delivered { .. } => return Signal::Success,
            AttemptResult::Failed(failure) => failure,
        };
        match (failure.kind, failure.status) {
            (FailureKind::Timeout | FailureKind::Connect, _) => Signal::Unreachable,
            (FailureKind::Status { .. }, Some(429 | 502 | 503 | 504)) => Signal::Overloaded,
            (FailureKind::Status { .. }, _) => Signal::Answered,
            (FailureKind::Local, _) => Signal::Neutral,
        }
    }
}

/// The `Retry-After` of a 429 or 503 (delay-seconds or an HTTP date), as a wait from `now`.
/// Other statuses, and values that are neither, give `None`: the schedule applies.
pub fn retry_after(status: u16, headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    if !matches!(status, 429 | 503) {
        return None;
    }
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(kind: FailureKind, status: Option<u16>) -> AttemptResult {
        AttemptResult::Failed(Failure {
            status,
            reason: "x".into(),
            kind,
        })
    }

    fn answered(status: u16) -> AttemptResult {
        failed(FailureKind::Status { retry_after: None }, Some(status))
    }

    #[test]
    fn each_answer_has_its_outcome_and_signal() {
        let ok = AttemptResult::Delivered { status: 204 };
        assert_eq!(
            (Outcome::of(&ok), Signal::of(&ok)),
            (Outcome::Delivered, Signal::Success)
        );
        assert_eq!(Outcome::of(&answered(410)), Outcome::Gone);
        let plain = Outcome::Retry { not_before: None };
        for status in [429, 502, 503, 504] {
            assert_eq!(Outcome::of(&answered(status)), plain);
            assert_eq!(
                Signal::of(&answered(status)),
                Signal::Overloaded,
                "{status}"
            );
        }
        for status in [500, 404, 302, 410] {
            assert_eq!(Signal::of(&answered(status)), Signal::Answered, "{status}");
        }
        for kind in [FailureKind::Timeout, FailureKind::Connect] {
            assert_eq!(Signal::of(&failed(kind, None)), Signal::Unreachable);
            assert_eq!(Outcome::of(&failed(kind, None)), plain);
        }
        assert_eq!(
            Signal::of(&failed(FailureKind::Local, None)),
            Signal::Neutral
        );
        let later = failed(
            FailureKind::Status {
                retry_after: Some(Duration::from_secs(3)),
            },
            Some(503),
        );
        assert_eq!(
            Outcome::of(&later),
            Outcome::Retry {
                not_before: Some(Duration::from_secs(3))
            }
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates_of_429_and_503_only() {
        let now = DateTime::parse_from_rfc3339("2026-11-29T08:49:37Z")
            .unwrap()
            .with_timezone(&Utc);
        let headers = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, value.parse().unwrap());
            headers
        };
        assert_eq!(
            retry_after(503, &headers("3"), now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            retry_after(429, &headers("Sun, 29 Nov 2026 08:49:40 GMT"), now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            retry_after(429, &headers("Sun, 29 Nov 2026 08:00:00 GMT"), now),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(retry_after(500, &headers("3"), now), None);
        assert_eq!(retry_after(503, &headers("soon"), now), None);
        assert_eq!(retry_after(503, &HeaderMap::new(), now), None);
    }
}
