//! Unit tests of the seed's validation rules, on create and on the merged state of an update.

use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use super::*;

fn rules() -> UrlRules {
    UrlRules::default()
}

fn patch(value: serde_json::Value) -> WebhookPatch {
    serde_json::from_value(value).expect("a well-formed patch")
}

fn create(value: serde_json::Value) -> Result<Webhook, Vec<FieldError>> {
    let now = Utc::now();
    Draft::default()
        .apply(patch(value))
        .validate(&rules(), Uuid::new_v4(), "acct", now, now)
}

fn fields(result: Result<Webhook, Vec<FieldError>>) -> Vec<&'static str> {
    let mut fields: Vec<_> = result.unwrap_err().into_iter().map(|e| e.field).collect();
    fields.sort_unstable();
    fields
}

fn minimal() -> serde_json::Value {
    json!({"url": "https://example.com/hook", "enabled_events": ["business.updated"]})
}

fn with(extra: serde_json::Value) -> serde_json::Value {
    let mut value = minimal();
    for (k, v) in extra.as_object().unwrap() {
        value[k] = v.clone();
    }
    value
}

#[test]
fn a_minimal_webhook_is_valid() {
    let webhook = create(minimal()).unwrap();
    assert_eq!(webhook.url, "https://example.com/hook");
    assert!(webhook.oidc.is_none());
}

#[test]
fn url_and_enabled_events_are_required() {
    assert_eq!(fields(create(json!({}))), ["enabled_events", "url"]);
}

#[test]
fn urls_must_parse_and_be_https() {
    for url in [
        "not a url",
        "ftp://example.com",
        "http://example.com",
        "https://u:p@example.com",
    ] {
        assert_eq!(fields(create(with(json!({"url": url})))), ["url"], "{url}");
    }
    let http_ok = UrlRules {
        allow_http: true,
        ..UrlRules::default()
    };
    let now = Utc::now();
    assert!(Draft::default()
        .apply(patch(with(json!({"url": "http://example.com"}))))
        .validate(&http_ok, Uuid::new_v4(), "a", now, now)
        .is_ok());
}

#[test]
fn urls_with_non_public_ip_literals_are_refused() {
    for url in [
        "https://127.0.0.1/",
        "https://169.254.169.254/latest",
        "https://[::1]/",
        "https://[::ffff:127.0.0.1]/",
        "https://2130706433/",
    ] {
        assert_eq!(fields(create(with(json!({"url": url})))), ["url"], "{url}");
    }
}

#[test]
fn enabled_events_must_be_a_non_empty_list_of_names() {
    assert_eq!(
        fields(create(with(json!({"enabled_events": []})))),
        ["enabled_events"]
    );
    assert_eq!(
        fields(create(with(json!({"enabled_events": [""]})))),
        ["enabled_events"]
    );
    assert!(create(with(json!({"enabled_events": ["*"]}))).is_ok());
}

#[test]
fn include_syntax_is_checked() {
    assert!(create(with(json!({"include": "identifiers,addresses"}))).is_ok());
    assert!(create(with(json!({"include": "*"}))).is_ok());
    assert_eq!(
        fields(create(with(json!({"include": "a,,b"})))),
        ["include"]
    );
}

#[test]
fn disabled_at_must_be_a_timestamp() {
    assert!(create(with(json!({"disabled_at": "2026-01-01T00:00:00Z"}))).is_ok());
    assert_eq!(
        fields(create(with(json!({"disabled_at": "yesterday"})))),
        ["disabled_at"]
    );
}

#[test]
fn an_empty_secret_is_refused() {
    assert_eq!(fields(create(with(json!({"secret": ""})))), ["secret"]);
}

#[test]
fn oidc_auth_method_must_be_known() {
    assert_eq!(
        fields(create(with(json!({"oidc_auth_method": "basic"})))),
        ["oidc_auth_method"]
    );
}

type FieldValue = fn() -> serde_json::Value;

const OIDC_FIELDS: [(&str, FieldValue); 6] = [
    ("oidc_client_id", || json!("client")),
    ("oidc_client_secret", || json!("s3cret")),
    ("oidc_token_endpoint", || {
        json!("https://idp.example.com/token")
    }),
    ("oidc_resource_uri", || json!("api://resource")),
    ("oidc_scope", || json!("api://app/.default")),
    ("oidc_access_token_ttl_seconds", || json!(3600)),
];

#[test]
fn every_oidc_field_without_a_method_is_refused() {
    for (field, value) in OIDC_FIELDS {
        assert_eq!(fields(create(with(json!({ field: value() })))), [field]);
    }
}

/// Every subset of the OIDC fields, for each method: valid exactly when the method's required
/// fields are all there (and, for private_key_jwt, no client secret is), and otherwise the errors
/// name exactly the missing (or extraneous) fields.
#[test]
fn every_combination_of_oidc_fields_is_judged_by_the_seed_rules() {
    for method in ["private_key_jwt", "client_secret"] {
        let required: &[&str] = if method == "client_secret" {
            &[
                "oidc_client_id",
                "oidc_client_secret",
                "oidc_token_endpoint",
                "oidc_access_token_ttl_seconds",
            ]
        } else {
            &[
                "oidc_client_id",
                "oidc_token_endpoint",
                "oidc_access_token_ttl_seconds",
            ]
        };
        for mask in 0..(1u32 << OIDC_FIELDS.len()) {
            let mut body = with(json!({ "oidc_auth_method": method }));
            let mut present = Vec::new();
            for (i, (field, value)) in OIDC_FIELDS.iter().enumerate() {
                if mask & (1 << i) != 0 {
                    body[*field] = value();
                    present.push(*field);
                }
            }
            let mut expected: Vec<&str> = required
                .iter()
                .copied()
                .filter(|f| !present.contains(f))
                .collect();
            if method == "private_key_jwt" && present.contains(&"oidc_client_secret") {
                expected.push("oidc_client_secret");
            }
            expected.sort_unstable();
            let result = create(body);
            if expected.is_empty() {
                let webhook = result.unwrap_or_else(|e| panic!("{method} {present:?}: {e:?}"));
                assert!(webhook.oidc.is_some(), "{method} {present:?}");
            } else {
                assert_eq!(fields(result), expected, "{method} with {present:?}");
            }
        }
    }
}

#[test]
fn the_token_endpoint_follows_the_url_rules_and_ttl_is_bounded() {
    let base = json!({
        "oidc_auth_method": "private_key_jwt", "oidc_client_id": "c",
        "oidc_token_endpoint": "http://idp.example.com/token", "oidc_access_token_ttl_seconds": 60
    });
    assert_eq!(fields(create(with(base.clone()))), ["oidc_token_endpoint"]);
    let mut ttl = base.clone();
    ttl["oidc_token_endpoint"] = json!("https://idp.example.com/token");
    ttl["oidc_access_token_ttl_seconds"] = json!(0);
    assert_eq!(fields(create(with(ttl))), ["oidc_access_token_ttl_seconds"]);
}

#[test]
fn an_update_is_validated_on_the_merged_state() {
    let original = create(with(json!({
        "secret": "s", "oidc_auth_method": "client_secret", "oidc_client_id": "c",
        "oidc_client_secret": "cs", "oidc_token_endpoint": "https://idp.example.com/token",
        "oidc_access_token_ttl_seconds": 60
    })))
    .unwrap();
    let now = Utc::now();
    let update = |value| {
        Draft::of(&original).apply(patch(value)).validate(
            &rules(),
            original.id,
            "acct",
            original.created_at,
            now,
        )
    };
    // Omitted fields stay: a partial update that only changes the URL is valid.
    let moved = update(json!({"url": "https://example.org/new"})).unwrap();
    assert_eq!(moved.secret, original.secret);
    let client_secret = |w: &Webhook| w.oidc.as_ref().and_then(|o| o.client_secret.clone());
    assert_eq!(client_secret(&moved), client_secret(&original));
    // Clearing a required OIDC field breaks the merged state.
    assert_eq!(
        fields(update(json!({"oidc_client_secret": null}))),
        ["oidc_client_secret"]
    );
    // Switching method drops the need for the client secret, but it must be cleared.
    assert_eq!(
        fields(update(json!({"oidc_auth_method": "private_key_jwt"}))),
        ["oidc_client_secret"]
    );
    assert!(
        update(json!({"oidc_auth_method": "private_key_jwt", "oidc_client_secret": null})).is_ok()
    );
    // null clears optional fields; url cannot be cleared.
    assert_eq!(update(json!({"secret": null})).unwrap().secret, None);
    assert_eq!(fields(update(json!({"url": null}))), ["url"]);
    // Clearing the method with fields left over names those fields.
    assert_eq!(
        fields(update(json!({"oidc_auth_method": null}))),
        [
            "oidc_access_token_ttl_seconds",
            "oidc_client_id",
            "oidc_client_secret",
            "oidc_token_endpoint"
        ]
    );
}

#[test]
fn disabled_at_in_the_future_is_still_enabled() {
    let now = Utc::now();
    let mut webhook = create(minimal()).unwrap();
    assert!(webhook.is_enabled_at(now));
    webhook.disabled_at = Some(now + chrono::Duration::hours(1));
    assert!(webhook.is_enabled_at(now));
    webhook.disabled_at = Some(now - chrono::Duration::seconds(1));
    assert!(!webhook.is_enabled_at(now));
}

#[test]
fn the_view_never_carries_secrets() {
    let webhook = create(with(json!({
        "secret": "whsec-visible?", "oidc_auth_method": "client_secret", "oidc_client_id": "c",
        "oidc_client_secret": "cs-visible?", "oidc_token_endpoint": "https://idp.example.com/t",
        "oidc_access_token_ttl_seconds": 60
    })))
    .unwrap();
    let text = serde_json::to_string(&webhook.view()).unwrap();
    assert!(!text.contains("visible?"), "{text}");
    assert!(!format!("{webhook:?}").contains("visible?"));
}

#[test]
fn unknown_fields_are_refused() {
    assert!(serde_json::from_value::<WebhookPatch>(json!({"urll": "x"})).is_err());
}
