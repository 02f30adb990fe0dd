//! Per-account rate limits on the API's writes: a token bucket per account for every write
//! (create, update, delete, key rotation, redrive; `api.write_rate_limit` per minute, bursts of
//! `api.write_burst`), and a stricter one for key rotation (`oidc.rotation_rate_limit` per hour).
//! Reads are not limited.
//!
//! A handler takes [`Write`] (or [`Rotation`]) as an extractor, after authentication put the
//! account in the request; over the limit the extractor answers 429 with `Retry-After` before
//! the body is read or anything is written.
//!
//! The buckets live in a `Mutex<HashMap>` keyed by account. Only authenticated requests reach
//! it, so its keys are the accounts of `api.tokens`: the map cannot grow beyond the
//! configuration, and needs no eviction. The lock is held for a few arithmetic operations and
//! never across an await. Limits are per process: each replica counts its own requests.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use axum::{extract::FromRequestParts, http::request::Parts};

use super::{
    auth::Account,
    error::ApiError,
    limited::{Limited, ROTATION_KEY},
    ApiState,
};
use crate::config::Config;

/// How fast a bucket refills and how much it holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens a full bucket holds: requests allowed at once.
    pub burst: u32,
    /// Tokens added per second, sustained.
    pub per_second: f64,
}

impl Rate {
    /// `count` per `period`, in bursts of up to `burst`.
    pub fn new(count: u32, period: Duration, burst: u32) -> Self {
        Rate {
            burst: burst.max(1),
            per_second: f64::from(count.max(1)) / period.as_secs_f64().max(f64::MIN_POSITIVE),
        }
    }
}

/// A token bucket: `rate.burst` tokens when full, refilled continuously at `rate.per_second`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: Rate,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    pub fn full(rate: Rate, now: Instant) -> Self {
        TokenBucket {
            rate,
            tokens: f64::from(rate.burst),
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        // A clock that went backwards (it cannot, with Instant) would only refill nothing.
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * self.rate.per_second).min(f64::from(self.rate.burst));
        self.updated = now;
    }

    /// How long until a token is there: zero when one is there now.
    fn wait(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.rate.per_second)
        }
    }

    /// Takes a token, or says how long until one is there (and takes nothing).
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        match self.wait(now) {
            Duration::ZERO => {
                self.tokens -= 1.0;
                Ok(())
            }
            wait => Err(wait),
        }
    }
}

/// What a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// Create, update, delete, redrive: the account's write bucket.
    Write,
    /// Key rotation: the write bucket and the rotation bucket.
    Rotation,
}

const WRITE_KEY: &str = "api.write_rate_limit";

#[derive(Debug)]
struct AccountBuckets {
    writes: TokenBucket,
    rotations: TokenBucket,
}

/// Every account's buckets.
#[derive(Debug)]
pub struct WriteLimits {
    writes: Rate,
    rotations: Rate,
    accounts: Mutex<HashMap<String, AccountBuckets>>,
}

impl WriteLimits {
    pub fn new(writes: Rate, rotations: Rate) -> Self {
        WriteLimits {
            writes,
            rotations,
            accounts: Mutex::new(HashMap::new()),
        }
    }

    /// `api.write_rate_limit` per minute in bursts of `api.write_burst`; rotations
    /// `oidc.rotation_rate_limit` per hour, as many at once.
    pub fn from_config(config: &Config) -> Self {
        let per_hour = config.oidc.rotation_rate_limit;
        WriteLimits::new(
            Rate::new(
                config.api.write_rate_limit,
                Duration::from_secs(60),
                config.api.write_burst,
            ),
            Rate::new(per_hour, Duration::from_secs(3600), per_hour),
        )
    }

    /// Counts one request of `kind` for `account` at `now`, or refuses it. A refused request
    /// takes no token from any bucket, so a rotation refused by its own limit does not spend a
    /// write, and the other way round.
    pub fn check(&self, account: &str, kind: WriteKind, now: Instant) -> Result<(), Limited> {
        // A poisoned lock only means a panic elsewhere mid-update of plain numbers; they are
        // still numbers, so carry on rather than refuse every write from now on.
        let mut accounts = self
            .accounts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let buckets = accounts
            .entry(account.to_string())
            .or_insert_with(|| AccountBuckets {
                writes: TokenBucket::full(self.writes, now),
                rotations: TokenBucket::full(self.rotations, now),
            });
        let mut refusal = None;
        if kind == WriteKind::Rotation {
            let wait = buckets.rotations.wait(now);
            if !wait.is_zero() {
                refusal = Some(Limited {
                    key: ROTATION_KEY,
                    retry_after: wait,
                });
            }
        }
        let wait = buckets.writes.wait(now);
        if !wait.is_zero() && refusal.is_none_or(|r| r.retry_after < wait) {
            refusal = Some(Limited {
                key: WRITE_KEY,
                retry_after: wait,
            });
        }
        if let Some(refusal) = refusal {
            return Err(refusal);
        }
        // Both waits were zero: each bucket holds a token.
        let _ = buckets.writes.try_take(now);
        if kind == WriteKind::Rotation {
            let _ = buckets.rotations.try_take(now);
        }
        Ok(())
    }
}

/// The account's request, counted as a write; 429 when over `api.write_rate_limit`.
#[derive(Debug)]
pub struct Write;

/// The account's key rotation, counted as a write and as a rotation.
#[derive(Debug)]
pub struct Rotation;

fn count(parts: &Parts, state: &ApiState, kind: WriteKind) -> Result<(), ApiError> {
    // Only routes behind `auth::require_token` take these extractors; without an account the
    // wiring is wrong, and refusing is the safe answer.
    let Account(account) = parts
        .extensions
        .get::<Account>()
        .ok_or(ApiError::Unauthorized("the bearer token is missing"))?;
    state
        .write_limits
        .check(account, kind, Instant::now())
        .map_err(|limited| {
            tracing::info!(account_id = %account, limit = limited.key, "API write rate-limited");
            ApiError::RateLimited(limited)
        })
}

impl FromRequestParts<ApiState> for Write {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        count(parts, state, WriteKind::Write).map(|()| Write)
    }
}

impl FromRequestParts<ApiState> for Rotation {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        count(parts, state, WriteKind::Rotation).map(|()| Rotation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn per_minute(count: u32, burst: u32) -> Rate {
        Rate::new(count, Duration::from_secs(60), burst)
    }

    #[test]
    fn a_full_bucket_allows_its_burst_then_refuses_until_it_refills() {
        let start = Instant::now();
        let mut bucket = TokenBucket::full(per_minute(60, 3), start);
        for _ in 0..3 {
            assert_eq!(bucket.try_take(start), Ok(()));
        }
        let wait = bucket.try_take(start).unwrap_err();
        assert_eq!(wait, SECOND);
        // Half a second later: half a token, still refused, half a second to go.
        let half = start + SECOND / 2;
        let wait = bucket.try_take(half).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        // A refusal takes nothing: a second later there is a whole token.
        assert_eq!(bucket.try_take(start + SECOND), Ok(()));
        assert!(bucket.try_take(start + SECOND).is_err());
    }

    #[test]
    fn a_bucket_never_holds_more_than_its_burst() {
        let start = Instant::now();
        let mut bucket = TokenBucket::full(per_minute(60, 2), start);
        let later = start + Duration::from_secs(3600);
        assert!(bucket.try_take(later).is_ok());
        assert!(bucket.try_take(later).is_ok());
        assert!(bucket.try_take(later).is_err());
    }

    #[test]
    fn accounts_are_counted_apart() {
        let limits = WriteLimits::new(per_minute(1, 2), per_minute(1, 1));
        let now = Instant::now();
        assert!(limits.check("a", WriteKind::Write, now).is_ok());
        assert!(limits.check("a", WriteKind::Write, now).is_ok());
        let limited = limits.check("a", WriteKind::Write, now).unwrap_err();
        assert_eq!(limited.key, "api.write_rate_limit");
        // 60 s, give or take the last bit of floating point.
        assert!((60..=61).contains(&limited.retry_after_seconds()));
        assert!(limits.check("b", WriteKind::Write, now).is_ok());
    }

    #[test]
    fn a_rotation_counts_as_a_write_and_against_its_own_stricter_limit() {
        let hourly = Rate::new(1, Duration::from_secs(3600), 1);
        let limits = WriteLimits::new(per_minute(60, 10), hourly);
        let now = Instant::now();
        assert!(limits.check("a", WriteKind::Rotation, now).is_ok());
        let limited = limits.check("a", WriteKind::Rotation, now).unwrap_err();
        assert_eq!(limited.key, "oidc.rotation_rate_limit");
        assert!((3600..=3601).contains(&limited.retry_after_seconds()));
        // The refused rotation spent no write: 9 of 10 are left after the first rotation.
        for _ in 0..9 {
            assert!(limits.check("a", WriteKind::Write, now).is_ok());
        }
        assert!(limits.check("a", WriteKind::Write, now).is_err());
    }

    #[test]
    fn a_rotation_refused_by_the_write_limit_spends_no_rotation() {
        let limits = WriteLimits::new(
            per_minute(60, 1),
            Rate::new(1, Duration::from_secs(3600), 1),
        );
        let now = Instant::now();
        assert!(limits.check("a", WriteKind::Write, now).is_ok());
        let limited = limits.check("a", WriteKind::Rotation, now).unwrap_err();
        assert_eq!(limited.key, "api.write_rate_limit");
        assert!(limits.check("a", WriteKind::Rotation, now + SECOND).is_ok());
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_and_at_least_one() {
        let limited = |retry_after| Limited {
            key: "k",
            retry_after,
        };
        assert_eq!(limited(Duration::from_millis(1)).retry_after_seconds(), 1);
        assert_eq!(
            limited(Duration::from_millis(1001)).retry_after_seconds(),
            2
        );
        assert_eq!(limited(Duration::ZERO).retry_after_seconds(), 1);
    }

    proptest::proptest! {
        /// However requests are spaced, no more are allowed over a span than the burst plus what
        /// the rate refills in it.
        #[test]
        fn never_more_than_the_burst_plus_the_refill(gaps in proptest::collection::vec(0u64..3000, 1..200)) {
            let rate = per_minute(30, 5);
            let start = Instant::now();
            let mut bucket = TokenBucket::full(rate, start);
            let mut now = start;
            let mut allowed = 0u32;
            for gap in gaps {
                now += Duration::from_millis(gap);
                if bucket.try_take(now).is_ok() {
                    allowed += 1;
                }
            }
            let refilled = (now - start).as_secs_f64() * rate.per_second;
            proptest::prop_assert!(f64::from(allowed) <= f64::from(rate.burst) + refilled + 1e-9);
        }
    }
}
