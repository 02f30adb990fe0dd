//! The event message producers publish: `{"object":"event","id":…,"type":…,"created_at":…,
//! "data":{"object":{…}}}`. Parsing is the poison check: what fails here is dead-lettered with
//! the [`PoisonReason`] and never retried.
//!
//! The event is not built into a tree of `serde_json::Value`s: for the sample event that was
//! 33 KB in ~380 allocations per message in flight, and with serializing the body back, most
//! of the JSON work in the profile. One pass over the text reads what a delivery needs (the id,
//! type and correlation id for its headers) and checks the grammar of the rest. A body is
//! written from the event's text: with the whole resource it *is* the text, shared, not
//! copied; a projected one is written member by member from it. The text is the message body
//! as published, less its insignificant whitespace, so numbers and escapes reach the receiver
//! exactly as the producer wrote them.
//!
//! What is poison is what it was when events were parsed into `Value`s: besides the JSON
//! grammar, a lone UTF-16 surrogate in a `\u` escape, a number too large for an `f64`, and
//! nesting deeper than 127 levels (the property tests hold this parser to the one it replaced).
//! A member repeated in the envelope, `data` or `data.object` counts once, with its last value,
//! at its first place, as it did in a `Value` map; deeper inside the resource the receiver gets
//! the text as it was (serde_json reads it as the same value; a repeated member is rare and
//! its meaning differs between parsers anyway).

mod read;
mod scan;
mod text;

use bytes::Bytes;
use serde_json::value::RawValue;

use read::{Envelope, IfObject, Members};
use text::{check, without_whitespace};

use crate::{dead_reason::DeadReason, filter::Include};

#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub event_type: String,
    correlation_id: Option<String>,
    /// The event as compact JSON: the message body itself, or a copy of it without its
    /// insignificant whitespace. Valid, and an object with `data.object` an object.
    text: Bytes,
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
    /// The dead letter's reason.
    pub fn dead_reason(&self) -> DeadReason {
        match self {
            PoisonReason::TooLarge { .. } => DeadReason::TooLarge,
            PoisonReason::InvalidJson(_) => DeadReason::InvalidJson,
            PoisonReason::InvalidEvent(_) => DeadReason::InvalidEvent,
        }
    }

    /// A short machine-readable code for headers and metrics.
    pub fn code(&self) -> &'static str {
        self.dead_reason().as_str()
    }
}

impl Event {
    /// Parses a copy of `body` (see [`Event::parse_shared`], which does not copy).
    pub fn parse(body: &[u8], max_bytes: usize) -> Result<Self, PoisonReason> {
        check_size(body, max_bytes)?;
        Self::parse_shared(&Bytes::copy_from_slice(body), max_bytes)
    }

    /// Parses the message body; the event keeps (a handle to) it as its text when it is compact.
    pub fn parse_shared(body: &Bytes, max_bytes: usize) -> Result<Self, PoisonReason> {
        check_size(body, max_bytes)?;
        // The one-pass scan answers for the usual event; anything else, and every error, is the
        // full parse's to decide (see `scan`).
        let scanned = std::str::from_utf8(body).ok().and_then(scan::scan);
        let Some(scanned) = scanned else {
            return Self::parse_fully(body);
        };
        let object = scanned.object.map(|o| (o.external_id, o.id));
        Self::from_members(
            body,
            scanned.id,
            scanned.event_type,
            object,
            scanned.compact,
        )
    }

    /// The full parse: serde_json's pass over the whole text, then the check of what it skips.
    fn parse_fully(body: &Bytes) -> Result<Self, PoisonReason> {
        // One pass reads what is needed and checks the grammar of the rest; strings it skips
        // are not checked for UTF-8 by serde_json, so the whole text is (outside strings,
        // JSON is ASCII anyway).
        let envelope = serde_json::from_slice::<IfObject<Envelope>>(body)
            .map_err(|e| PoisonReason::InvalidJson(e.to_string()))?;
        std::str::from_utf8(body).map_err(|e| PoisonReason::InvalidJson(e.to_string()))?;
        let compact = check(body).map_err(|e| PoisonReason::InvalidJson(e.into()))?;
        let envelope = envelope
            .0
            .ok_or(PoisonReason::InvalidEvent("the event is not a JSON object"))?;
        let object = envelope
            .data
            .and_then(|data| data.object)
            .map(|o| (o.external_id.map(RawValue::get), o.id.map(RawValue::get)));
        Self::from_members(
            body,
            envelope.id.map(RawValue::get),
            envelope.event_type.map(RawValue::get),
            object,
            compact,
        )
    }

    /// The event from its members' raw JSON texts (`object`: `data.object`'s `external_id` and
    /// `id`, when `data.object` is an object).
    fn from_members(
        body: &Bytes,
        id: Option<&str>,
        event_type: Option<&str>,
        object: Option<(Option<&str>, Option<&str>)>,
        compact: bool,
    ) -> Result<Self, PoisonReason> {
        // Both travel in HTTP headers: short and printable, or the event is poison.
        let id = header_safe_string(id).ok_or(PoisonReason::InvalidEvent(
            "`id` is missing or not 1 to 255 printable characters",
        ))?;
        let event_type = header_safe_string(event_type).ok_or(PoisonReason::InvalidEvent(
            "`type` is missing or not 1 to 255 printable characters",
        ))?;
        let (external_id, object_id) = object.ok_or(PoisonReason::InvalidEvent(
            "`data.object` is missing or not an object",
        ))?;
        let correlation_id = correlation(external_id).or_else(|| correlation(object_id));
        let text = if compact {
            body.clone()
        } else {
            Bytes::from(without_whitespace(body))
        };
        Ok(Event {
            id,
            event_type,
            correlation_id,
            text,
        })
    }

    /// `data.object.external_id` when present and non-empty, else `data.object.id`.
    pub fn correlation_id(&self) -> Option<&str> {
        self.correlation_id.as_deref()
    }

    /// The delivery body for one `include` setting: the envelope untouched, `data.object`
    /// projected, compact JSON.
    pub fn body(&self, include: &Include) -> Body {
        match include {
            Include::All => self.text.clone(),
            Include::Scalars(_) => self.projected(include).unwrap_or_default().into(),
        }
    }

    /// The envelope with `data.object` reduced to what `include` keeps, written member by
    /// member from the text. `None` only if the text, checked when parsed, is not what it was.
    fn projected(&self, include: &Include) -> Option<Vec<u8>> {
        let envelope = serde_json::from_slice::<Members>(&self.text).ok()?;
        let mut out = Vec::with_capacity(self.text.len());
        out.push(b'{');
        for (i, (key, value)) in envelope.unique().into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_key(&mut out, &key);
            if key != "data" {
                out.extend_from_slice(value.get().as_bytes());
                continue;
            }
            // As before: `data`'s other members in their order, then the projected object.
            let data = Members::of(value)?;
            let object = Members::of(data.last("object")?)?;
            out.push(b'{');
            for (key, value) in data.unique().into_iter().filter(|(k, _)| k != "object") {
                write_key(&mut out, &key);
                out.extend_from_slice(value.get().as_bytes());
                out.push(b',');
            }
            write_key(&mut out, "object");
            out.push(b'{');
            let mut first = true;
            for (key, value) in object.unique() {
                if !include.keeps(&key, is_association(value)) {
                    continue;
                }
                if !std::mem::take(&mut first) {
                    out.push(b',');
                }
                write_key(&mut out, &key);
                out.extend_from_slice(value.get().as_bytes());
            }
            out.extend_from_slice(b"}}");
        }
        out.push(b'}');
        Some(out)
    }
}

fn check_size(body: &[u8], max_bytes: usize) -> Result<(), PoisonReason> {
    if body.len() > max_bytes {
        return Err(PoisonReason::TooLarge {
            size: body.len(),
            limit: max_bytes,
        });
    }
    Ok(())
}

/// A member (its raw JSON text) that is a string fit for a header.
fn header_safe_string(value: Option<&str>) -> Option<String> {
    let value = value?;
    if !value.starts_with('"') {
        return None;
    }
    serde_json::from_str::<String>(value)
        .ok()
        .filter(|text| is_header_safe(text))
}

/// A correlation id: a header-safe string, or a number as text.
fn correlation(value: Option<&str>) -> Option<String> {
    let text = value?;
    match text.as_bytes().first() {
        Some(b'"') => header_safe_string(value),
        Some(b'-' | b'0'..=b'9') => serde_json::from_str::<serde_json::Number>(text)
            .ok()
            .map(|n| n.to_string()),
        _ => None,
    }
}

/// An association is an object, or an array holding at least one object. Everything else
/// (strings, numbers, booleans, null, arrays of scalars, empty arrays) is a scalar field.
fn is_association(value: &RawValue) -> bool {
    match value.get().as_bytes().first() {
        Some(b'{') => true,
        Some(b'[') => serde_json::from_str::<Vec<&RawValue>>(value.get())
            .is_ok_and(|items| items.iter().any(|item| item.get().starts_with('{'))),
        _ => false,
    }
}

fn write_key(out: &mut Vec<u8>, key: &str) {
    // Writing a string to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, key);
    out.push(b':');
}

/// Non-empty, at most 255 bytes, no control characters.
pub fn is_header_safe(text: &str) -> bool {
    !text.is_empty() && text.len() <= 255 && !text.chars().any(char::is_control)
}

/// A delivery body, shared (not copied) by every webhook with the same `include` setting.
pub type Body = bytes::Bytes;

/// Bodies of one event, each built once per distinct `include` setting.
#[derive(Default)]
pub struct Bodies {
    by_include: Vec<(Include, Body)>,
}

impl Bodies {
    /// The body for a webhook's `include` setting, built only the first time this event meets
    /// the setting, so a hundred webhooks sharing one setting cost one body. (A list: an event
    /// meets a handful of settings at most.)
    pub fn get(&mut self, event: &Event, include: &Include) -> Body {
        if let Some((_, body)) = self.by_include.iter().find(|(i, _)| i == include) {
            return body.clone();
        }
        let body = event.body(include);
        self.by_include.push((include.clone(), body.clone()));
        body
    }
}

#[cfg(test)]
#[path = "event_tests.rs"]
mod tests;
