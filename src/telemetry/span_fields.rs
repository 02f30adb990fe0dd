//! A span's fields for the JSON log lines, written as a JSON object straight into the text the
//! log keeps with the span.
//!
//! Every delivery runs in a span, so its fields are formatted once per delivery whether or not
//! a line is logged in it. tracing-subscriber's own `JsonFields` builds a map of
//! `serde_json::Value`s first (a string allocated per field, a tree node per key) and then
//! serializes it: 3 % of the delivery thread's samples in the profile. This writes the same
//! object without them. The line's formatter reads the text back as JSON, as it did, so a line
//! carries the same fields and values; only their order follows the span's declaration instead
//! of the alphabet.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing_subscriber::{
    field::RecordFields,
    fmt::{
        format::{FormatFields, Writer},
        FormattedFields,
    },
};

/// Formats span fields as one compact JSON object (see the module doc).
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonSpanFields;

impl<'writer> FormatFields<'writer> for JsonSpanFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        // Staged on the stack and handed over in one piece: the span's text then grows once,
        // not at every field.
        let mut staged = Staged::new(&mut writer);
        let mut object = ObjectWriter::new(&mut staged);
        fields.record(&mut object);
        object.finish()?;
        staged.flush()
    }

    /// Fields recorded after the span was made (`Span::record`, rare): merged into the object
    /// it already has, a later value replacing an earlier one.
    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        if current.fields.is_empty() {
            return self.format_fields(current.as_writer(), fields);
        }
        let mut added = String::new();
        self.format_fields(Writer::new(&mut added), fields)?;
        let parse = |text: &str| {
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
                .map_err(|_| fmt::Error)
        };
        let mut merged = parse(&current.fields)?;
        merged.extend(parse(&added)?);
        current.fields = serde_json::to_string(&merged).map_err(|_| fmt::Error)?;
        Ok(())
    }
}

/// Writes `{"name":value,...}` as fields are visited; the first write error is kept.
struct ObjectWriter<'a> {
    out: &'a mut dyn Write,
    empty: bool,
    result: fmt::Result,
}

impl<'a> ObjectWriter<'a> {
    fn new(out: &'a mut dyn Write) -> Self {
        Self {
            out,
            empty: true,
            result: Ok(()),
        }
    }

    /// Writes the member's name and then its value with `value`, unless the field is one the
    /// JSON formatter leaves out (`log.*`, the `log` crate's metadata).
    fn member(&mut self, field: &Field, value: impl FnOnce(&mut dyn Write) -> fmt::Result) {
        let name = field.name();
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        let name = name.strip_prefix("r#").unwrap_or(name);
        let separator = if self.empty { '{' } else { ',' };
        self.empty = false;
        self.result = (|| {
            self.out.write_char(separator)?;
            quoted(self.out, |out| out.write_str(name))?;
            self.out.write_char(':')?;
            value(self.out)
        })();
    }

    fn finish(self) -> fmt::Result {
        self.result?;
        self.out.write_str(if self.empty { "{}" } else { "}" })
    }
}

impl Visit for ObjectWriter<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        // As serde_json has it: a number that JSON cannot write is null.
        if value.is_finite() {
            self.member(field, |out| write!(out, "{value:?}"));
        } else {
            self.member(field, |out| out.write_str("null"));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, |out| quoted(out, |text| text.write_str(value)));
    }

    fn record_bytes(&mut self, field: &Field, value: &[u8]) {
        // An array of numbers, as `serde_json::Value::from(&[u8])` makes it.
        self.member(field, |out| {
            out.write_char('[')?;
            for (i, byte) in value.iter().enumerate() {
                if i > 0 {
                    out.write_char(',')?;
                }
                write!(out, "{byte}")?;
            }
            out.write_char(']')
        });
    }

    /// Also `i128` and `u128` (written as text, as upstream wrote them) and errors.
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.member(field, |out| quoted(out, |text| write!(text, "{value:?}")));
    }
}

/// Writes what `write` writes as a JSON string: quoted, escaped as it goes.
fn quoted(out: &mut dyn Write, write: impl FnOnce(&mut Escaped<'_>) -> fmt::Result) -> fmt::Result {
    out.write_char('"')?;
    write(&mut Escaped(out))?;
    out.write_char('"')
}

/// Gathers small writes into one; what does not fit goes through.
struct Staged<'a> {
    buffer: [u8; 256],
    len: usize,
    out: &'a mut dyn Write,
}

impl<'a> Staged<'a> {
    fn new(out: &'a mut dyn Write) -> Self {
        Self {
            buffer: [0; 256],
            len: 0,
            out,
        }
    }

    fn flush(&mut self) -> fmt::Result {
        // Whole `str`s were copied in, so this is text; the check is for the compiler's sake.
        let text = std::str::from_utf8(&self.buffer[..self.len]).map_err(|_| fmt::Error)?;
        self.out.write_str(text)?;
        self.len = 0;
        Ok(())
    }
}

impl Write for Staged<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let end = self.len + text.len();
        if end <= self.buffer.len() {
            self.buffer[self.len..end].copy_from_slice(text.as_bytes());
            self.len = end;
            return Ok(());
        }
        self.flush()?;
        self.out.write_str(text)
    }
}

/// Escapes what is written through it for the inside of a JSON string.
struct Escaped<'a>(&'a mut dyn Write);

impl Write for Escaped<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut plain = 0;
        for (i, byte) in text.bytes().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0..=0x1f => "",
                _ => continue,
            };
            // `i` is at an ASCII byte, so both slices end on character boundaries.
            self.0.write_str(&text[plain..i])?;
            if escape.is_empty() {
                write!(self.0, "\\u{byte:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            plain = i + 1;
        }
        self.0.write_str(&text[plain..])
    }
}

#[cfg(test)]
#[path = "span_fields_tests.rs"]
mod tests;
