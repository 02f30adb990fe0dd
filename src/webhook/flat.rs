//! The flat form of a webhook: one plain value per stored column (secrets in plain text; the
//! store encrypts them). The store reads and writes rows through it, and the API's draft becomes
//! a [`Webhook`] through it once its rules pass, so a webhook is built in this one place.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    draft::FieldError, signing_rules::standard_keys, view::ttl_seconds, EndpointUrl,
    IncludeSetting, OidcAuthMethod, OidcSettings, PreviousSecret, Webhook,
};
use crate::{filter::EventFilter, secret::Secret, signing::SignatureFormat};

/// A webhook's columns, unparsed.
#[derive(Debug, Clone, PartialEq)]
pub struct FlatWebhook {
    pub id: Uuid,
    pub account_id: String,
    pub url: String,
    pub secret: Option<Secret>,
    pub enabled_events: Vec<String>,
    pub include: Option<String>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub oidc_auth_method: Option<OidcAuthMethod>,
    pub oidc_client_id: Option<String>,
    pub oidc_client_secret: Option<Secret>,
    pub oidc_token_endpoint: Option<String>,
    pub oidc_resource_uri: Option<String>,
    pub oidc_scope: Option<String>,
    pub oidc_access_token_ttl_seconds: Option<i64>,
    pub signature_format: SignatureFormat,
    pub previous_secret: Option<PreviousSecret>,
}

impl From<&Webhook> for FlatWebhook {
    fn from(webhook: &Webhook) -> Self {
        let oidc = webhook.oidc.as_ref();
        FlatWebhook {
            id: webhook.id,
            account_id: webhook.account_id.clone(),
            url: webhook.url.as_str().to_string(),
            secret: webhook.secret.clone(),
            enabled_events: webhook.enabled_events.event_types().to_vec(),
            include: webhook.include.text().map(str::to_string),
            disabled_at: webhook.disabled_at,
            created_at: webhook.created_at,
            updated_at: webhook.updated_at,
            oidc_auth_method: oidc.map(|o| o.method),
            oidc_client_id: oidc.map(|o| o.client_id.clone()),
            oidc_client_secret: oidc.and_then(|o| o.client_secret.clone()),
            oidc_token_endpoint: oidc.map(|o| o.token_endpoint.as_str().to_string()),
            oidc_resource_uri: oidc.and_then(|o| o.resource.clone()),
            oidc_scope: oidc.and_then(|o| o.scope.clone()),
            oidc_access_token_ttl_seconds: oidc.map(|o| ttl_seconds(o.access_token_ttl)),
            signature_format: webhook.signature_format,
            previous_secret: webhook.previous_secret.clone(),
        }
    }
}

/// Parses each column; the first that does not parse is the error. The draft's rules are
/// stricter (URL schemes and addresses, lengths): a new value passes them first.
impl TryFrom<FlatWebhook> for Webhook {
    type Error = FieldError;

    fn try_from(flat: FlatWebhook) -> Result<Self, FieldError> {
        let oidc = flat.oidc_settings()?;
        let standard_keys = standard_keys(
            flat.signature_format,
            flat.secret.as_ref(),
            flat.previous_secret.as_ref(),
        )?;
        Ok(Webhook {
            id: flat.id,
            url: EndpointUrl::parse(flat.url)
                .map_err(|e| FieldError::new("url", format!("is not a valid URL ({e})")))?,
            secret: flat.secret,
            enabled_events: EventFilter::parse(flat.enabled_events)
                .map_err(|e| FieldError::new("enabled_events", e.to_string()))?,
            include: IncludeSetting::parse(flat.include)
                .map_err(|e| FieldError::new("include", e.0))?,
            disabled_at: flat.disabled_at,
            created_at: flat.created_at,
            updated_at: flat.updated_at,
            oidc,
            account_id: flat.account_id,
            signature_format: flat.signature_format,
            previous_secret: flat.previous_secret,
            standard_keys,
        })
    }
}

impl FlatWebhook {
    /// The OAuth settings: none without a method, and with one, a complete set.
    fn oidc_settings(&self) -> Result<Option<OidcSettings>, FieldError> {
        let Some(method) = self.oidc_auth_method else {
            return match self.oidc_fields_given().next() {
                Some(field) => Err(FieldError::new(field, "requires oidc_auth_method")),
                None => Ok(None),
            };
        };
        let required = |field: &'static str| {
            FieldError::new(
                field,
                format!(
                    "is required when oidc_auth_method is \"{}\"",
                    method.as_str()
                ),
            )
        };
        let client_secret = match method {
            OidcAuthMethod::ClientSecret => Some(
                self.oidc_client_secret
                    .clone()
                    .ok_or_else(|| required("oidc_client_secret"))?,
            ),
            OidcAuthMethod::PrivateKeyJwt => None,
        };
        let endpoint = self
            .oidc_token_endpoint
            .clone()
            .ok_or_else(|| required("oidc_token_endpoint"))?;
        let ttl = self
            .oidc_access_token_ttl_seconds
            .ok_or_else(|| required("oidc_access_token_ttl_seconds"))?;
        Ok(Some(OidcSettings {
            account_id: self.account_id.clone(),
            method,
            client_id: self
                .oidc_client_id
                .clone()
                .ok_or_else(|| required("oidc_client_id"))?,
            client_secret,
            token_endpoint: EndpointUrl::parse(endpoint).map_err(|e| {
                FieldError::new("oidc_token_endpoint", format!("is not a valid URL ({e})"))
            })?,
            scope: self.oidc_scope.clone(),
            resource: self.oidc_resource_uri.clone(),
            access_token_ttl: Duration::from_secs(u64::try_from(ttl).map_err(|_| {
                FieldError::new("oidc_access_token_ttl_seconds", "must be positive")
            })?),
        }))
    }

    /// The OAuth columns that hold a value.
    fn oidc_fields_given(&self) -> impl Iterator<Item = &'static str> {
        [
            ("oidc_client_id", self.oidc_client_id.is_some()),
            ("oidc_client_secret", self.oidc_client_secret.is_some()),
            ("oidc_token_endpoint", self.oidc_token_endpoint.is_some()),
            ("oidc_resource_uri", self.oidc_resource_uri.is_some()),
            ("oidc_scope", self.oidc_scope.is_some()),
            (
                "oidc_access_token_ttl_seconds",
                self.oidc_access_token_ttl_seconds.is_some(),
            ),
        ]
        .into_iter()
        .filter_map(|(field, given)| given.then_some(field))
    }
}
