//! The bench's webhooks, registered straight into the worker's store and registry as the API
//! would (validated; a rotation built as a PATCH of the secret builds it), or stored before the
//! worker starts.

use webhook_worker::{
    app::Application,
    config::Config,
    net::AddressPolicy,
    store::Store,
    webhook::{Draft, Rotation, UrlRules, Webhook, WebhookPatch},
};

use crate::sink;

/// How the healthy webhooks sign (see the module's "signing").
#[derive(Debug, Clone, Copy, Default)]
pub struct Signing {
    /// Created with [`sink::PREVIOUS_SECRET`], then given [`sink::SECRET`] within the overlap.
    pub rotating: bool,
    pub standard: bool,
}

/// Adds a webhook of `account` to the sink's `path`, subscribed to `events` (a type, or `*`).
pub async fn register(
    app: &Application,
    account: &str,
    sink: std::net::SocketAddr,
    path: &str,
    events: &str,
) -> anyhow::Result<()> {
    register_signed(app, account, sink, path, events, Signing::default()).await
}

/// [`register`], signing as `signing` says: a rotated webhook is built as the API builds a
/// PATCH of its secret (the replaced secret signs beside the new one for a day).
pub async fn register_signed(
    app: &Application,
    account: &str,
    sink: std::net::SocketAddr,
    path: &str,
    events: &str,
    signing: Signing,
) -> anyhow::Result<()> {
    let webhook = build(account, sink, path, events, signing)?;
    app.registry().store().insert(&webhook).await?;
    app.registry().upsert(webhook);
    Ok(())
}

/// Stores `webhooks` before the worker starts: it loads them all before it consumes, so no
/// event of a backlog is matched against only some of them.
pub async fn store_before_start(config: &Config, webhooks: &[Webhook]) -> anyhow::Result<()> {
    let store = Store::from_config(config).await?;
    for webhook in webhooks {
        store.insert(webhook).await?;
    }
    store.close().await;
    Ok(())
}

/// A webhook of `account` to the sink's `path`, subscribed to `events`, signing as `signing`
/// says, validated as the API would.
pub fn build(
    account: &str,
    sink: std::net::SocketAddr,
    path: &str,
    events: &str,
    signing: Signing,
) -> anyhow::Result<Webhook> {
    let format = if signing.standard {
        "standard_webhooks"
    } else {
        "platform"
    };
    let first = if signing.rotating {
        sink::PREVIOUS_SECRET
    } else {
        sink::SECRET
    };
    let patch: WebhookPatch = serde_json::from_value(serde_json::json!({
        "url": format!("http://{sink}/{path}"), "enabled_events": [events], "secret": first,
        "signature_format": format,
    }))?;
    let now = chrono::Utc::now();
    let rules = UrlRules {
        allow_http: true,
        addresses: AddressPolicy::new(vec!["127.0.0.0/8".parse()?]),
    };
    let invalid = |e| anyhow::anyhow!("{e:?}");
    let id = uuid::Uuid::new_v4();
    let mut webhook = Draft::default()
        .apply(patch)
        .validate(&rules, id, account, now, now)
        .map_err(invalid)?;
    if signing.rotating {
        let patch: WebhookPatch =
            serde_json::from_value(serde_json::json!({"secret": sink::SECRET}))?;
        let mut draft = Draft::of(&webhook).apply(patch);
        let overlap = std::time::Duration::from_secs(86_400);
        draft.rotate_from(&webhook, Rotation { now, overlap });
        webhook = draft
            .validate(&rules, id, account, now, now)
            .map_err(invalid)?;
    }
    Ok(webhook)
}
