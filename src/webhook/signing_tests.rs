//! Unit tests of the signing rules: the format, a `standard_webhooks` webhook's secret (given in
//! either form, or generated), and rotation with an overlap.

use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::signing::{new_standard_secret, SignatureFormat};

const KEY: &str = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn patch(value: serde_json::Value) -> WebhookPatch {
    serde_json::from_value(value).expect("a well-formed patch")
}

fn create(extra: serde_json::Value) -> Result<Webhook, Vec<FieldError>> {
    let mut value = json!({"url": "https://example.com/hook", "enabled_events": ["*"]});
    for (k, v) in extra.as_object().unwrap() {
        value[k] = v.clone();
    }
    let now = Utc::now();
    Draft::default().apply(patch(value)).validate(
        &UrlRules::default(),
        Uuid::new_v4(),
        "acct",
        now,
        now,
    )
}

fn fields(result: Result<Webhook, Vec<FieldError>>) -> Vec<&'static str> {
    result.unwrap_err().into_iter().map(|e| e.field).collect()
}

/// `existing` after a PATCH of `value` at `now` with `overlap`, as the API runs it.
fn update(existing: &Webhook, value: serde_json::Value, rotation: Rotation) -> Webhook {
    let mut draft = Draft::of(existing).apply(patch(value));
    draft.rotate_from(existing, rotation);
    draft
        .validate(
            &UrlRules::default(),
            existing.id,
            "acct",
            existing.created_at,
            rotation.now,
        )
        .expect("a valid update")
}

/// Now at the millisecond precision the store (and the API) keeps.
fn now() -> DateTime<Utc> {
    Utc::now()
        .duration_trunc(TimeDelta::milliseconds(1))
        .unwrap()
}

fn exposed(secret: Option<&crate::secret::Secret>) -> Option<&str> {
    secret.map(crate::secret::Secret::expose)
}

#[test]
fn the_format_is_platform_unless_standard_webhooks_is_asked_for() {
    let platform = create(json!({"secret": "anything"})).unwrap();
    assert_eq!(platform.signature_format, SignatureFormat::Platform);
    assert_eq!(platform.standard_keys, StandardKeys::default());
    assert_eq!(platform.view().signature_format, SignatureFormat::Platform);
    let reset = create(json!({"signature_format": null})).unwrap();
    assert_eq!(reset.signature_format, SignatureFormat::Platform);
    assert_eq!(
        fields(create(json!({"signature_format": "svix"}))),
        ["signature_format"]
    );
}

#[test]
fn a_standard_webhook_takes_a_standard_secret_in_either_form_and_nothing_else() {
    for secret in [format!("whsec_{KEY}"), KEY.to_string()] {
        let webhook =
            create(json!({"signature_format": "standard_webhooks", "secret": secret})).unwrap();
        assert_eq!(webhook.signature_format, SignatureFormat::StandardWebhooks);
        assert!(webhook.standard_keys.current.is_some());
    }
    for secret in [
        json!("whsec_short"),
        json!("not base64 at all!"),
        json!(null),
    ] {
        let result = create(json!({"signature_format": "standard_webhooks", "secret": secret}));
        let errors = result.unwrap_err();
        assert_eq!(errors.len(), 1, "{secret}");
        assert_eq!(errors[0].field, "secret");
        assert!(!errors[0].message.contains("whsec_short"));
    }
}

#[test]
fn a_missing_standard_secret_is_generated_unless_the_request_cleared_it() {
    let mut draft = Draft::default().apply(patch(json!({"signature_format": "standard_webhooks"})));
    assert!(draft.clone().generate_missing_secret(true).is_none());
    let generated = draft
        .generate_missing_secret(false)
        .expect("a generated secret");
    assert!(generated.expose().starts_with("whsec_"));
    assert_eq!(exposed(draft.secret.as_ref()), Some(generated.expose()));
    // Given or platform: nothing generated.
    let mut given = Draft::default().apply(patch(
        json!({"signature_format": "standard_webhooks", "secret": new_standard_secret()}),
    ));
    assert!(given.generate_missing_secret(false).is_none());
    assert!(Draft::default().generate_missing_secret(false).is_none());
}

#[test]
fn a_replaced_secret_signs_until_the_overlap_ends_and_a_second_rotation_replaces_it() {
    let (first, second, third) = (
        new_standard_secret(),
        new_standard_secret(),
        new_standard_secret(),
    );
    let original =
        create(json!({"signature_format": "standard_webhooks", "secret": first})).unwrap();
    let now = now();
    let day = Rotation {
        now,
        overlap: Duration::from_secs(86_400),
    };
    let rotated = update(&original, json!({"secret": second}), day);
    let previous = rotated
        .previous_secret
        .clone()
        .expect("the replaced secret");
    assert_eq!(previous.secret.expose(), first);
    assert_eq!(previous.until, now + TimeDelta::days(1));
    assert!(rotated.standard_keys.previous.is_some());
    assert!(rotated
        .previous_secret_at(now + TimeDelta::hours(23))
        .is_some());
    assert!(rotated
        .previous_secret_at(now + TimeDelta::days(1))
        .is_none());

    // Another change leaves the previous one as it is; the same secret sent again too.
    let later = Rotation {
        now: now + TimeDelta::hours(1),
        ..day
    };
    let moved = update(&rotated, json!({"url": "https://example.org/"}), later);
    assert_eq!(moved.previous_secret, rotated.previous_secret);
    let same = update(&rotated, json!({"secret": second}), later);
    assert_eq!(same.previous_secret, rotated.previous_secret);

    let again = update(&rotated, json!({"secret": third}), later);
    let previous = again.previous_secret.clone().unwrap();
    assert_eq!(previous.secret.expose(), second, "the one just replaced");
    assert_eq!(previous.until, later.now + TimeDelta::days(1));

    // Removing the secret (as platform: standard needs one) ends the overlap.
    let removed = update(
        &again,
        json!({"secret": null, "signature_format": "platform"}),
        later,
    );
    assert_eq!(removed.previous_secret, None);
}

#[test]
fn no_overlap_and_an_ended_one_leave_no_previous_secret() {
    let original = create(json!({"secret": "platform-bytes-1"})).unwrap();
    let now = Utc::now();
    let none = Rotation {
        now,
        overlap: Duration::ZERO,
    };
    assert_eq!(
        update(&original, json!({"secret": "platform-bytes-2"}), none).previous_secret,
        None
    );
    let short = Rotation {
        now,
        overlap: Duration::from_secs(3),
    };
    let rotated = update(&original, json!({"secret": "platform-bytes-2"}), short);
    // A platform webhook's previous secret is bytes: it signs the -Previous header only.
    assert_eq!(rotated.standard_keys, StandardKeys::default());
    let after = Rotation {
        now: now + TimeDelta::seconds(4),
        ..short
    };
    let touched = update(&rotated, json!({"include": "identifiers"}), after);
    assert_eq!(touched.previous_secret, None, "an ended overlap is dropped");
}

#[test]
fn a_previous_secret_that_is_no_standard_key_does_not_sign_the_standard_header() {
    let original = create(json!({"secret": "platform-bytes"})).unwrap();
    let rotation = Rotation {
        now: Utc::now(),
        overlap: Duration::from_secs(60),
    };
    let switched = update(
        &original,
        json!({"signature_format": "standard_webhooks", "secret": new_standard_secret()}),
        rotation,
    );
    assert_eq!(
        exposed(switched.previous_secret.as_ref().map(|p| &p.secret)),
        Some("platform-bytes")
    );
    assert!(switched.standard_keys.current.is_some());
    assert!(switched.standard_keys.previous.is_none());
}

#[test]
fn debug_output_never_shows_a_secret_or_key() {
    let first = new_standard_secret();
    let original =
        create(json!({"signature_format": "standard_webhooks", "secret": first})).unwrap();
    let rotation = Rotation {
        now: Utc::now(),
        overlap: Duration::from_secs(60),
    };
    let rotated = update(
        &original,
        json!({"secret": new_standard_secret()}),
        rotation,
    );
    let printed = format!("{rotated:?}");
    assert!(!printed.contains(&first), "{printed}");
    assert!(!printed.contains(&first["whsec_".len()..]), "{printed}");
}
