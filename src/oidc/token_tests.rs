//! Unit tests of the token response parsing and the safety of token errors.

use super::*;

fn parse(status: u16, body: &str) -> Result<IssuedToken, TokenError> {
    parse_response(status, body.as_bytes(), &["the-client-secret-value"])
}

#[test]
fn a_bearer_token_with_expires_in_is_accepted() {
    let token = parse(
        200,
        r#"{"access_token":"abc.def","token_type":"Bearer","expires_in":3600}"#,
    )
    .unwrap();
    assert_eq!(token.access_token.expose(), "abc.def");
    assert_eq!(token.expires_in, Some(Duration::from_secs(3600)));
}

#[test]
fn token_type_is_compared_case_insensitively() {
    assert!(parse(200, r#"{"access_token":"a","token_type":"bearer"}"#).is_ok());
    assert!(parse(200, r#"{"access_token":"a","token_type":"BEARER"}"#).is_ok());
}

#[test]
fn expires_in_may_be_missing_a_string_or_a_fraction() {
    let missing = parse(200, r#"{"access_token":"a","token_type":"Bearer"}"#).unwrap();
    assert_eq!(missing.expires_in, None);
    let string = parse(
        200,
        r#"{"access_token":"a","token_type":"Bearer","expires_in":"3599"}"#,
    )
    .unwrap();
    assert_eq!(string.expires_in, Some(Duration::from_secs(3599)));
    let fraction = parse(
        200,
        r#"{"access_token":"a","token_type":"Bearer","expires_in":59.9}"#,
    )
    .unwrap();
    assert_eq!(fraction.expires_in, Some(Duration::from_secs(59)));
}

#[test]
fn a_negative_or_non_numeric_expires_in_is_an_invalid_response() {
    for value in ["-1", "\"soon\"", "true", "1e300"] {
        let body = format!(r#"{{"access_token":"a","token_type":"Bearer","expires_in":{value}}}"#);
        let err = parse(200, &body).unwrap_err();
        assert_eq!(err.reason(), "invalid_token_response", "{value}: {err}");
    }
}

#[test]
fn a_token_that_is_not_bearer_is_refused_without_echoing_odd_values() {
    let err = parse(200, r#"{"access_token":"a","token_type":"mac"}"#).unwrap_err();
    assert!(err.to_string().contains("\"mac\""), "{err}");
    let err = parse(
        200,
        r#"{"access_token":"a","token_type":"the-client-secret-value and more"}"#,
    )
    .unwrap_err();
    assert!(!err.to_string().contains("secret"), "{err}");
    let err = parse(200, r#"{"access_token":"a"}"#).unwrap_err();
    assert!(err.to_string().contains("token_type"), "{err}");
}

#[test]
fn a_missing_empty_or_unprintable_access_token_is_an_invalid_response() {
    for body in [
        r#"{"token_type":"Bearer"}"#,
        r#"{"access_token":"","token_type":"Bearer"}"#,
        r#"{"access_token":"a\nb","token_type":"Bearer"}"#,
        r#"{"access_token":"a b","token_type":"Bearer"}"#,
        r#"["not", "an", "object"]"#,
        "<html>hello</html>",
    ] {
        let err = parse(200, body).unwrap_err();
        assert!(
            matches!(err, TokenError::InvalidResponse(_)),
            "{body}: {err:?}"
        );
    }
}

#[test]
fn an_rfc_6749_error_becomes_rejected_with_its_code_and_short_description() {
    let err = parse(
        401,
        r#"{"error":"invalid_client","error_description":"client authentication failed"}"#,
    )
    .unwrap_err();
    assert_eq!(
        err,
        TokenError::Rejected {
            status: 401,
            code: "invalid_client".into(),
            description: Some("client authentication failed".into()),
        }
    );
    assert_eq!(err.reason(), "invalid_client");
    assert_eq!(
        err.to_string(),
        "token endpoint refused the request (HTTP 401): invalid_client: client authentication failed"
    );
}

#[test]
fn an_error_with_status_200_is_still_an_error() {
    let err = parse(200, r#"{"error":"invalid_scope"}"#).unwrap_err();
    assert_eq!(err.reason(), "invalid_scope");
}

#[test]
fn an_echoed_secret_is_cut_from_the_description_and_long_ones_are_truncated() {
    let err = parse(
        400,
        r#"{"error":"invalid_client","error_description":"secret the-client-secret-value is wrong"}"#,
    )
    .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("the-client-secret-value"), "{text}");
    assert!(text.contains("[redacted]"), "{text}");

    let long = "x".repeat(5000);
    let body = format!(r#"{{"error":"invalid_request","error_description":"{long}"}}"#);
    let err = parse(400, &body).unwrap_err();
    assert!(err.to_string().len() < 300, "{err}");
}

#[test]
fn an_odd_error_code_is_not_passed_on() {
    for code in [r#""has spaces and the-client-secret-value""#, "42", r#""""#] {
        let body = format!(r#"{{"error":{code}}}"#);
        let err = parse(400, &body).unwrap_err();
        assert_eq!(err.reason(), "unrecognized_error", "{code}");
    }
}

#[test]
fn a_non_2xx_without_an_oauth_error_names_only_the_status() {
    let err = parse(503, "upstream the-client-secret-value down").unwrap_err();
    assert_eq!(err, TokenError::Status { status: 503 });
    assert_eq!(err.reason(), "token_endpoint_http_503");
    let err = parse(302, "").unwrap_err();
    assert_eq!(err.reason(), "token_endpoint_http_302");
}

#[test]
fn every_error_has_a_short_reason_and_a_metric_outcome() {
    let errors = [
        TokenError::Timeout,
        TokenError::Transport("connection refused".into()),
        TokenError::InvalidResponse("x".into()),
        TokenError::NoSigningKey("x".into()),
        TokenError::Assertion("x".into()),
        TokenError::Settings("x"),
        TokenError::Status { status: 500 },
    ];
    for error in errors {
        let reason = error.reason();
        assert!(
            !reason.is_empty() && reason.len() < 40 && !reason.contains(' '),
            "{reason}"
        );
        assert!(!error.outcome().is_empty());
    }
}

#[test]
fn a_credential_echoed_form_encoded_is_cut_too() {
    let body = r#"{"error":"invalid_client","error_description":"client_secret=s%2Fcr%2Bt%3D%3D rejected"}"#;
    let err = parse_response(401, body.as_bytes(), &["s/cr+t=="]).unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(
        !text.contains("s%2Fcr%2Bt") && text.contains("[redacted]"),
        "{text}"
    );
}
