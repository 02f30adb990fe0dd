//! One HTTP delivery attempt: build the signed request, send it through the shared client, and
//! classify the result. The clients are built once ([`client`]): connection pooling, a timeout on
//! every request, no redirects, no proxies, and the [`resolver::SafeResolver`] on every
//! connection. What a result means for the delivery and for the endpoint's health is
//! [`outcome`]'s to say.

mod client;
pub mod failing;
pub mod health;
pub mod outcome;
mod pool;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{
    header::{
        InvalidHeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST,
        USER_AGENT as USER_AGENT_HEADER,
    },
    HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode,
};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Incoming};

use crate::{
    config::Config,
    event::{Body, Event},
    net::{resolver, AddressPolicy, RequestTarget},
    oidc::TokenProvider,
    secret::Secret,
    signing::{sign, standard_signatures, SignatureFormat},
    telemetry::Metrics,
    webhook::{OidcSettings, Webhook},
};

// Named once: a name given as text is parsed, lower-cased and allocated on every request.
const EVENT_ID: HeaderName = HeaderName::from_static("x-webhook-event-id");
const EVENT_TYPE: HeaderName = HeaderName::from_static("x-webhook-event-type");
const ATTEMPT: HeaderName = HeaderName::from_static("x-webhook-attempt");
const CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");
const STANDARD_ID: HeaderName = HeaderName::from_static("webhook-id");
const STANDARD_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");
const STANDARD_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");

pub const USER_AGENT: &str = concat!("webhook-worker/", env!("CARGO_PKG_VERSION"));

/// Room for every header a request can carry, so the map is allocated once and never grows.
const HEADERS: usize = 16;

pub use client::{mark_delivery_thread, ClientError};

/// Why an attempt failed, safe to log and to put in dead-letter headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The HTTP status, when the endpoint answered.
    pub status: Option<u16>,
    /// A short code (`http_503`, `timeout`, `connect`, `blocked_address`, `token:invalid_client`)
    /// and detail.
    pub reason: String,
    /// What failed, for [`outcome`]: never decided by matching `reason`.
    pub kind: FailureKind,
}

/// The kind of a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The endpoint answered a non-2xx status; with the wait its `Retry-After` asked for.
    Status { retry_after: Option<Duration> },
    /// No answer in time.
    Timeout,
    /// No connection.
    Connect,
    /// Refused or failed on this side, saying nothing of the endpoint (blocked address, token,
    /// invalid URL, unreadable response).
    Local,
}

impl Failure {
    /// A failure on this side: see [`FailureKind::Local`].
    pub fn new(reason: impl Into<String>) -> Self {
        Self::of_kind(FailureKind::Local, reason)
    }

    /// The endpoint did not answer in time (also for a deadline over the whole attempt).
    pub fn timeout() -> Self {
        Self::of_kind(FailureKind::Timeout, "timeout")
    }

    pub fn of_kind(kind: FailureKind, reason: impl Into<String>) -> Self {
        Self {
            status: None,
            reason: reason.into(),
            kind,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    Delivered { status: u16 },
    Failed(Failure),
}

/// What a delivery attempt needs besides the webhook.
pub struct Attempt<'a> {
    pub event: &'a Event,
    pub body: Body,
    pub correlation_id: Option<&'a str>,
    pub number: u32,
}

#[derive(Clone)]
pub struct Deliverer {
    clients: client::DeliveryClients,
    /// reqwest, for OAuth token endpoints: see [`Deliverer::client`].
    token_client: reqwest::Client,
    policy: AddressPolicy,
    /// `delivery.timeout`: bounds each request, reading the response included.
    timeout: Duration,
    signature_header: HeaderName,
    /// `<signature.header>-Previous`: the previous secret's signature during an overlap.
    previous_signature_header: HeaderName,
    max_response_bytes: usize,
    /// Bounds the whole attempt, token requests and the retry after a 401 included.
    attempt_deadline: Duration,
    tokens: Option<TokenProvider>,
    metrics: Metrics,
}

impl Deliverer {
    /// A deliverer without token acquisition; see [`Deliverer::with_tokens`].
    pub fn new(config: &Config, metrics: Metrics) -> Result<Self, ClientError> {
        let policy = AddressPolicy::new(config.delivery.allow_networks.clone());
        let timeout = config.delivery.timeout.0;
        // One resolver for both clients, so they share its cache.
        let resolver = resolver::SafeResolver::new(policy.clone())?;
        Ok(Self {
            clients: client::DeliveryClients::new(config.delivery.threads, timeout, &resolver)?,
            token_client: client::token_client(timeout, resolver)?,
            policy,
            timeout,
            signature_header: HeaderName::try_from(config.signature.header.as_str())?,
            previous_signature_header: HeaderName::try_from(config.signature.previous_header())?,
            max_response_bytes: config.delivery.max_response_bytes,
            attempt_deadline: config.delivery.attempt_deadline(),
            tokens: None,
            metrics,
        })
    }

    /// Token acquisition for webhooks with OIDC settings. The provider should use
    /// [`Deliverer::client`], so token endpoints get the same address rules as webhooks.
    pub fn with_tokens(mut self, tokens: TokenProvider) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// The client for other outbound calls to customer-controlled URLs (token endpoints): the
    /// delivery client's resolver, timeouts and rules, in reqwest.
    pub fn client(&self) -> &reqwest::Client {
        &self.token_client
    }

    /// The address rules of [`Deliverer::client`], for the token client's IP-literal check.
    pub fn policy(&self) -> &AddressPolicy {
        &self.policy
    }

    /// One attempt, ended at `delivery.attempt_deadline` however many requests it made. Ending
    /// drops every request in flight, DNS lookups included (the resolver is async).
    pub async fn deliver(&self, webhook: &Webhook, attempt: &Attempt<'_>) -> AttemptResult {
        let started = Instant::now();
        let result = if webhook.oidc.is_some() {
            // Boxed: two requests and a token's fetch, held inline, would make every
            // delivery's future that much larger, OAuth or not (see `send`).
            Box::pin(tokio::time::timeout(
                self.attempt_deadline,
                self.deliver_with_token_refresh(webhook, attempt),
            ))
            .await
            .unwrap_or_else(|_| {
                AttemptResult::Failed(Failure::of_kind(
                    FailureKind::Timeout,
                    "timeout: the attempt deadline passed",
                ))
            })
        } else {
            // One request, bounded by `delivery.timeout`, which the config holds to at most the
            // attempt deadline: a second timer per attempt would never fire first.
            self.send(webhook, None, attempt).await.0
        };
        self.metrics
            .delivery_seconds
            .observe(started.elapsed().as_secs_f64());
        result
    }

    /// A 401/403 from an OIDC webhook drops the cached token and tries once more at once with a
    /// fresh one, before the attempt counts as failed: customers rotate keys and revoke tokens.
    async fn deliver_with_token_refresh(
        &self,
        webhook: &Webhook,
        attempt: &Attempt<'_>,
    ) -> AttemptResult {
        let oidc = webhook.oidc.as_ref();
        let (result, token) = self.send(webhook, oidc, attempt).await;
        let rejected = matches!(
            &result,
            AttemptResult::Failed(Failure {
                status: Some(401 | 403),
                ..
            })
        );
        match (oidc, &self.tokens, token) {
            (Some(settings), Some(tokens), Some(token)) if rejected => {
                // Only if it is still the cached one: concurrent rejections refresh it once.
                tokens.invalidate_token(settings, &token).await;
                self.send(webhook, oidc, attempt).await.0
            }
            _ => result,
        }
    }

    /// One request; also returns the access token it carried, if any.
    async fn send(
        &self,
        webhook: &Webhook,
        oidc: Option<&OidcSettings>,
        attempt: &Attempt<'_>,
    ) -> (AttemptResult, Option<Secret>) {
        let failed = |reason: String| (AttemptResult::Failed(Failure::new(reason)), None);
        if let Err(detail) = resolver::check_literal(webhook.url.url(), &self.policy) {
            return failed(format!("blocked_address: {detail}"));
        }
        let token = match (oidc, &self.tokens) {
            (None, _) => None,
            (Some(_), None) => return failed("token: no token provider".into()),
            // Boxed: the token request's future is ~12 KB, and held inline it made every
            // delivery's future (and task) that large, OIDC or not; copying them was ~5 % of
            // the worker's CPU in the profile.
            (Some(settings), Some(tokens)) => match Box::pin(self.token(tokens, settings)).await {
                Ok(token) => Some(token),
                Err(error) => return failed(format!("token: {}", error.reason())),
            },
        };
        // No target (a scheme other than http(s), or a URL `http::Uri` refuses), or a header
        // value no request can carry: refused before sending, as reqwest refused them.
        let target = webhook.url.target();
        let request = target.and_then(|target| {
            self.request(target, webhook, token.as_ref(), attempt)
                .ok()
                .map(|request| (target, request))
        });
        let Some((target, request)) = request else {
            let failure = Failure::new("request: the request failed");
            return (AttemptResult::Failed(failure), token);
        };
        (self.exchange(target, request).await, token)
    }

    /// Sends the request and reads the response, both within `delivery.timeout`: one timer
    /// for both. The connection goes back to the pool only once the whole body is read.
    async fn exchange(
        &self,
        target: &RequestTarget,
        request: Request<Full<Bytes>>,
    ) -> AttemptResult {
        let deadline = tokio::time::sleep(self.timeout);
        tokio::pin!(deadline);
        let sending = self
            .clients
            .current()
            .send(&target.uri, &target.key, request);
        let (response, lease) = tokio::select! {
            biased;
            sent = sending => match sent {
                Ok(sent) => sent,
                Err(error) => return AttemptResult::Failed(client::describe(&error)),
            },
            () = &mut deadline => return AttemptResult::Failed(Failure::timeout()),
        };
        let status = response.status();
        let retry_after = if status.is_success() {
            None
        } else {
            outcome::retry_after(status.as_u16(), response.headers(), chrono::Utc::now())
        };
        // The answer is in: a body that is slow to come only costs its connection.
        let read = tokio::select! {
            biased;
            read = self.drain(response.into_body()) => read,
            () = &mut deadline => false,
        };
        if read {
            lease.release();
        }
        classify(status, retry_after)
    }

    /// An access token; the token client applies the address rules to the token endpoint.
    async fn token(
        &self,
        tokens: &TokenProvider,
        settings: &OidcSettings,
    ) -> Result<Secret, crate::oidc::TokenError> {
        tokens.token(settings).await
    }

    /// The request, its headers in one map sized once. Values convert as reqwest converted them
    /// (text strictly, formatted values as bytes), so what it refused is refused.
    fn request(
        &self,
        target: &RequestTarget,
        webhook: &Webhook,
        token: Option<&Secret>,
        attempt: &Attempt<'_>,
    ) -> Result<Request<Full<Bytes>>, InvalidHeaderValue> {
        let mut headers = HeaderMap::with_capacity(HEADERS);
        if let Some(basic) = &target.basic_auth {
            headers.append(AUTHORIZATION, basic.clone());
        }
        headers.append(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.append(EVENT_ID, HeaderValue::try_from(attempt.event.id.as_str())?);
        headers.append(
            EVENT_TYPE,
            HeaderValue::try_from(attempt.event.event_type.as_str())?,
        );
        headers.append(ATTEMPT, HeaderValue::from(attempt.number));
        if let Some(correlation_id) = attempt.correlation_id {
            headers.append(CORRELATION_ID, HeaderValue::try_from(correlation_id)?);
        }
        self.sign(&mut headers, webhook, attempt)?;
        if let Some(token) = token {
            match HeaderValue::try_from(format!("Bearer {}", token.expose())) {
                Ok(mut value) => {
                    value.set_sensitive(true);
                    headers.append(AUTHORIZATION, value);
                }
                // A token with characters no header can carry: send without, the endpoint
                // answers 401, and the attempt fails with a reason that names no token.
                Err(_) => tracing::warn!("access token is not a valid header value"),
            }
        }
        // The client's defaults, after the request's own headers as reqwest added them.
        headers
            .entry(USER_AGENT_HEADER)
            .or_insert(HeaderValue::from_static(USER_AGENT));
        headers
            .entry(ACCEPT)
            .or_insert(HeaderValue::from_static("*/*"));
        // Formatted once per webhook rather than by hyper-util on every request.
        headers.entry(HOST).or_insert_with(|| target.host.clone());
        let mut request = Request::new(Full::new(attempt.body.clone()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = target.origin.clone();
        *request.headers_mut() = headers;
        Ok(request)
    }

    /// The signature headers: the platform's (and its `-Previous` during a rotation's overlap)
    /// for every webhook with a secret, and for `standard_webhooks` the specification's three,
    /// signed at this attempt's time with keys decoded when the webhook was read.
    fn sign(
        &self,
        headers: &mut HeaderMap,
        webhook: &Webhook,
        attempt: &Attempt<'_>,
    ) -> Result<(), InvalidHeaderValue> {
        let Some(secret) = &webhook.secret else {
            return Ok(());
        };
        let now = chrono::Utc::now();
        let body: &[u8] = &attempt.body;
        let previous = webhook.previous_secret_at(now);
        headers.append(
            self.signature_header.clone(),
            HeaderValue::try_from(sign(secret.expose().as_bytes(), body))?,
        );
        if let Some(previous) = previous {
            headers.append(
                self.previous_signature_header.clone(),
                HeaderValue::try_from(sign(previous.secret.expose().as_bytes(), body))?,
            );
        }
        let keys = &webhook.standard_keys;
        let Some(current) = keys.current.as_ref() else {
            return Ok(());
        };
        if webhook.signature_format != SignatureFormat::StandardWebhooks {
            return Ok(());
        }
        let id = attempt.event.id.as_str();
        let timestamp = now.timestamp().to_string();
        // The previous key only while its overlap runs (and only if it is a Standard key).
        let previous_key = previous.and(keys.previous.as_ref());
        let signatures = standard_signatures(
            std::iter::once(current).chain(previous_key),
            id,
            &timestamp,
            body,
        );
        headers.append(STANDARD_ID, HeaderValue::try_from(id)?);
        headers.append(STANDARD_SIGNATURE, HeaderValue::try_from(signatures)?);
        headers.append(STANDARD_TIMESTAMP, HeaderValue::try_from(timestamp)?);
        Ok(())
    }

    /// Reads the response body up to the limit, so the connection can be reused; the rest is
    /// dropped with the connection, as is the body after a read error. Whether it read the
    /// body to its end.
    async fn drain(&self, mut body: Incoming) -> bool {
        let mut read = 0usize;
        while read < self.max_response_bytes {
            match body.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
                Some(Err(_)) => return false,
                None => return true,
            }
        }
        body.is_end_stream()
    }
}

fn classify(status: StatusCode, retry_after: Option<Duration>) -> AttemptResult {
    if status.is_success() {
        AttemptResult::Delivered {
            status: status.as_u16(),
        }
    } else {
        let kind = if status.is_redirection() {
            "redirect"
        } else {
            "http"
        };
        AttemptResult::Failed(Failure {
            status: Some(status.as_u16()),
            reason: format!("{kind}_{}", status.as_u16()),
            kind: FailureKind::Status { retry_after },
        })
    }
}
