//! The webhook: what a customer registered, held parsed — its URL, event filter, `include`
//! setting and OAuth settings each in the type that says what it means — so a delivery never
//! parses them again.
//!
//! Two flat forms surround it, each converted in one place: [`FlatWebhook`] (the stored row's
//! columns, and what the API's draft becomes once its rules pass) and [`WebhookView`] (the API's
//! answer). `draft` holds the API's write model and its validation rules.

mod draft;
mod flat;
mod oidc_rules;
mod parts;
mod signing_rules;
#[cfg(test)]
mod signing_tests;
#[cfg(test)]
mod tests;
mod view;

use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

pub use draft::{Draft, FieldError, UrlRules, WebhookPatch};
pub use flat::FlatWebhook;
pub use parts::{EndpointUrl, IncludeSetting, OidcAuthMethod, OidcSettings};
pub use signing_rules::Rotation;
pub use view::WebhookView;

use crate::{
    filter::EventFilter,
    secret::Secret,
    signing::{SignatureFormat, StandardKey},
};

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
    /// Which signatures deliveries carry besides the platform's header.
    pub signature_format: SignatureFormat,
    /// The secret a PATCH replaced, still signing beside `secret` until its overlap ends.
    pub previous_secret: Option<PreviousSecret>,
    /// The Standard Webhooks keys of `secret` and `previous_secret`, decoded once when the
    /// webhook is built rather than at every delivery; only for `standard_webhooks`. Derived:
    /// built in one place, `TryFrom<FlatWebhook>`, from the fields above.
    pub standard_keys: StandardKeys,
}

/// A replaced secret and when it stops signing (the rotation's overlap,
/// `signature.rotation_overlap`, after the change).
#[derive(Debug, Clone, PartialEq)]
pub struct PreviousSecret {
    pub secret: Secret,
    pub until: DateTime<Utc>,
}

/// The decoded keys a `standard_webhooks` delivery signs with. A key is absent when its secret
/// is (or is not a Standard Webhooks key: a previous secret from before the format was chosen).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StandardKeys {
    pub current: Option<StandardKey>,
    pub previous: Option<StandardKey>,
}

impl Webhook {
    /// Enabled: `disabled_at` unset or still in the future.
    pub fn is_enabled_at(&self, now: DateTime<Utc>) -> bool {
        self.disabled_at.is_none_or(|at| at > now)
    }

    pub fn subscribes(&self, event_type: &str) -> bool {
        self.enabled_events.subscribes(event_type)
    }

    /// The previous secret while it still signs: only before its overlap ends.
    pub fn previous_secret_at(&self, now: DateTime<Utc>) -> Option<&PreviousSecret> {
        self.previous_secret.as_ref().filter(|p| now < p.until)
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
