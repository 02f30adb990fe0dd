//! `webhook-worker publish`: puts an event on the events exchange as a producer would
//! (persistent, `account_id` header, routing key = the event type), with a publisher confirm, so
//! the README's walk-through needs no hand-written publisher.
//!
//! Without `--file` it publishes a built-in sample of the platform's `business.updated` event (the
//! test fixture) with a fresh id. A message that no queue takes (no worker has declared its
//! queues yet) is reported, not silently dropped.

use std::path::Path;

use anyhow::Context;
use lapin::types::{AMQPValue, FieldTable};

use crate::{
    config::Config,
    queue::{job::ACCOUNT_ID, Names, PublishError, Publisher},
};

/// The sample event, as the platform sends it.
pub const SAMPLE_EVENT: &str = include_str!("../../tests/fixtures/business.updated.json");

/// What was published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub event_id: String,
    pub event_type: String,
    pub exchange: String,
}

/// The event to publish: the file's, or the sample with a fresh id; `event_type` overrides the
/// type.
pub fn prepare(
    file: Option<&Path>,
    event_type: Option<&str>,
) -> anyhow::Result<(Vec<u8>, String, String)> {
    let (text, fresh_id) = match file {
        Some(path) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the event file {}", path.display()))?,
            false,
        ),
        None => (SAMPLE_EVENT.to_string(), true),
    };
    let mut event: serde_json::Value =
        serde_json::from_str(&text).with_context(|| "the event is not valid JSON".to_string())?;
    let object = event
        .as_object_mut()
        .context("the event must be a JSON object")?;
    if fresh_id {
        object.insert("id".into(), uuid::Uuid::new_v4().to_string().into());
    }
    if let Some(event_type) = event_type {
        object.insert("type".into(), event_type.into());
    }
    let id = object
        .get("id")
        .and_then(|v| v.as_str())
        .context("the event has no \"id\" string")?
        .to_string();
    let event_type = object
        .get("type")
        .and_then(|v| v.as_str())
        .context("the event has no \"type\" string (or give --event-type)")?
        .to_string();
    Ok((serde_json::to_vec(&event)?, id, event_type))
}

/// Publishes the event for `account_id` and waits for the broker's confirm.
pub async fn publish(
    config: &Config,
    file: Option<&Path>,
    event_type: Option<&str>,
    account_id: &str,
) -> anyhow::Result<Published> {
    let (body, event_id, event_type) = prepare(file, event_type)?;
    let names = Names::new(&config.amqp.prefix);
    let connection = crate::queue::connect(&config.amqp.url)
        .await
        .context("cannot connect to RabbitMQ (amqp.url)")?;
    let publisher = Publisher::open(&connection).await?;
    // The worker declares the same exchange; declaring it here too lets a producer start first.
    let channel = connection.create_channel().await?;
    crate::queue::topology::declare_exchange(&channel, &names)
        .await
        .context("cannot declare the events exchange")?;
    let mut headers = FieldTable::default();
    headers.insert(ACCOUNT_ID.into(), AMQPValue::LongString(account_id.into()));
    let result = publisher
        .publish(
            &names.events_exchange,
            &event_type,
            &body,
            headers,
            &event_id,
        )
        .await;
    let _ = connection.close(200, "published").await;
    match result {
        Ok(()) => Ok(Published {
            event_id,
            event_type,
            exchange: names.events_exchange,
        }),
        Err(PublishError::Unroutable) => anyhow::bail!(
            "no queue is bound to {} yet, so the event was not kept: start the worker once \
             (it declares its queues), then publish again",
            names.events_exchange
        ),
        Err(error) => Err(error).context("the broker did not take the event"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_gets_a_fresh_id_and_may_get_another_type() {
        let (body, id, event_type) = prepare(None, Some("business.created")).unwrap();
        let (_, other_id, _) = prepare(None, None).unwrap();
        assert_ne!(id, other_id);
        assert_eq!(event_type, "business.created");
        let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(event["id"], id.as_str());
        assert!(event["data"]["object"].is_object());
    }

    #[test]
    fn a_file_that_is_not_an_event_is_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.json");
        std::fs::write(&path, "[1, 2]").unwrap();
        let err = prepare(Some(&path), None).unwrap_err().to_string();
        assert!(err.contains("JSON object"), "{err}");
        let err = prepare(Some(&dir.path().join("missing.json")), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.json"), "{err}");
    }
}
