//! `webhook-worker listen`: a local receiver for development, in the spirit of `stripe listen`.
//! It answers every POST, checks the signature with the secret it was given, and prints one line
//! per delivery: time, event type, event id, attempt, signature (`ok`, `BAD`, `unsigned`, or
//! `not checked` without `--secret`) and body size; `--verbose` adds the headers and the
//! pretty-printed body, `--status` answers with another status to watch retries. It needs no
//! broker and no database.
//!
//! The secret is only compared with (constant time), never printed.

use std::{io::Write, net::SocketAddr, sync::Arc};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    Router,
};
use subtle::ConstantTimeEq;

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
}

/// What the signature check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureCheck {
    Ok,
    Bad,
    Unsigned,
    NotChecked,
}

impl SignatureCheck {
    pub fn word(self) -> &'static str {
        match self {
            SignatureCheck::Ok => "ok",
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
}

async fn receive(
    State(listener): State<Arc<Listener>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let options = &listener.options;
    let presented = headers
        .get(options.signature_header.as_str())
        .and_then(|v| v.to_str().ok());
    let signature = check(options.secret.as_ref(), presented, &body);
    let mut text = summary(&headers, &body, signature);
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
    options.status
}

/// Serves until SIGINT/SIGTERM.
pub async fn run(options: ListenOptions) -> anyhow::Result<()> {
    let tcp = tokio::net::TcpListener::bind(options.bind)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", options.bind))?;
    let address = tcp.local_addr()?;
    println!(
        "listening on http://{address}/ (answering {}; signature header {}; {})",
        options.status.as_u16(),
        options.signature_header,
        if options.secret.is_some() {
            "checking signatures"
        } else {
            "no --secret: signatures not checked"
        }
    );
    let _ = std::io::stdout().flush();
    let router = Router::new()
        .fallback(receive)
        .with_state(Arc::new(Listener { options }));
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
