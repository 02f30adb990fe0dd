//! What `listen` checks of a Standard Webhooks delivery besides the platform's signature: the
//! `webhook-signature` (any of its space-separated signatures made with the secret), the
//! `webhook-timestamp` (within the tolerance of now), and replays (a `webhook-id` with a
//! `webhook-timestamp` already accepted: a captured delivery sent again; a genuine retry carries
//! a new timestamp, so it is a repeat, not a replay).
//!
//! The set of accepted deliveries stays bounded: an entry older than the tolerance is dropped,
//! as the timestamp check alone refuses such a delivery from then on.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use crate::{secret::Secret, signing::StandardKey};

/// The Standard Webhooks headers of a delivery, when it has them.
#[derive(Debug, Clone, Copy)]
pub struct StandardHeaders<'a> {
    pub id: &'a str,
    pub timestamp: &'a str,
    pub signature: &'a str,
}

/// What the `webhook-signature` check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandardCheck {
    Ok,
    Bad,
    /// `--secret` is not a Standard Webhooks secret, so nothing could match.
    NotAStandardSecret,
    NotChecked,
}

impl StandardCheck {
    pub fn word(self) -> &'static str {
        match self {
            StandardCheck::Ok => "ok",
            StandardCheck::Bad => "BAD",
            StandardCheck::NotAStandardSecret => "BAD (--secret is not a whsec_ secret)",
            StandardCheck::NotChecked => "not checked (no --secret)",
        }
    }
}

/// Checks `webhook-signature` with `secret`'s Standard Webhooks key.
pub fn check_standard(
    secret: Option<&Secret>,
    headers: StandardHeaders<'_>,
    body: &[u8],
) -> StandardCheck {
    let Some(secret) = secret else {
        return StandardCheck::NotChecked;
    };
    let Ok(key) = StandardKey::parse(secret.expose()) else {
        return StandardCheck::NotAStandardSecret;
    };
    if key.verifies(headers.signature, headers.id, headers.timestamp, body) {
        StandardCheck::Ok
    } else {
        StandardCheck::Bad
    }
}

/// Why a delivery is refused (answered 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("webhook-timestamp is not Unix seconds")]
    UnreadableTimestamp,
    #[error("webhook-timestamp is {off}s from now, outside the tolerance of {tolerance}s")]
    OutsideTolerance { off: i64, tolerance: u64 },
    #[error("replayed: webhook-id and webhook-timestamp already accepted")]
    Replayed,
}

/// What the replay check says of a delivery it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// The first delivery of this id.
    New,
    /// Another delivery of an id already accepted, with a new timestamp: a retry.
    Repeat,
}

/// The deliveries accepted within the tolerance, by id, with their timestamps.
pub struct ReplayGuard {
    tolerance: Duration,
    seen: Mutex<Seen>,
}

struct Seen {
    timestamps: HashMap<String, Vec<i64>>,
    /// Entries past which the next insert drops what is older than the tolerance: doubling
    /// keeps the dropping amortized O(1) per delivery.
    prune_at: usize,
}

/// Fewest entries before the first drop.
const FIRST_PRUNE: usize = 1024;

impl ReplayGuard {
    pub fn new(tolerance: Duration) -> Self {
        Self {
            tolerance,
            seen: Mutex::new(Seen {
                timestamps: HashMap::new(),
                prune_at: FIRST_PRUNE,
            }),
        }
    }

    /// Accepts a delivery's `id` and `timestamp` at `now` (Unix seconds), or says why not.
    pub fn accept(&self, id: &str, timestamp: &str, now: i64) -> Result<Freshness, Rejection> {
        let at: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| Rejection::UnreadableTimestamp)?;
        let tolerance = i64::try_from(self.tolerance.as_secs()).unwrap_or(i64::MAX);
        let off = now.saturating_sub(at);
        if off.saturating_abs() > tolerance {
            return Err(Rejection::OutsideTolerance {
                off,
                tolerance: self.tolerance.as_secs(),
            });
        }
        // Poisoned only by a panic while held, which nothing here can cause; go on regardless.
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.timestamps.len() >= seen.prune_at {
            let oldest = now.saturating_sub(tolerance);
            seen.timestamps.retain(|_, times| {
                times.retain(|t| *t >= oldest);
                !times.is_empty()
            });
            seen.prune_at = (seen.timestamps.len() * 2).max(FIRST_PRUNE);
        }
        match seen.timestamps.get_mut(id) {
            Some(times) if times.contains(&at) => Err(Rejection::Replayed),
            Some(times) => {
                times.push(at);
                Ok(Freshness::Repeat)
            }
            None => {
                seen.timestamps.insert(id.to_string(), vec![at]);
                Ok(Freshness::New)
            }
        }
    }

    /// Ids held (for the bound's test).
    pub fn len(&self) -> usize {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.timestamps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::{new_standard_secret, standard_signatures};

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn a_signature_by_the_secret_passes_and_any_other_fails() {
        let secret = Secret::new(new_standard_secret());
        let other = Secret::new(new_standard_secret());
        let key = StandardKey::parse(secret.expose()).unwrap();
        let other_key = StandardKey::parse(other.expose()).unwrap();
        let body = br#"{"id":"e1"}"#;
        let signed = |keys: &[&StandardKey]| {
            standard_signatures(keys.iter().copied(), "e1", "1800000000", body)
        };
        let one = signed(&[&key]);
        let rotating = signed(&[&other_key, &key]);
        let headers = |signature| StandardHeaders {
            id: "e1",
            timestamp: "1800000000",
            signature,
        };
        let check = |secret: Option<&Secret>, signature, body: &[u8]| {
            check_standard(secret, headers(signature), body)
        };
        assert_eq!(check(Some(&secret), &one, body), StandardCheck::Ok);
        assert_eq!(check(Some(&secret), &rotating, body), StandardCheck::Ok);
        assert_eq!(check(Some(&other), &one, body), StandardCheck::Bad);
        assert_eq!(check(Some(&secret), &one, b"{}"), StandardCheck::Bad);
        let bytes = Secret::new("whsec_listen_right");
        assert_eq!(
            check(Some(&bytes), &one, body),
            StandardCheck::NotAStandardSecret
        );
        assert_eq!(check(None, &one, body), StandardCheck::NotChecked);
    }

    #[test]
    fn a_timestamp_outside_the_tolerance_is_rejected_either_way() {
        let guard = ReplayGuard::new(Duration::from_secs(300));
        assert_eq!(
            guard.accept("a", &(NOW - 300).to_string(), NOW),
            Ok(Freshness::New)
        );
        assert_eq!(
            guard.accept("b", &(NOW + 300).to_string(), NOW),
            Ok(Freshness::New)
        );
        assert_eq!(
            guard.accept("c", &(NOW - 600).to_string(), NOW),
            Err(Rejection::OutsideTolerance {
                off: 600,
                tolerance: 300
            })
        );
        assert!(matches!(
            guard.accept("d", &(NOW + 301).to_string(), NOW),
            Err(Rejection::OutsideTolerance { off: -301, .. })
        ));
        assert_eq!(
            guard.accept("e", "yesterday", NOW),
            Err(Rejection::UnreadableTimestamp)
        );
    }

    #[test]
    fn the_same_id_and_timestamp_is_a_replay_and_a_new_timestamp_a_repeat() {
        let guard = ReplayGuard::new(Duration::from_secs(300));
        let at = NOW.to_string();
        assert_eq!(guard.accept("evt", &at, NOW), Ok(Freshness::New));
        assert_eq!(guard.accept("evt", &at, NOW + 5), Err(Rejection::Replayed));
        let retry = (NOW + 5).to_string();
        assert_eq!(guard.accept("evt", &retry, NOW + 5), Ok(Freshness::Repeat));
        assert_eq!(
            guard.accept("evt", &retry, NOW + 9),
            Err(Rejection::Replayed)
        );
        assert_eq!(guard.accept("other", &at, NOW + 9), Ok(Freshness::New));
    }

    #[test]
    fn accepted_deliveries_older_than_the_tolerance_are_forgotten() {
        let guard = ReplayGuard::new(Duration::from_secs(300));
        for n in 0..FIRST_PRUNE {
            guard
                .accept(&format!("old-{n}"), &NOW.to_string(), NOW)
                .unwrap();
        }
        // Ten minutes on, every one of them is past the tolerance: the next insert drops them.
        let later = NOW + 600;
        guard.accept("new", &later.to_string(), later).unwrap();
        assert_eq!(guard.len(), 1);
        // And a replay of a forgotten one is still refused, by its timestamp.
        assert!(matches!(
            guard.accept("old-1", &NOW.to_string(), later),
            Err(Rejection::OutsideTolerance { .. })
        ));
    }
}
