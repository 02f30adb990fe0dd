//! The token client: one OAuth 2.0 client-credentials request (RFC 6749 §4.4) to a customer's
//! token endpoint, authenticated with `client_secret_post` or `private_key_jwt`, and the parsing
//! of its answer.
//!
//! The HTTP client comes from the caller: it is the delivery client, which enforces the network
//! safety rules on every name it resolves (no private addresses, checked on the connected
//! address), the timeout and no redirects. This module adds the response size limit, and the
//! same rules for a token endpoint written as an IP literal (which no resolver sees): the
//! client holds an [`AddressPolicy`], the strict default unless told otherwise, so no caller
//! can skip the check.
//!
//! Every [`TokenError`] is safe to log and to record: no message carries the client secret, the
//! assertion, the token, the response body or the token endpoint URL (its query could hold
//! secrets). An RFC 6749 error keeps its `error` code and a short, scrubbed `error_description`.

use std::{time::Duration, time::SystemTime};

use reqwest::header::ACCEPT;
use serde_json::Value;

use super::{account_keys::AccountKeys, assertion};
use crate::{
    net::{resolver, AddressPolicy},
    secret::Secret,
    webhook::{OidcAuthMethod, OidcSettings},
};

pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Longest `error_description` kept from a token endpoint's error answer.
const MAX_DESCRIPTION_CHARS: usize = 120;

/// Why no access token was obtained. Every message is safe to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token endpoint answered with an RFC 6749 error (`invalid_client`, `invalid_scope`, ...).
    #[error(
        "token endpoint refused the request (HTTP {status}): {code}{}",
        .description.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
    )]
    Rejected {
        status: u16,
        code: String,
        description: Option<String>,
    },
    /// A non-2xx answer that is not an RFC 6749 error (a 3xx counts: redirects are not followed).
    #[error("token endpoint answered HTTP {status}")]
    Status { status: u16 },
    #[error("token endpoint did not answer in time")]
    Timeout,
    #[error("cannot reach the token endpoint: {0}")]
    Transport(String),
    #[error("invalid token response: {0}")]
    InvalidResponse(String),
    #[error("no signing key for the account: {0}")]
    NoSigningKey(String),
    #[error("{0}")]
    Assertion(String),
    #[error("incomplete OIDC settings: {0}")]
    Settings(&'static str),
    /// The token endpoint is, or resolves only to, an address the address rules refuse.
    #[error("token endpoint refused by the address rules: {0}")]
    Blocked(String),
}

impl TokenError {
    /// A short reason for dead-letter headers and logs: the OAuth error code when the endpoint
    /// gave one (`invalid_client`), else a fixed word.
    pub fn reason(&self) -> String {
        match self {
            TokenError::Rejected { code, .. } => code.clone(),
            TokenError::Status { status } => format!("token_endpoint_http_{status}"),
            TokenError::Timeout => "token_endpoint_timeout".into(),
            TokenError::Transport(_) => "token_endpoint_unreachable".into(),
            TokenError::InvalidResponse(_) => "invalid_token_response".into(),
            TokenError::NoSigningKey(_) => "no_signing_key".into(),
            TokenError::Assertion(_) => "client_assertion_failed".into(),
            TokenError::Settings(_) => "oidc_settings_incomplete".into(),
            TokenError::Blocked(_) => "blocked_address".into(),
        }
    }

    /// The `outcome` label of the `token_requests` metric.
    pub fn outcome(&self) -> &'static str {
        match self {
            TokenError::Rejected { .. } => "rejected",
            TokenError::Status { .. } => "http_error",
            TokenError::Timeout => "timeout",
            TokenError::Transport(_) => "transport_error",
            TokenError::InvalidResponse(_) => "invalid_response",
            TokenError::NoSigningKey(_)
            | TokenError::Assertion(_)
            | TokenError::Settings(_)
            | TokenError::Blocked(_) => "not_sent",
        }
    }
}

/// An access token as the endpoint issued it.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub access_token: Secret,
    /// `expires_in`, when the endpoint said.
    pub expires_in: Option<Duration>,
}

/// Sends client-credentials requests. Use it through [`super::TokenProvider`], which caches.
#[derive(Debug, Clone)]
pub struct TokenClient {
    http: reqwest::Client,
    keys: AccountKeys,
    assertion_lifetime: Duration,
    max_response_bytes: usize,
    /// Judges token endpoints written as IP literals; names are judged by the client's resolver.
    policy: AddressPolicy,
}

impl TokenClient {
    pub fn new(
        http: reqwest::Client,
        keys: AccountKeys,
        assertion_lifetime: Duration,
        max_response_bytes: usize,
    ) -> Self {
        TokenClient {
            http,
            keys,
            assertion_lifetime,
            max_response_bytes,
            policy: AddressPolicy::default(),
        }
    }

    /// Address rules other than the strict default (`delivery.allow_networks`); they should be
    /// the rules of the HTTP client's resolver.
    pub fn with_address_policy(mut self, policy: AddressPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn keys(&self) -> &AccountKeys {
        &self.keys
    }

    /// One token request, no cache.
    pub async fn request(&self, settings: &OidcSettings) -> Result<IssuedToken, TokenError> {
        let endpoint = settings.token_endpoint.url().clone();
        resolver::check_literal(&endpoint, &self.policy)
            .map_err(|refused| TokenError::Blocked(refused.to_string()))?;
        // The credential sent, so an error description that echoes it can be scrubbed.
        let credential = self.credential(settings).await?;
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "client_credentials"),
            ("client_id", &settings.client_id),
        ];
        match settings.method {
            OidcAuthMethod::ClientSecret => form.push(("client_secret", credential.expose())),
            OidcAuthMethod::PrivateKeyJwt => {
                form.push(("client_assertion_type", CLIENT_ASSERTION_TYPE));
                form.push(("client_assertion", credential.expose()));
            }
        }
        if let Some(scope) = settings.scope.as_deref().filter(|s| !s.is_empty()) {
            form.push(("scope", scope));
        }
        if let Some(resource) = settings.resource.as_deref().filter(|s| !s.is_empty()) {
            form.push(("resource", resource));
        }
        let response = self
            .http
            .post(endpoint)
            .header(ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status().as_u16();
        let body = read_limited(response, self.max_response_bytes).await?;
        parse_response(status, &body, &[credential.expose()])
    }

    /// The client secret, or a freshly signed client assertion.
    async fn credential(&self, settings: &OidcSettings) -> Result<Secret, TokenError> {
        match settings.method {
            OidcAuthMethod::ClientSecret => settings
                .client_secret
                .clone()
                .ok_or(TokenError::Settings("client_secret is missing")),
            OidcAuthMethod::PrivateKeyJwt => {
                // The account's own key, and no other: the tenant boundary.
                let key = self
                    .keys
                    .signing_key(&settings.account_id)
                    .await
                    .map_err(|e| TokenError::NoSigningKey(e.to_string()))?;
                let claims = assertion::AssertionClaims::new(
                    &settings.client_id,
                    settings.token_endpoint.as_str(),
                    SystemTime::now(),
                    self.assertion_lifetime,
                );
                assertion::sign(&key, &claims)
                    .map_err(|error| TokenError::Assertion(error.to_string()))
            }
        }
    }
}

/// A reqwest error without the URL, with its causes, shortened.
fn transport_error(error: reqwest::Error) -> TokenError {
    if error.is_timeout() {
        return TokenError::Timeout;
    }
    if resolver::is_blocked(&error) {
        return TokenError::Blocked("the host resolves only to non-public addresses".into());
    }
    let error = error.without_url();
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    TokenError::Transport(truncate(&message, 300))
}

/// Reads the body, refusing one longer than `limit` bytes (checked as it arrives).
async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, TokenError> {
    let too_large =
        || TokenError::InvalidResponse(format!("the response body is larger than {limit} bytes"));
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Turns a token endpoint's answer into a token or an error. `credentials` are scrubbed from
/// any `error_description` that is kept.
pub fn parse_response(
    status: u16,
    body: &[u8],
    credentials: &[&str],
) -> Result<IssuedToken, TokenError> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    // An RFC 6749 §5.2 error, whatever the status (some servers send errors with 200).
    if let Some(code) = json.as_ref().and_then(|v| v.get("error")) {
        let description = json
            .as_ref()
            .and_then(|v| v.get("error_description"))
            .and_then(Value::as_str);
        return Err(TokenError::Rejected {
            status,
            code: error_code(code),
            description: description.and_then(|d| scrub(d, credentials)),
        });
    }
    if !(200..300).contains(&status) {
        return Err(TokenError::Status { status });
    }
    let invalid = |message: &str| TokenError::InvalidResponse(message.to_string());
    let object = json
        .as_ref()
        .ok_or_else(|| invalid("the body is not JSON"))?
        .as_object()
        .ok_or_else(|| invalid("the body is not a JSON object"))?;
    let access_token = object
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid("access_token is missing or empty"))?;
    // It goes into an Authorization header: visible ASCII only.
    if !access_token.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(invalid(
            "access_token has characters an HTTP header cannot carry",
        ));
    }
    match object.get("token_type").and_then(Value::as_str) {
        Some(kind) if kind.eq_ignore_ascii_case("bearer") => {}
        Some(kind) => {
            return Err(TokenError::InvalidResponse(format!(
                "token_type is {}, not Bearer",
                short_word(kind)
            )))
        }
        None => return Err(invalid("token_type is missing")),
    }
    let expires_in = match object.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            parse_expires_in(value)
                .ok_or_else(|| invalid("expires_in is not a non-negative number of seconds"))?,
        ),
    };
    Ok(IssuedToken {
        access_token: Secret::new(access_token),
        expires_in,
    })
}

/// `expires_in` as a number, or as a numeric string (Entra's v1 endpoint sends `"3599"`).
fn parse_expires_in(value: &Value) -> Option<Duration> {
    let seconds = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    // Below 2^53: exact in f64, and far beyond any real token lifetime.
    (seconds.is_finite() && (0.0..9.0e15).contains(&seconds))
        .then(|| Duration::from_secs(seconds as u64))
}

/// The `error` member, kept when it looks like an RFC 6749 code (it becomes a metric-free
/// dead-letter reason); anything else is reported as `unrecognized_error`.
fn error_code(value: &Value) -> String {
    match value.as_str() {
        Some(code)
            if (1..=64).contains(&code.len())
                && code
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b)) =>
        {
            code.to_string()
        }
        _ => "unrecognized_error".to_string(),
    }
}

/// A description fit to log: printable ASCII, credentials cut out, at most
/// [`MAX_DESCRIPTION_CHARS`]; `None` when nothing is left.
fn scrub(description: &str, credentials: &[&str]) -> Option<String> {
    // Cut credentials out of the raw text first: the character filter below could otherwise
    // change an echoed credential so that it no longer matches.
    let mut raw = description.to_string();
    for credential in credentials.iter().filter(|c| !c.is_empty()) {
        // As sent (form-encoded) too: an endpoint may echo the request body.
        let encoded: String = url::form_urlencoded::byte_serialize(credential.as_bytes()).collect();
        raw = raw
            .replace(*credential, "[redacted]")
            .replace(&encoded, "[redacted]");
    }
    let text: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    let text = truncate(text.trim(), MAX_DESCRIPTION_CHARS);
    (!text.is_empty()).then_some(text)
}

/// A value from the response shown in an error only when it is a short plain word.
fn short_word(text: &str) -> String {
    if text.len() <= 20 && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        format!("{text:?}")
    } else {
        "not a known type".to_string()
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
#[path = "token_tests.rs"]
mod tests;
