//! The write model the API accepts: a partial update, where an explicit `null` clears a field,
//! merged into a [`Draft`] of the whole webhook, and the seed page's validation rules, run on
//! the merged result of every create and update.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use super::{timestamp, EndpointUrl, FlatWebhook, PreviousSecret, Webhook};
use crate::{
    filter::{EventFilter, Include},
    net::AddressPolicy,
    secret::Secret,
};

/// A create or update request: every field optional, `null` clears it. The rules each value
/// must follow are checked on receipt (a 422 names each field at fault).
// Deserialized: a field is `None` when omitted, `Some(None)` when `null`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WebhookRequest)]
pub struct WebhookPatch {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub url: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub secret: Option<Option<Secret>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub disabled_at: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>)]
    pub enabled_events: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub include: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub oidc_auth_method: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub oidc_client_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub oidc_client_secret: Option<Option<Secret>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub oidc_token_endpoint: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub oidc_resource_uri: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub oidc_scope: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    pub oidc_access_token_ttl_seconds: Option<Option<i64>>,
    /// `platform` (the default; `null` sets it again) or `standard_webhooks`. A
    /// `standard_webhooks` webhook's `secret` is a Standard Webhooks secret (`whsec_` and
    /// base64, or the base64 alone); without one, the answer carries a generated `secret`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub signature_format: Option<Option<String>>,
}

/// A field that is present in the JSON: `Some(None)` for `null`, `Some(Some(v))` otherwise.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// One rule broken by one field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field} {message}")]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// What the validation of URLs depends on.
#[derive(Debug, Clone, Default)]
pub struct UrlRules {
    pub allow_http: bool,
    pub addresses: AddressPolicy,
}

/// The unvalidated merged state of a webhook.
#[derive(Debug, Clone, Default)]
pub struct Draft {
    pub url: Option<String>,
    pub secret: Option<Secret>,
    pub disabled_at: Option<String>,
    pub enabled_events: Option<Vec<String>>,
    pub include: Option<String>,
    pub oidc_auth_method: Option<String>,
    pub oidc_client_id: Option<String>,
    pub oidc_client_secret: Option<Secret>,
    pub oidc_token_endpoint: Option<String>,
    pub oidc_resource_uri: Option<String>,
    pub oidc_scope: Option<String>,
    pub oidc_access_token_ttl_seconds: Option<i64>,
    pub signature_format: Option<String>,
    /// Carried from the stored webhook; only [`Draft::rotate_from`] changes it.
    pub previous_secret: Option<PreviousSecret>,
}

fn merge<T>(current: &mut Option<T>, change: Option<Option<T>>) {
    if let Some(value) = change {
        *current = value;
    }
}

impl Draft {
    pub fn of(webhook: &Webhook) -> Self {
        let flat = FlatWebhook::from(webhook);
        Draft {
            url: Some(flat.url),
            secret: flat.secret,
            disabled_at: flat.disabled_at.map(timestamp),
            enabled_events: Some(flat.enabled_events),
            include: flat.include,
            oidc_auth_method: flat.oidc_auth_method.map(|m| m.as_str().to_string()),
            oidc_client_id: flat.oidc_client_id,
            oidc_client_secret: flat.oidc_client_secret,
            oidc_token_endpoint: flat.oidc_token_endpoint,
            oidc_resource_uri: flat.oidc_resource_uri,
            oidc_scope: flat.oidc_scope,
            oidc_access_token_ttl_seconds: flat.oidc_access_token_ttl_seconds,
            signature_format: Some(flat.signature_format.as_str().to_string()),
            previous_secret: flat.previous_secret,
        }
    }

    pub fn apply(mut self, patch: WebhookPatch) -> Self {
        merge(&mut self.url, patch.url);
        merge(&mut self.secret, patch.secret);
        merge(&mut self.disabled_at, patch.disabled_at);
        merge(&mut self.enabled_events, patch.enabled_events);
        merge(&mut self.include, patch.include);
        merge(&mut self.oidc_auth_method, patch.oidc_auth_method);
        merge(&mut self.oidc_client_id, patch.oidc_client_id);
        merge(&mut self.oidc_client_secret, patch.oidc_client_secret);
        merge(&mut self.oidc_token_endpoint, patch.oidc_token_endpoint);
        merge(&mut self.oidc_resource_uri, patch.oidc_resource_uri);
        merge(&mut self.oidc_scope, patch.oidc_scope);
        merge(
            &mut self.oidc_access_token_ttl_seconds,
            patch.oidc_access_token_ttl_seconds,
        );
        merge(&mut self.signature_format, patch.signature_format);
        self
    }

    /// Checks every rule and builds the webhook, or lists every broken rule.
    pub fn validate(
        self,
        rules: &UrlRules,
        id: Uuid,
        account_id: &str,
        created_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Webhook, Vec<FieldError>> {
        let mut errors = Vec::new();
        match &self.url {
            None => errors.push(FieldError::new("url", "is required")),
            Some(url) => {
                if let Err(e) = check_url(url, rules) {
                    errors.push(FieldError::new("url", e.0));
                }
            }
        }
        match &self.enabled_events {
            None => errors.push(FieldError::new("enabled_events", "is required")),
            Some(events) => {
                if let Err(e) = EventFilter::parse(events.clone()) {
                    errors.push(FieldError::new("enabled_events", e.to_string()));
                }
            }
        }
        if let Some(Err(e)) = self.include.as_deref().map(|i| Include::parse(Some(i))) {
            errors.push(FieldError::new("include", e.0));
        }
        let disabled_at = match self
            .disabled_at
            .as_deref()
            .map(DateTime::parse_from_rfc3339)
        {
            None => None,
            Some(Ok(at)) => Some(at.with_timezone(&Utc)),
            Some(Err(_)) => {
                errors.push(FieldError::new(
                    "disabled_at",
                    "must be an RFC 3339 timestamp, e.g. 2026-01-31T12:00:00Z",
                ));
                None
            }
        };
        let method = self.check_oidc(rules, &mut errors);
        let signature_format = self.check_signing(&mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        Webhook::try_from(FlatWebhook {
            id,
            account_id: account_id.to_string(),
            url: self.url.unwrap_or_default(),
            secret: self.secret,
            enabled_events: self.enabled_events.unwrap_or_default(),
            include: self.include,
            disabled_at,
            created_at,
            updated_at: now,
            oidc_auth_method: method,
            oidc_client_id: self.oidc_client_id,
            oidc_client_secret: self.oidc_client_secret,
            oidc_token_endpoint: self.oidc_token_endpoint,
            oidc_resource_uri: self.oidc_resource_uri,
            oidc_scope: self.oidc_scope,
            oidc_access_token_ttl_seconds: self.oidc_access_token_ttl_seconds,
            signature_format,
            previous_secret: self.previous_secret,
        })
        .map_err(|error| vec![error])
    }
}

/// Why a URL breaks the rules: the message a 422 shows for its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(super) struct UrlError(pub(super) String);

pub(super) fn check_url(text: &str, rules: &UrlRules) -> Result<(), UrlError> {
    let refuse = |message: String| Err(UrlError(message));
    if text.len() > 2048 {
        return refuse("must be at most 2048 characters".into());
    }
    let url =
        EndpointUrl::parse(text).map_err(|e| UrlError(format!("is not a valid URL ({e})")))?;
    let url = url.url();
    match url.scheme() {
        "https" => {}
        "http" if rules.allow_http => {}
        "http" => {
            return refuse("must use https (http is not allowed by delivery.allow_http)".into())
        }
        other => return refuse(format!("must use https, not {other}")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return refuse("must not contain credentials; use secret or the OIDC settings".into());
    }
    let ip = match url.host() {
        None => return refuse("must have a host".into()),
        Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
        Some(url::Host::Domain(_)) => None,
    };
    if let Some(ip) = ip.filter(|ip| !rules.addresses.permits(*ip)) {
        return refuse(format!(
            "points to a non-public address ({ip}), which is not allowed"
        ));
    }
    Ok(())
}
