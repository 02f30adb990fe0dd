//! What a rotation does to an account's keys, decided from the keys' times alone (no private key
//! is read): a pure function, so the rules can be tested without a database.
//!
//! Rules, in order:
//! - a key whose publication ended (`retire_at <= now`) is deleted;
//! - a *pending* key (published, not yet signing: `signs_from` beyond `now` plus a margin) is
//!   replaced: deleted, as it never signed. The margin covers the replicas' signing caches and
//!   clocks: a key about to sign is treated as signing;
//! - the key signing now, and keys about to sign, keep being published until the new key signs
//!   and `oidc.key_retirement_grace` longer (`retire_at` = new `signs_from` + grace, never earlier
//!   than it was);
//! - older keys, which signed before the current one, keep their end of publication, but beyond
//!   [`MAX_PUBLISHED_KEYS`] (the new key included) the oldest are dropped first. The key signing
//!   now and keys about to sign are never dropped.
//!
//! So a rotation never unpublishes a key that signs or may sign, the new key is published
//! `oidc.key_rotation_delay` before it signs, and however many rotations are asked for, an
//! account publishes at most [`MAX_PUBLISHED_KEYS`] keys (two after a burst: the signer and one
//! pending key).

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::store::{keys::KeyChanges, public_keys::PublicKeyRow};

/// The most keys an account publishes at once, the new key of a rotation included.
pub const MAX_PUBLISHED_KEYS: usize = 10;

/// The times a rotation plans with.
#[derive(Debug, Clone, Copy)]
pub struct RotationTimes {
    pub now: DateTime<Utc>,
    /// When the new key starts signing.
    pub signs_from: DateTime<Utc>,
    /// How long keys it supersedes stay published after that.
    pub grace: Duration,
    /// A key that signs within this of `now` counts as signing (never replaced or dropped).
    pub margin: Duration,
}

impl RotationTimes {
    /// When the keys that sign until the new key does stop being published.
    pub fn previous_retire_at(&self) -> DateTime<Utc> {
        self.signs_from + delta(self.grace)
    }
}

/// The changes to `keys` (an account's stored keys, any order) before the new key is added.
pub fn plan(keys: &[PublicKeyRow], times: RotationTimes) -> KeyChanges {
    let mut changes = KeyChanges::default();
    let horizon = times.now + delta(times.margin);
    let mut live: Vec<&PublicKeyRow> = Vec::new();
    for key in keys {
        let retired = key.retire_at.is_some_and(|at| at <= times.now);
        if retired || key.signs_from > horizon {
            changes.delete.push(key.kid.clone());
        } else {
            live.push(key);
        }
    }
    live.sort_by(|a, b| (a.signs_from, &a.kid).cmp(&(b.signs_from, &b.kid)));
    // The key signing now: the newest whose time has come (or, if none has, the oldest).
    let signer = live
        .iter()
        .rposition(|k| k.signs_from <= times.now)
        .unwrap_or(0);
    let (older, signing) = live.split_at(signer.min(live.len()));
    let retire_at = times.previous_retire_at();
    for key in signing {
        let at = key.retire_at.map_or(retire_at, |at| at.max(retire_at));
        if key.retire_at != Some(at) {
            changes.retire.push((key.kid.clone(), at));
        }
    }
    // Room for the older keys: the cap less the signing ones and the new key.
    let room = MAX_PUBLISHED_KEYS.saturating_sub(signing.len() + 1);
    let dropped = older.len().saturating_sub(room);
    for (i, key) in older.iter().enumerate() {
        if i < dropped {
            changes.delete.push(key.kid.clone());
        } else if key.retire_at.is_none() {
            changes.retire.push((key.kid.clone(), retire_at));
        }
    }
    changes
}

fn delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn times(now: DateTime<Utc>) -> RotationTimes {
        RotationTimes {
            now,
            signs_from: now + TimeDelta::hours(1),
            grace: 24 * HOUR,
            margin: Duration::from_secs(10),
        }
    }

    fn row(kid: &str, signs_from: DateTime<Utc>, retire_at: Option<DateTime<Utc>>) -> PublicKeyRow {
        PublicKeyRow {
            kid: kid.into(),
            public_jwk: None,
            signs_from,
            retire_at,
        }
    }

    /// Applies `plan` and adds the new key, as the store does.
    fn rotate(keys: &mut Vec<PublicKeyRow>, kid: &str, times: RotationTimes) {
        let changes = plan(keys, times);
        keys.retain(|k| !changes.delete.contains(&k.kid));
        for (kid, at) in changes.retire {
            if let Some(key) = keys.iter_mut().find(|k| k.kid == kid) {
                key.retire_at = Some(at);
            }
        }
        keys.push(row(kid, times.signs_from, None));
    }

    fn signer(keys: &[PublicKeyRow], now: DateTime<Utc>) -> String {
        let mut live: Vec<&PublicKeyRow> = keys
            .iter()
            .filter(|k| k.retire_at.is_none_or(|at| at > now))
            .collect();
        live.sort_by_key(|k| k.signs_from);
        live.iter()
            .rev()
            .find(|k| k.signs_from <= now)
            .map(|k| k.kid.clone())
            .unwrap_or_default()
    }

    #[test]
    fn a_burst_of_rotations_replaces_the_pending_key_and_keeps_the_signer() {
        let now = Utc::now();
        let mut keys = vec![row("first", now - TimeDelta::days(3), None)];
        for i in 0..200 {
            let at = now + TimeDelta::milliseconds(i);
            rotate(&mut keys, &format!("k{i}"), times(at));
            let live: Vec<&str> = keys.iter().map(|k| k.kid.as_str()).collect();
            assert_eq!(live, ["first", &format!("k{i}")], "after rotation {i}");
            assert_eq!(signer(&keys, at), "first");
        }
        // The signer stays published until the last pending key signs, plus the grace.
        let last = times(now + TimeDelta::milliseconds(199));
        assert_eq!(keys[0].retire_at, Some(last.previous_retire_at()));
        assert_eq!(signer(&keys, last.signs_from), "k199");
    }

    #[test]
    fn rotations_spread_over_time_publish_at_most_the_cap_and_never_drop_the_signer() {
        let start = Utc::now();
        let mut keys = vec![row("k0", start - TimeDelta::days(1), None)];
        // One rotation every 2 hours: each pending key has signed before the next rotation,
        // and the 24 h grace would keep 12 of them published without the cap.
        for i in 1..=40 {
            let now = start + TimeDelta::hours(2 * i);
            let before = signer(&keys, now);
            rotate(&mut keys, &format!("k{i}"), times(now));
            assert!(keys.len() <= MAX_PUBLISHED_KEYS, "{} keys", keys.len());
            assert!(keys.iter().any(|k| k.kid == before), "the signer is kept");
            assert_eq!(signer(&keys, now), before, "the signer still signs");
            let retire = keys.iter().find(|k| k.kid == before).unwrap().retire_at;
            assert_eq!(retire, Some(times(now).previous_retire_at()));
        }
        // The oldest went first: what is left is the newest keys.
        let kids: Vec<&str> = keys.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids.first(), Some(&"k31"), "{kids:?}");
        assert_eq!(kids.last(), Some(&"k40"));
    }

    #[test]
    fn retired_keys_go_and_a_key_about_to_sign_is_not_replaced() {
        let now = Utc::now();
        let keys = vec![
            row(
                "gone",
                now - TimeDelta::days(2),
                Some(now - TimeDelta::hours(1)),
            ),
            row(
                "signer",
                now - TimeDelta::days(1),
                Some(now + TimeDelta::seconds(5)),
            ),
            row("soon", now + TimeDelta::seconds(5), None),
            row("pending", now + TimeDelta::minutes(30), None),
        ];
        let times = times(now);
        let changes = plan(&keys, times);
        assert_eq!(changes.delete, ["gone", "pending"]);
        let at = times.previous_retire_at();
        assert_eq!(
            changes.retire,
            [("signer".to_string(), at), ("soon".to_string(), at)]
        );
    }

    #[test]
    fn an_end_of_publication_is_never_brought_forward() {
        let now = Utc::now();
        let later = now + TimeDelta::days(30);
        let keys = vec![row("signer", now - TimeDelta::days(1), Some(later))];
        assert_eq!(plan(&keys, times(now)), KeyChanges::default());
    }
}
