use serde_json::Value;

use super::*;

const FIXTURE: &str = include_str!("../tests/fixtures/business.updated.json");

#[test]
fn the_fixture_parses() {
    let event = Event::parse(FIXTURE.as_bytes(), 1 << 20).unwrap();
    assert_eq!(event.event_type, "business.updated");
    assert_eq!(event.correlation_id(), Some("cust-42817"));
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

fn with_field(value: &str) -> Vec<u8> {
    format!(r#"{{"id":"e","type":"t","data":{{"object":{{"x":{value}}}}}}}"#).into_bytes()
}

#[test]
fn what_a_value_parse_refused_is_still_not_json() {
    // The resource is 3 levels deep: 124 more make 127, serde_json's limit.
    let deep = |n: usize| format!("{}0{}", "[".repeat(n), "]".repeat(n));
    for odd in [
        r#""\ud800""#,
        r#""\udc00""#,
        r#""\ud800\u0041""#,
        "1e400",
        "-1e309",
    ] {
        let code = Event::parse(&with_field(odd), 1 << 20).unwrap_err().code();
        assert_eq!(code, "invalid_json", "{odd}");
    }
    assert!(Event::parse(&with_field(&deep(124)), 1 << 20).is_ok());
    let too_deep = Event::parse(&with_field(&deep(125)), 1 << 20);
    assert_eq!(too_deep.unwrap_err().code(), "invalid_json");
    let mut not_utf8 = with_field(r#""..""#);
    let at = not_utf8.len() - 5;
    not_utf8[at] = 0xff;
    let code = Event::parse(&not_utf8, 1 << 20).unwrap_err().code();
    assert_eq!(code, "invalid_json");
}

#[test]
fn the_body_is_the_published_text_without_its_whitespace() {
    let published = "{ \"id\": \"e\",\n  \"type\": \"t\",\n  \"data\": { \"object\": {\n    \"x\": \"a b \\\" \\/ \\u00e9\", \"n\": 1.50 } } }";
    let event = Event::parse(published.as_bytes(), 1 << 20).unwrap();
    assert_eq!(
        &event.body(&Include::All)[..],
        br#"{"id":"e","type":"t","data":{"object":{"x":"a b \" \/ \u00e9","n":1.50}}}"#
    );
}

#[test]
fn a_compact_body_is_the_message_itself_not_a_copy() {
    let published = bytes::Bytes::from_static(FIXTURE.as_bytes());
    let compact: Value = serde_json::from_str(FIXTURE).unwrap();
    let compact = bytes::Bytes::from(serde_json::to_vec(&compact).unwrap());
    let event = Event::parse_shared(&compact, 1 << 20).unwrap();
    assert_eq!(event.body(&Include::All).as_ptr(), compact.as_ptr());
    let pretty = Event::parse_shared(&published, 1 << 20).unwrap();
    assert_eq!(pretty.body(&Include::All), compact);
}

#[test]
fn a_repeated_member_counts_with_its_last_value_at_its_first_place() {
    let published = br#"{"id":"first","type":"t","data":{"object":{"tin":"scalar","id":"b","tin":{"a":1}}},"id":"last"}"#;
    let event = Event::parse(published, 1 << 20).unwrap();
    assert_eq!(event.id, "last");
    let body = event.body(&Include::parse(Some("identifiers")).unwrap());
    assert_eq!(
        &body[..],
        br#"{"id":"last","type":"t","data":{"object":{"id":"b"}}}"#
    );
}

#[test]
fn correlation_id_falls_back_to_the_object_id() {
    let event = Event::parse(
        br#"{"id":"e","type":"t","data":{"object":{"id":"b","external_id":""}}}"#,
        1000,
    )
    .unwrap();
    assert_eq!(event.correlation_id(), Some("b"));
}

#[test]
fn the_body_keeps_the_envelope_and_projects_the_object() {
    let event = Event::parse(FIXTURE.as_bytes(), 1 << 20).unwrap();
    let body: Value =
        serde_json::from_slice(&event.body(&Include::parse(Some("identifiers")).unwrap())).unwrap();
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
    let include = |text: Option<&str>| Include::parse(text).unwrap();
    let all = bodies.get(&event, &include(None));
    let star = bodies.get(&event, &include(Some("*")));
    let ids = bodies.get(&event, &include(Some("identifiers")));
    let ids_again = bodies.get(&event, &include(Some("identifiers")));
    assert_eq!(all.as_ptr(), star.as_ptr(), "absent and * share one body");
    assert_eq!(ids.as_ptr(), ids_again.as_ptr(), "built once, then shared");
    assert!(ids.len() < all.len());
}
