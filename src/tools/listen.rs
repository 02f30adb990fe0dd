//! `webhook-worker listen`: a local receiver for development, in the spirit of `stripe listen`.
//! It answers every POST, checks the signature with the secret it was given, and prints one line
//! per delivery: time, event type, event id, attempt, signature (`ok`, `ok (previous secret)`,
//! `BAD`, `unsigned`, or `not checked` without `--secret`) and body size; `--verbose` adds the
//! headers and the pretty-printed body, `--status` answers with another status to watch retries.
//! It needs no broker and no database.
//!
//! A Standard Webhooks delivery (one with `webhook-signature`) has its signature checked too, and
//! is refused with 400 when its `webhook-timestamp` is outside `--tolerance` or it replays one
//! already accepted ([`checks`]); the line says which check failed.
//!
//! The secret is only compared with (constant time), never printed.

pub mod checks;

use std::{io::Write, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    Router,
};
use subtle::ConstantTimeEq;

use self::checks::{
    check_standard, Freshness, Rejection, ReplayGuard, StandardCheck, StandardHeaders,
};
use crate::{secret::Secret, signing::sign};

/// Parses `--bind`, with an error that shows the form wanted rather than the parser's "invalid
/// IP address syntax".
pub fn bind_address(text: &str) -> Result<std::net::IpAddr, &'static str> {
    text.trim().parse().map_err(|_| {
        "expected an IP address, e.g. 127.0.0.1, 0.0.0.0 or ::1 (not a host name or a port)"
    })
}

pub struct ListenOptions {
    pub bind: SocketAddr,
    pub secret: Option<Secret>,
    pub signature_header: String,
    pub status: StatusCode,
    pub verbose: bool,
    /// How far `webhook-timestamp` may be from now; also how long accepted deliveries are
    /// remembered to refuse replays.
    pub tolerance: Duration,
}

/// What the signature check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureCheck {
    Ok,
    /// Only `<header>-Previous` matched: the secret a rotation replaced, during its overlap.
    OkPrevious,
    Bad,
    Unsigned,
    NotChecked,
}

impl SignatureCheck {
    pub fn word(self) -> &'static str {
        match self {
            SignatureCheck::Ok => "ok",
            SignatureCheck::OkPrevious => "ok (previous secret)",
            SignatureCheck::Bad => "BAD",
            SignatureCheck::Unsigned => "unsigned",
            SignatureCheck::NotChecked => "not checked (no --secret)",
        }
    }
}

/// Checks `presented` (lowercase hex HMAC-SHA256) against the body and `secret`.
pub fn check(secret: Option<&Secret>, presented: Option<&str>, body: &[u8]) -> SignatureCheck {
    match (presented, secret) {
        (None, _) => SignatureCheck::Unsigned,
        (Some(_), None) => SignatureCheck::NotChecked,
        (Some(presented), Some(secret)) => {
            let expected = sign(secret.expose().as_bytes(), body);
            let same = expected.as_bytes().ct_eq(presented.trim().as_bytes());
            if bool::from(same) {
                SignatureCheck::Ok
            } else {
                SignatureCheck::Bad
            }
        }
    }
}

/// Checks the platform's header, then (when it does not match) `<header>-Previous`: during a
/// rotation's overlap, a receiver that still has the replaced secret matches that one.
pub fn check_platform(
    secret: Option<&Secret>,
    presented: Option<&str>,
    previous: Option<&str>,
    body: &[u8],
) -> SignatureCheck {
    match check(secret, presented, body) {
        SignatureCheck::Ok => SignatureCheck::Ok,
        found => match (found, check(secret, previous, body)) {
            (_, SignatureCheck::Ok) => SignatureCheck::OkPrevious,
            (SignatureCheck::Unsigned, SignatureCheck::Bad) => SignatureCheck::Bad,
            (found, _) => found,
        },
    }
}

/// Everything `listen` found of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub signature: SignatureCheck,
    /// For a Standard Webhooks delivery: its `webhook-signature`.
    pub standard: Option<StandardCheck>,
    /// For a Standard Webhooks delivery whose signatures are not BAD: its time and novelty.
    pub freshness: Option<Result<Freshness, Rejection>>,
}

impl Verdict {
    /// What the line adds after the platform's check.
    fn suffix(&self) -> String {
        let mut text = String::new();
        if let Some(standard) = self.standard {
            text.push_str(&format!(" webhook-signature {}", standard.word()));
        }
        match &self.freshness {
            Some(Ok(Freshness::Repeat)) => text.push_str(" (a repeat of this webhook-id)"),
            Some(Err(rejection)) => text.push_str(&format!(" REJECTED (400): {rejection}")),
            _ => {}
        }
        text
    }

    fn rejected(&self) -> bool {
        matches!(self.freshness, Some(Err(_)))
    }
}

/// One delivery as `listen` prints it.
pub fn summary(headers: &HeaderMap, body: &[u8], signature: SignatureCheck) -> String {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string()
    };
    format!(
        "{} {} {} attempt {} signature {} {} bytes",
        crate::webhook::timestamp(chrono::Utc::now()),
        header("x-webhook-event-type"),
        header("x-webhook-event-id"),
        header("x-webhook-attempt"),
        signature.word(),
        body.len()
    )
}

struct Listener {
    options: ListenOptions,
    replays: ReplayGuard,
}

impl Listener {
    fn verdict(&self, headers: &HeaderMap, body: &[u8]) -> Verdict {
        let options = &self.options;
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let secret = options.secret.as_ref();
        let previous = format!("{}-Previous", options.signature_header);
        let presented = header(options.signature_header.as_str());
        let signature = check_platform(secret, presented, header(&previous), body);
        let standard = match (
            header("webhook-id"),
            header("webhook-timestamp"),
            header("webhook-signature"),
        ) {
            (Some(id), Some(timestamp), Some(signature)) => Some(StandardHeaders {
                id,
                timestamp,
                signature,
            }),
            _ => None,
        };
        let standard_check = standard.map(|headers| check_standard(secret, headers, body));
        let bad = signature == SignatureCheck::Bad || standard_check == Some(StandardCheck::Bad);
        // Only a delivery whose signatures hold is remembered: a forged one proves nothing.
        let freshness = standard.filter(|_| !bad).map(|headers| {
            let now = chrono::Utc::now().timestamp();
            self.replays.accept(headers.id, headers.timestamp, now)
        });
        Verdict {
            signature,
            standard: standard_check,
            freshness,
        }
    }
}

async fn receive(
    State(listener): State<Arc<Listener>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let options = &listener.options;
    let verdict = listener.verdict(&headers, &body);
    let mut text = summary(&headers, &body, verdict.signature);
    text.push_str(&verdict.suffix());
    if options.verbose {
        for (name, value) in &headers {
            let shown = match name.as_str() {
                // Bearer tokens are credentials: show that one came, not what it was.
                "authorization" => "[redacted]",
                _ => value.to_str().unwrap_or("[not text]"),
            };
            text.push_str(&format!("\n  {name}: {shown}"));
        }
        let pretty = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        text.push('\n');
        text.push_str(&pretty);
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
    if verdict.rejected() {
        StatusCode::BAD_REQUEST
    } else {
        options.status
    }
}

/// Serves until SIGINT/SIGTERM.
pub async fn run(options: ListenOptions) -> anyhow::Result<()> {
    let tcp = tokio::net::TcpListener::bind(options.bind)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", options.bind))?;
    let address = tcp.local_addr()?;
    println!(
        "listening on http://{address}/ (answering {}; signature header {}; {}; \
         webhook-timestamp tolerance {}s)",
        options.status.as_u16(),
        options.signature_header,
        if options.secret.is_some() {
            "checking signatures"
        } else {
            "no --secret: signatures not checked"
        },
        options.tolerance.as_secs(),
    );
    let _ = std::io::stdout().flush();
    let replays = ReplayGuard::new(options.tolerance);
    let router = Router::new()
        .fallback(receive)
        .with_state(Arc::new(Listener { options, replays }));
    axum::serve(tcp, router)
        .with_graceful_shutdown(crate::shutdown::signal())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_ok_bad_unsigned_or_not_checked() {
        let secret = Secret::new("whsec_test");
        let body = br#"{"id":"e1"}"#;
        let good = sign(b"whsec_test", body);
        let other = sign(b"whsec_other", body);
        assert_eq!(check(Some(&secret), Some(&good), body), SignatureCheck::Ok);
        assert_eq!(
            check(Some(&secret), Some(&other), body),
            SignatureCheck::Bad
        );
        assert_eq!(check(Some(&secret), Some("zz"), body), SignatureCheck::Bad);
        assert_eq!(check(Some(&secret), None, body), SignatureCheck::Unsigned);
        assert_eq!(check(None, Some(&good), body), SignatureCheck::NotChecked);
    }

    #[test]
    fn the_previous_secrets_header_passes_when_the_current_one_does_not() {
        let (old, new) = (Secret::new("whsec_old"), Secret::new("whsec_new"));
        let body = b"{}";
        let (by_new, by_old) = (sign(b"whsec_new", body), sign(b"whsec_old", body));
        let check = |secret, presented: &str, previous: Option<&str>| {
            check_platform(Some(secret), Some(presented), previous, body)
        };
        assert_eq!(check(&new, &by_new, Some(&by_old)), SignatureCheck::Ok);
        assert_eq!(
            check(&old, &by_new, Some(&by_old)),
            SignatureCheck::OkPrevious
        );
        assert_eq!(check(&old, &by_new, None), SignatureCheck::Bad);
        let other = Secret::new("whsec_other");
        assert_eq!(check(&other, &by_new, Some(&by_old)), SignatureCheck::Bad);
        assert_eq!(
            check_platform(Some(&new), None, None, body),
            SignatureCheck::Unsigned
        );
    }

    fn listener(secret: &str) -> Listener {
        let options = ListenOptions {
            bind: "127.0.0.1:0".parse().unwrap(),
            secret: Some(Secret::new(secret)),
            signature_header: "X-Sig".into(),
            status: StatusCode::OK,
            verbose: false,
            tolerance: Duration::from_secs(300),
        };
        Listener {
            replays: ReplayGuard::new(options.tolerance),
            options,
        }
    }

    /// A Standard Webhooks delivery's headers, signed with `secret` at `timestamp`.
    fn delivery(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> HeaderMap {
        let key = crate::signing::StandardKey::parse(secret).unwrap();
        let at = timestamp.to_string();
        let mut headers = HeaderMap::new();
        headers.insert("X-Sig", sign(secret.as_bytes(), body).parse().unwrap());
        headers.insert("webhook-id", id.parse().unwrap());
        headers.insert("webhook-timestamp", at.parse().unwrap());
        let signature = crate::signing::standard_signatures([&key], id, &at, body);
        headers.insert("webhook-signature", signature.parse().unwrap());
        headers
    }

    #[test]
    fn a_standard_delivery_is_checked_refused_when_stale_or_replayed_and_says_why() {
        let secret = crate::signing::new_standard_secret();
        let listener = listener(&secret);
        let (body, now) = (br#"{"id":"e1"}"#, chrono::Utc::now().timestamp());
        let fresh = delivery(&secret, "e1", now, body);
        let verdict = listener.verdict(&fresh, body);
        assert_eq!(verdict.signature, SignatureCheck::Ok);
        assert_eq!(verdict.standard, Some(StandardCheck::Ok));
        assert_eq!(verdict.freshness, Some(Ok(Freshness::New)));
        assert_eq!(verdict.suffix(), " webhook-signature ok");

        let replayed = listener.verdict(&fresh, body);
        assert!(replayed.rejected());
        assert!(
            replayed.suffix().contains("REJECTED (400): replayed"),
            "{replayed:?}"
        );
        let retry = listener.verdict(&delivery(&secret, "e1", now - 1, body), body);
        assert_eq!(retry.freshness, Some(Ok(Freshness::Repeat)));

        let stale = listener.verdict(&delivery(&secret, "e2", now - 600, body), body);
        assert!(stale.rejected());
        assert!(
            stale.suffix().contains("outside the tolerance of 300s"),
            "{stale:?}"
        );

        // A forged one is BAD, not remembered: the genuine one still passes after it.
        let forged = delivery(&crate::signing::new_standard_secret(), "e3", now, body);
        let verdict = listener.verdict(&forged, body);
        assert_eq!(verdict.standard, Some(StandardCheck::Bad));
        assert_eq!(verdict.freshness, None);
        let genuine = listener.verdict(&delivery(&secret, "e3", now, body), body);
        assert_eq!(genuine.freshness, Some(Ok(Freshness::New)));
        assert!(!genuine.suffix().contains(&secret));
    }

    #[test]
    fn the_summary_names_the_event_and_the_check() {
        let mut headers = HeaderMap::new();
        headers.insert("x-webhook-event-type", "business.updated".parse().unwrap());
        headers.insert("x-webhook-event-id", "e1".parse().unwrap());
        headers.insert("x-webhook-attempt", "2".parse().unwrap());
        let line = summary(&headers, b"12345", SignatureCheck::Bad);
        assert!(
            line.ends_with(" business.updated e1 attempt 2 signature BAD 5 bytes"),
            "{line}"
        );
    }
}
