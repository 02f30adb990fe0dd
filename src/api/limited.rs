//! Over a rate limit: which limit refused, and when the request would be allowed; the 429's
//! message and `Retry-After`. Its own module so that the error type and the limiter both use
//! it without using each other.

use std::time::Duration;

/// The configuration key of the rotation limit (its message says "key rotations").
pub(super) const ROTATION_KEY: &str = "oidc.rotation_rate_limit";

/// Over a limit: which one, and how long until the request would be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// The configuration key of the limit that refused, for the answer's message.
    pub key: &'static str,
    pub retry_after: Duration,
}

impl Limited {
    /// `Retry-After` in whole seconds, rounded up and at least 1, so a client that waits that
    /// long finds a token.
    pub fn retry_after_seconds(&self) -> u64 {
        let seconds = self.retry_after.as_secs_f64().ceil();
        // `as` saturates; the longest wait is one token of the slowest rate (an hour or so).
        (seconds as u64).max(1)
    }
}

/// The 429's message: what was limited, by which key, and when to come back.
impl std::fmt::Display for Limited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.key == ROTATION_KEY {
            "key rotations"
        } else {
            "writes"
        };
        write!(
            f,
            "too many {what} for this account (limit: {}); retry after {} s",
            self.key,
            self.retry_after_seconds()
        )
    }
}
