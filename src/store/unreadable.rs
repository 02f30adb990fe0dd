//! What can still be read of a webhook row that cannot be decoded whole (a secret under another
//! key, a value from a newer version): its id, account, enabled events and `disabled_at`.
//! That is enough to match events, so the registry keeps such a row as a placeholder and an event
//! for it becomes a dead letter (`webhook_unreadable`) instead of being acked as "no webhook
//! subscribed". No secret column is read here.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::{any::AnyRow, Row};
use uuid::Uuid;

/// The readable columns of an undecodable webhook row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableWebhook {
    pub id: Uuid,
    pub account_id: String,
    pub enabled_events: Vec<String>,
    pub disabled_at: Option<DateTime<Utc>>,
}

impl UnreadableWebhook {
    /// The routing columns of `row`, or `None` when even they cannot be read (then nothing can
    /// be matched to the row: it is skipped, as before).
    pub(super) fn read(row: &AnyRow) -> Option<Self> {
        let id: String = row.try_get("id").ok()?;
        let events: String = row.try_get("enabled_events").ok()?;
        let disabled_at = match row.try_get::<Option<String>, _>("disabled_at").ok()? {
            None => None,
            Some(text) => Some(
                DateTime::parse_from_rfc3339(&text)
                    .ok()?
                    .with_timezone(&Utc),
            ),
        };
        Some(Self {
            id: Uuid::from_str(&id).ok()?,
            account_id: row.try_get("account_id").ok()?,
            enabled_events: serde_json::from_str(&events).ok()?,
            disabled_at,
        })
    }

    pub fn is_enabled_at(&self, now: DateTime<Utc>) -> bool {
        self.disabled_at.is_none_or(|at| at > now)
    }

    pub fn subscribes(&self, event_type: &str) -> bool {
        crate::filter::subscribes(&self.enabled_events, event_type)
    }
}
