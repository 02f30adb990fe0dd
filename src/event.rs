//! The event message producers publish: `{"object":"event","id":…,"type":…,"created_at":…,
//! "data":{"object":{…}}}`. Parsing is the poison check: what fails here is dead-lettered with
//! the [`PoisonReason`] and never retried.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::filter::Include;

#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub event_type: String,
    envelope: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoisonReason {
    // The messages are the detail; `code()` is the reason. Logs and dead letters carry both,
    // so neither repeats the other.
    #[error("{size} bytes, over the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("not JSON: {0}")]
    InvalidJson(String),
    #[error("not an event: {0}")]
    InvalidEvent(&'static str),
}

impl PoisonReason {
    /// A short machine-readable code for headers and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            PoisonReason::TooLarge { .. } => "too_large",
            PoisonReason::InvalidJson(_) => "invalid_json",
            PoisonReason::InvalidEvent(_) => "invalid_event",
        }
    }
}

impl Event {
    pub fn parse(body: &[u8], max_bytes: usize) -> Result<Self, PoisonReason> {
        if body.len() > max_bytes {
            return Err(PoisonReason::TooLarge {
                size: body.len(),
                limit: max_bytes,
            });
        }
        let value: Value =
            serde_json::from_slice(body).map_err(|e| PoisonReason::InvalidJson(e.to_string()))?;
        let Value::Object(envelope) = value else {
            return Err(PoisonReason::InvalidEvent("the event is not a JSON object"));
        };
        // Both travel in HTTP headers: short and printable, or the event is poison.
        let id = match envelope.get("id") {
            Some(Value::String(id)) if is_header_safe(id) => id.clone(),
            _ => {
                return Err(PoisonReason::InvalidEvent(
                    "`id` is missing or not 1 to 255 printable characters",
                ))
            }
        };
        let event_type = match envelope.get("type") {
            Some(Value::String(t)) if is_header_safe(t) => t.clone(),
            _ => {
                return Err(PoisonReason::InvalidEvent(
                    "`type` is missing or not 1 to 255 printable characters",
                ))
            }
        };
        if !matches!(
            envelope.get("data").and_then(|d| d.get("object")),
            Some(Value::Object(_))
        ) {
            return Err(PoisonReason::InvalidEvent(
                "`data.object` is missing or not an object",
            ));
        }
        Ok(Event {
            id,
            event_type,
            envelope,
        })
    }

    /// The resource the event is about. Present by construction.
    pub fn object(&self) -> &Map<String, Value> {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        self.envelope
            .get("data")
            .and_then(|d| d.get("object"))
            .and_then(Value::as_object)
            .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
    }

    /// `data.object.external_id` when present and non-empty, else `data.object.id`.
    pub fn correlation_id(&self) -> Option<String> {
        let object = self.object();
        let non_empty = |key: &str| match object.get(key) {
            Some(Value::String(s)) if is_header_safe(s) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        non_empty("external_id").or_else(|| non_empty("id"))
    }

    /// The delivery body for one `include` setting: the envelope untouched, `data.object`
    /// projected, compact JSON.
    pub fn body(&self, include: &Include) -> Body {
        // Serializing maps of `Value`s cannot fail.
        let bytes = match include {
            Include::All => serde_json::to_vec(&self.envelope),
            Include::Scalars(_) => {
                // Copy only what changes: the envelope's other fields are borrowed.
                let mut data: Map<String, Value> = Map::new();
                if let Some(Value::Object(original)) = self.envelope.get("data") {
                    for (key, value) in original {
                        if key != "object" {
                            data.insert(key.clone(), value.clone());
                        }
                    }
                }
                data.insert(
                    "object".into(),
                    Value::Object(include.project(self.object())),
                );
                let shaped: Vec<(&String, &Value)> = self.envelope.iter().collect();
                serde_json::to_vec(&ShapedEnvelope {
                    fields: &shaped,
                    data: &Value::Object(data),
                })
            }
        };
        bytes.unwrap_or_default().into()
    }
}

/// The envelope with `data` replaced, serialized in the original key order.
struct ShapedEnvelope<'a> {
    fields: &'a [(&'a String, &'a Value)],
    data: &'a Value,
}

impl serde::Serialize for ShapedEnvelope<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.fields.len()))?;
        for (key, value) in self.fields {
            if key.as_str() == "data" {
                map.serialize_entry(key, self.data)?;
            } else {
                map.serialize_entry(key, value)?;
            }
        }
        map.end()
    }
}

/// Non-empty, at most 255 bytes, no control characters.
pub fn is_header_safe(text: &str) -> bool {
    !text.is_empty() && text.len() <= 255 && !text.chars().any(char::is_control)
}

/// A delivery body, shared (not copied) by every webhook with the same `include` setting.
pub type Body = bytes::Bytes;

/// Bodies of one event, each built once per distinct `include` setting (as spelled).
#[derive(Default)]
pub struct Bodies {
    by_include: HashMap<String, Body>,
}

impl Bodies {
    /// The body for a webhook's `include` setting as stored. The setting is parsed only the
    /// first time this event meets it, so a hundred webhooks sharing one setting cost one parse
    /// and one serialization.
    pub fn get(&mut self, event: &Event, include: Option<&str>) -> Body {
        let text = include.unwrap_or("*");
        if let Some(body) = self.by_include.get(text) {
            return body.clone();
        }
        let body = event.body(&Include::parse_stored(Some(text)));
        self.by_include.insert(text.to_string(), body.clone());
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../tests/fixtures/business.updated.json");

    #[test]
    fn the_fixture_parses() {
        let event = Event::parse(FIXTURE.as_bytes(), 1 << 20).unwrap();
        assert_eq!(event.event_type, "business.updated");
        assert_eq!(event.correlation_id().as_deref(), Some("cust-42817"));
    }

    #[test]
    fn poison_is_classified() {
        assert_eq!(Event::parse(b"{", 100).unwrap_err().code(), "invalid_json");
        assert_eq!(
            Event::parse(b"[]", 100).unwrap_err().code(),
            "invalid_event"
        );
        assert_eq!(
            Event::parse(br#"{"id":"1","type":"t","data":{}}"#, 100)
                .unwrap_err()
                .code(),
            "invalid_event"
        );
        assert_eq!(
            Event::parse(br#"{"type":"t","data":{"object":{}}}"#, 100)
                .unwrap_err()
                .code(),
            "invalid_event"
        );
        assert_eq!(
            Event::parse(&[b' '; 101], 100).unwrap_err().code(),
            "too_large"
        );
    }

    #[test]
    fn correlation_id_falls_back_to_the_object_id() {
        let event = Event::parse(
            br#"{"id":"e","type":"t","data":{"object":{"id":"b","external_id":""}}}"#,
            1000,
        )
        .unwrap();
        assert_eq!(event.correlation_id().as_deref(), Some("b"));
    }

    #[test]
    fn the_body_keeps_the_envelope_and_projects_the_object() {
        let event = Event::parse(FIXTURE.as_bytes(), 1 << 20).unwrap();
        let body: Value =
            serde_json::from_slice(&event.body(&Include::parse(Some("identifiers")).unwrap()))
                .unwrap();
        assert_eq!(body["id"], "f215a707-655e-400f-84e6-fbb949f5612a");
        assert_eq!(body["created_at"], "2026-11-27T10:02:44.203Z");
        assert_eq!(body["data"]["object"]["name"], "Northwind Trading LLC");
        assert!(body["data"]["object"].get("addresses").is_none());
        assert!(body["data"]["object"].get("tags").is_some());
    }

    #[test]
    fn bodies_are_built_once_per_include_setting() {
        let event = Event::parse(FIXTURE.as_bytes(), 1 << 20).unwrap();
        let mut bodies = Bodies::default();
        let all = bodies.get(&event, None);
        let star = bodies.get(&event, Some("*"));
        let ids = bodies.get(&event, Some("identifiers"));
        let ids_again = bodies.get(&event, Some("identifiers"));
        assert_eq!(all.as_ptr(), star.as_ptr(), "absent and * share one body");
        assert_eq!(ids.as_ptr(), ids_again.as_ptr(), "built once, then shared");
        assert!(ids.len() < all.len());
    }
}
