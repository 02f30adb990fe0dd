//! The webhook: what a customer registered, held parsed — its URL, event filter, `include`
//! setting and OAuth settings each in the type that says what it means — so a delivery never
//! parses them again.
//!
//! Two flat forms surround it, each converted in one place: [`FlatWebhook`] (the stored row's
//! columns, and what the API's draft becomes once its rules pass) and [`WebhookView`] (the API's
//! answer). `draft` holds the API's write model and its validation rules.

mod draft;
mod flat;
mod parts;
#[cfg(test)]
mod tests;
mod view;

use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

pub use draft::{Draft, FieldError, UrlRules, WebhookPatch};
pub use flat::FlatWebhook;
pub use parts::{EndpointUrl, IncludeSetting, OidcAuthMethod, OidcSettings};
pub use view::WebhookView;

use crate::{filter::EventFilter, secret::Secret};

/// A registered webhook, secrets included. Only [`WebhookView`] leaves the process.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub id: Uuid,
    pub account_id: String,
    pub url: EndpointUrl,
    pub secret: Option<Secret>,
    pub enabled_events: EventFilter,
    pub include: IncludeSetting,
    pub disabled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Present when deliveries carry an OAuth access token.
    pub oidc: Option<OidcSettings>,
}

impl Webhook {
    /// Enabled: `disabled_at` unset or still in the future.
    pub fn is_enabled_at(&self, now: DateTime<Utc>) -> bool {
        self.disabled_at.is_none_or(|at| at > now)
    }

    pub fn subscribes(&self, event_type: &str) -> bool {
        self.enabled_events.subscribes(event_type)
    }

    /// What the API answers with.
    pub fn view(&self) -> WebhookView {
        WebhookView::from(self)
    }
}

/// RFC 3339 in UTC with milliseconds, as the platform writes timestamps.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}
