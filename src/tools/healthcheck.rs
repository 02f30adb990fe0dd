//! `webhook-worker healthcheck`: exits 0 when a running worker's `/readyz` answers 200, for a
//! container's `HEALTHCHECK` (the image has no curl). It asks `--url`, or `/readyz` on the
//! configured `api.listen` (an unspecified address such as `0.0.0.0` is asked on loopback).

use std::{net::SocketAddr, time::Duration};

/// How long the probe waits for an answer; an orchestrator has its own timeout on top.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The URL to probe for a process listening on `listen`.
pub fn readyz_url(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".parse().unwrap_or(ip),
        ip if ip.is_unspecified() => "::1".parse().unwrap_or(ip),
        ip => ip,
    };
    format!("http://{}/readyz", SocketAddr::new(ip, listen.port()))
}

/// Why the probe failed; each names the URL asked.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "{0:?} is not a URL: expected http://host:port/path, e.g. http://127.0.0.1:8080/readyz"
    )]
    NotAUrl(String),
    #[error("cannot build an HTTP client: {0}")]
    Client(reqwest::Error),
    #[error("{url} did not answer: {error}")]
    NoAnswer { url: String, error: reqwest::Error },
    #[error("{url} answered {status}: {body}")]
    NotReady {
        url: String,
        status: u16,
        body: String,
    },
}

/// `Ok` with the answer's body when `url` answers 200.
pub async fn probe(url: &str) -> Result<String, ProbeError> {
    match url::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => {}
        _ => return Err(ProbeError::NotAUrl(url.to_string())),
    }
    let client = reqwest::Client::builder()
        .timeout(PROBE_TIMEOUT)
        .no_proxy()
        .build()
        .map_err(ProbeError::Client)?;
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| ProbeError::NoAnswer {
            url: url.to_string(),
            error: e.without_url(),
        })?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if status == reqwest::StatusCode::OK {
        Ok(body)
    } else {
        Err(ProbeError::NotReady {
            url: url.to_string(),
            status: status.as_u16(),
            body: body.trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_listen_address_is_probed_on_loopback() {
        assert_eq!(
            readyz_url("0.0.0.0:8080".parse().unwrap()),
            "http://127.0.0.1:8080/readyz"
        );
        assert_eq!(
            readyz_url("[::]:9000".parse().unwrap()),
            "http://[::1]:9000/readyz"
        );
        assert_eq!(
            readyz_url("10.1.2.3:80".parse().unwrap()),
            "http://10.1.2.3:80/readyz"
        );
    }
}
