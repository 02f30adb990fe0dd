//! The span fields written directly are the fields tracing-subscriber's own `JsonFields` wrote:
//! the same spans logged through both formatters give the same JSON values.

use serde_json::Value;
use tracing::field::Empty;

use super::JsonSpanFields;
use crate::telemetry::captured::Lines;

/// The `span` member of each line `log` writes, with upstream's formatter and with ours.
fn spans_both_ways(log: impl Fn()) -> (Vec<Value>, Vec<Value>) {
    let builder = || {
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(true)
    };
    let (upstream, ours) = (Lines::default(), Lines::default());
    let writer = upstream.clone();
    let subscriber = builder().with_writer(move || writer.clone()).finish();
    tracing::subscriber::with_default(subscriber, &log);
    let writer = ours.clone();
    let subscriber = builder()
        .fmt_fields(JsonSpanFields)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, &log);
    let span = |lines: &Lines| -> Vec<Value> {
        lines
            .json()
            .iter()
            .map(|line| line["span"].clone())
            .collect()
    };
    (span(&upstream), span(&ours))
}

#[test]
fn every_kind_of_field_is_written_as_upstream_wrote_it() {
    let id = uuid::Uuid::new_v4();
    let (upstream, ours) = spans_both_ways(|| {
        let text = "a \"quote\", a \\ backslash,\n\r\t\u{8}\u{c}\u{1}\u{1f}\u{7f}, é, 日本, 🦀";
        let span = tracing::error_span!(
            "delivery",
            text,
            %id,
            debug = ?Some("x\"y"),
            negative = -42i64,
            big = u64::MAX,
            wide = i128::MIN,
            yes = true,
            ratio = 1.5f64,
            tiny = 1e-300f64,
            nan = f64::NAN,
            infinite = f64::INFINITY,
            bytes = &b"abc"[..],
            r#type = "business.updated",
            long = "ü\"".repeat(300).as_str(),
        );
        span.in_scope(|| tracing::error!("inside"));
    });
    assert_eq!(ours, upstream);
    let span = &ours[0];
    assert_eq!(span["id"], id.to_string());
    assert_eq!(span["type"], "business.updated");
    assert_eq!(span["big"], u64::MAX);
    assert!(span["nan"].is_null(), "{span}");
    assert_eq!(span["long"], "ü\"".repeat(300));
    assert!(
        span["text"].as_str().unwrap().ends_with("é, 日本, 🦀"),
        "{span}"
    );
}

#[test]
fn a_span_without_fields_and_a_nested_one_are_written_as_upstream_wrote_them() {
    let (upstream, ours) = spans_both_ways(|| {
        let outer = tracing::error_span!("event");
        let _outer = outer.enter();
        tracing::error!("in the event");
        let inner = tracing::error_span!("delivery", event_id = "evt_1", attempt = 3u32);
        inner.in_scope(|| tracing::error!("in the delivery"));
    });
    assert_eq!(ours, upstream);
    assert_eq!(ours[0]["name"], "event");
    assert_eq!(ours[1]["attempt"], 3);
}

#[test]
fn fields_recorded_later_are_merged_and_replace_earlier_values() {
    let (upstream, ours) = spans_both_ways(|| {
        let later = tracing::error_span!("later", status = Empty);
        later.record("status", 503u64);
        later.in_scope(|| tracing::error!("only later"));
        let both = tracing::error_span!("both", event_id = "evt_1", status = Empty);
        both.record("status", 500u64);
        both.record("status", 200u64);
        both.in_scope(|| tracing::error!("made and recorded"));
    });
    assert_eq!(ours, upstream);
    assert_eq!(ours[0]["status"], 503);
    assert_eq!(ours[1]["status"], 200);
    assert_eq!(ours[1]["event_id"], "evt_1");
}
