//! The event parser as it was before events were read without a tree of values: every JSON
//! value parsed into a `serde_json::Value`, the body serialized back from it. Kept as the
//! reference the property tests hold the parser to: the same events accepted, the same poison
//! reasons, the same headers, and bodies that are the same JSON.

use serde_json::{Map, Value};

use crate::{event::is_header_safe, filter::Include};

pub struct Event {
    pub id: String,
    pub event_type: String,
    envelope: Map<String, Value>,
}

/// The poison reason's code, or the event.
pub fn parse(body: &[u8], max_bytes: usize) -> Result<Event, &'static str> {
    if body.len() > max_bytes {
        return Err("too_large");
    }
    let value: Value = serde_json::from_slice(body).map_err(|_| "invalid_json")?;
    let Value::Object(envelope) = value else {
        return Err("invalid_event");
    };
    let text = |key: &str| match envelope.get(key) {
        Some(Value::String(s)) if is_header_safe(s) => Some(s.clone()),
        _ => None,
    };
    let (Some(id), Some(event_type)) = (text("id"), text("type")) else {
        return Err("invalid_event");
    };
    if !matches!(
        envelope.get("data").and_then(|d| d.get("object")),
        Some(Value::Object(_))
    ) {
        return Err("invalid_event");
    }
    Ok(Event {
        id,
        event_type,
        envelope,
    })
}

impl Event {
    fn object(&self) -> Map<String, Value> {
        self.envelope["data"]["object"]
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    pub fn correlation_id(&self) -> Option<String> {
        let object = self.object();
        let non_empty = |key: &str| match object.get(key) {
            Some(Value::String(s)) if is_header_safe(s) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        non_empty("external_id").or_else(|| non_empty("id"))
    }

    /// The body as JSON.
    pub fn body(&self, include: &Include) -> Value {
        let mut envelope = self.envelope.clone();
        if let Include::Scalars(_) = include {
            let association = |value: &Value| match value {
                Value::Object(_) => true,
                Value::Array(items) => items.iter().any(Value::is_object),
                _ => false,
            };
            let projected: Map<String, Value> = self
                .object()
                .into_iter()
                .filter(|(key, value)| include.keeps(key, association(value)))
                .collect();
            let mut data: Map<String, Value> = envelope["data"]
                .as_object()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|(key, _)| key != "object")
                .collect();
            data.insert("object".into(), Value::Object(projected));
            envelope.insert("data".into(), Value::Object(data));
        }
        Value::Object(envelope)
    }
}
