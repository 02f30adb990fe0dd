//! Which events a webhook receives (`enabled_events`) and what of the resource it receives
//! (`include`).
//!
//! Both are parsed once, when a webhook is built ([`EventFilter`], [`Include`]); the pipeline
//! shapes each event once per distinct setting rather than once per webhook (see
//! `event::Bodies`).

use std::collections::BTreeSet;

/// Whether a webhook subscribed to `event_type` (`"*"` subscribes to everything).
pub fn subscribes(enabled_events: &[String], event_type: &str) -> bool {
    enabled_events.iter().any(|e| e == "*" || e == event_type)
}

/// The event types a webhook receives (`enabled_events`): 1 to 256 types, each 1 to 128
/// characters without spaces, `"*"` for all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFilter(Vec<String>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EventFilterError(String);

impl EventFilter {
    pub fn parse(events: Vec<String>) -> Result<Self, EventFilterError> {
        if events.is_empty() {
            return Err(EventFilterError(
                "must list at least one event type (\"*\" for all)".into(),
            ));
        }
        if events.len() > 256 {
            return Err(EventFilterError("must list at most 256 event types".into()));
        }
        if let Some(bad) = events.iter().find(|e| {
            e.is_empty() || e.len() > 128 || e.chars().any(|c| c.is_whitespace() || c.is_control())
        }) {
            return Err(EventFilterError(format!(
                "{bad:?} is not an event type (1 to 128 characters, no spaces)"
            )));
        }
        Ok(Self(events))
    }

    /// Every event type (`["*"]`).
    pub fn all() -> Self {
        Self(vec!["*".into()])
    }

    pub fn subscribes(&self, event_type: &str) -> bool {
        subscribes(&self.0, event_type)
    }

    /// The types as given, in order.
    pub fn event_types(&self) -> &[String] {
        &self.0
    }
}

/// The parsed `include` setting.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Include {
    /// The whole resource (absent, empty or `"*"`).
    All,
    /// The top-level scalar fields plus these associations (`"identifiers"` is the empty set).
    Scalars(BTreeSet<String>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IncludeError(pub String);

impl Include {
    pub fn parse(text: Option<&str>) -> Result<Self, IncludeError> {
        let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
            return Ok(Include::All);
        };
        let mut associations = BTreeSet::new();
        for item in text.split(',').map(str::trim) {
            match item {
                "" => {
                    return Err(IncludeError(
                        "must be a comma-delimited list of names without empty items".into(),
                    ))
                }
                "*" => return Ok(Include::All),
                "identifiers" => {}
                name if name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.') =>
                {
                    associations.insert(name.to_string());
                }
                other => {
                    return Err(IncludeError(format!(
                        "{other:?} is not a valid association name (letters, digits, '_', '-', '.')"
                    )))
                }
            }
        }
        Ok(Include::Scalars(associations))
    }

    /// Whether the resource's top-level field `key` stays in the body. `association`: its value
    /// is an object, or an array holding at least one object; everything else (strings,
    /// numbers, booleans, null, arrays of scalars, empty arrays) is a scalar field, always kept.
    pub fn keeps(&self, key: &str, association: bool) -> bool {
        match self {
            Include::All => true,
            Include::Scalars(names) => !association || names.contains(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Map, Value};

    use super::*;

    /// The resource as `include` shapes it, key order kept.
    fn project(include: &Include, object: &Map<String, Value>) -> Map<String, Value> {
        let association = |value: &Value| match value {
            Value::Object(_) => true,
            Value::Array(items) => items.iter().any(Value::is_object),
            _ => false,
        };
        object
            .iter()
            .filter(|(key, value)| include.keeps(key, association(value)))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }

    fn object() -> Map<String, Value> {
        json!({
            "id": "b1", "external_id": "x", "name": "N", "status": "open",
            "tags": ["a", "b"], "liens": [], "monitor": null, "score": 3, "active": true,
            "addresses": [{"city": "SF"}], "tin": {"tin": "1"}, "people": [{"name": "P"}],
            "mixed": [1, {"a": 1}]
        })
        .as_object()
        .unwrap()
        .clone()
    }

    fn keys(map: &Map<String, Value>) -> Vec<&str> {
        map.keys().map(String::as_str).collect()
    }

    #[test]
    fn absent_empty_and_star_include_everything() {
        for text in [None, Some(""), Some("  "), Some("*"), Some("addresses,*")] {
            assert_eq!(Include::parse(text).unwrap(), Include::All, "{text:?}");
        }
        assert_eq!(project(&Include::All, &object()), object());
    }

    #[test]
    fn identifiers_keeps_only_scalar_fields() {
        let shaped = project(&Include::parse(Some("identifiers")).unwrap(), &object());
        assert_eq!(
            keys(&shaped),
            [
                "id",
                "external_id",
                "name",
                "status",
                "tags",
                "liens",
                "monitor",
                "score",
                "active"
            ]
        );
    }

    #[test]
    fn a_list_adds_named_associations_and_ignores_unknown_names() {
        let include = Include::parse(Some(" addresses , tin, nonexistent")).unwrap();
        let shaped = project(&include, &object());
        assert!(shaped.contains_key("addresses"));
        assert!(shaped.contains_key("tin"));
        assert!(!shaped.contains_key("people"));
        assert!(!shaped.contains_key("mixed"));
        assert!(shaped.contains_key("tags"));
    }

    #[test]
    fn identifiers_in_a_list_adds_nothing() {
        assert_eq!(
            Include::parse(Some("identifiers,addresses")).unwrap(),
            Include::parse(Some("addresses")).unwrap()
        );
    }

    #[test]
    fn bad_syntax_is_rejected() {
        assert!(Include::parse(Some("addresses,,tin")).is_err());
        assert!(Include::parse(Some("addr esses")).is_err());
        assert!(Include::parse(Some("a;b")).is_err());
    }

    #[test]
    fn event_types_match_exactly_or_by_star() {
        let events = vec!["business.updated".to_string()];
        assert!(subscribes(&events, "business.updated"));
        assert!(!subscribes(&events, "business.created"));
        assert!(subscribes(&["*".to_string()], "anything"));
    }
}
