//! The webhook as the API returns it: the flat JSON of the platform's Webhook object, never a
//! stored secret. The one exception is made by the API, not here: the answer to the write that
//! generated a `standard_webhooks` webhook's secret carries it, once.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{timestamp, OidcAuthMethod, Webhook};
use crate::signing::SignatureFormat;

/// The webhook as the API returns it: never `oidc_client_secret` or a previous secret, and
/// `secret` only in the answer to the create or update that generated it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[schema(as = Webhook)]
pub struct WebhookView {
    /// Always `webhook`.
    #[schema(value_type = String)]
    pub object: &'static str,
    pub id: Uuid,
    pub url: String,
    pub enabled_events: Vec<String>,
    pub include: Option<String>,
    pub disabled_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub oidc_auth_method: Option<OidcAuthMethod>,
    pub oidc_client_id: Option<String>,
    pub oidc_token_endpoint: Option<String>,
    pub oidc_resource_uri: Option<String>,
    pub oidc_scope: Option<String>,
    pub oidc_access_token_ttl_seconds: Option<i64>,
    /// `platform` or `standard_webhooks`.
    #[schema(value_type = String)]
    pub signature_format: SignatureFormat,
    /// Only in the answer to the create or update that generated the secret of a
    /// `standard_webhooks` webhook (`whsec_` and base64): the one time a secret is shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, nullable = false)]
    pub secret: Option<String>,
}

impl From<&Webhook> for WebhookView {
    fn from(webhook: &Webhook) -> Self {
        let oidc = webhook.oidc.as_ref();
        WebhookView {
            object: "webhook",
            id: webhook.id,
            url: webhook.url.as_str().to_string(),
            enabled_events: webhook.enabled_events.event_types().to_vec(),
            include: webhook.include.text().map(str::to_string),
            disabled_at: webhook.disabled_at.map(timestamp),
            created_at: timestamp(webhook.created_at),
            updated_at: timestamp(webhook.updated_at),
            oidc_auth_method: oidc.map(|o| o.method),
            oidc_client_id: oidc.map(|o| o.client_id.clone()),
            oidc_token_endpoint: oidc.map(|o| o.token_endpoint.as_str().to_string()),
            oidc_resource_uri: oidc.and_then(|o| o.resource.clone()),
            oidc_scope: oidc.and_then(|o| o.scope.clone()),
            oidc_access_token_ttl_seconds: oidc.map(|o| ttl_seconds(o.access_token_ttl)),
            signature_format: webhook.signature_format,
            // Shown only by the API, for a secret it generated (never a stored one).
            secret: None,
        }
    }
}

/// Whole seconds, as the API and the row keep the TTL (at most a day, so it always fits).
pub(super) fn ttl_seconds(ttl: std::time::Duration) -> i64 {
    i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)
}
