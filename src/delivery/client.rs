//! The two outbound HTTP clients, built once with the same rules: a timeout on every request,
//! no redirects, no proxies, and the [`SafeResolver`] on every connection.
//!
//! - Deliveries go over HTTP/1.1 connections pooled by [`super::pool`], over rustls
//!   ([`delivery_client`]), without reqwest's per-request work (the URL parsed into a `Uri`, the
//!   header map cloned for a redirect policy that is off, the `Uri` formatted back to text, boxed
//!   futures, extensions): about 30,000 instructions a delivery. Its connector is configured as
//!   reqwest configured its own: same crypto provider (ring), root store (webpki roots), TLS
//!   versions, ALPN, TCP options and connect timeout; the request carries reqwest's default
//!   headers.
//! - OAuth token requests keep reqwest ([`token_client`]): they are rare, and the token provider
//!   uses its form and JSON helpers.
//!
//! Each delivery thread (`delivery.threads`) has a delivery client, and so a connection pool, of
//! its own ([`DeliveryClients`]): a pooled connection's task runs on the runtime of the thread
//! that opened it, so a request from another thread would cross threads, and a thread that ends
//! first would take with it the connections another still uses.

use std::{
    cell::Cell,
    error::Error as StdError,
    fmt,
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::Uri;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::{client::legacy::connect::HttpConnector, rt::TokioIo};

use super::{
    pool::{Pool, SendError},
    Failure, FailureKind, USER_AGENT,
};
use crate::net::resolver::{self, SafeResolver};

type BoxError = Box<dyn StdError + Send + Sync>;

thread_local! {
    /// Which delivery thread the calling thread is, if it is one ([`mark_delivery_thread`]).
    static DELIVERY_THREAD: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Marks the calling thread as delivery thread `index`: its requests go through that thread's
/// client ([`DeliveryClients::current`]).
pub fn mark_delivery_thread(index: usize) {
    DELIVERY_THREAD.with(|thread| thread.set(Some(index)));
}

/// A delivery client per delivery thread, and one more for every other thread (the API's
/// runtime). Cheap to clone.
#[derive(Clone)]
pub struct DeliveryClients(Arc<[Pool]>);

impl DeliveryClients {
    /// `threads` clients for the delivery threads and one for the others, each with its own pool.
    pub fn new(
        threads: usize,
        timeout: Duration,
        resolver: &SafeResolver,
    ) -> Result<Self, ClientError> {
        let clients = (0..=threads)
            .map(|_| delivery_client(timeout, resolver.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self(clients.into()))
    }

    /// The calling thread's client.
    pub fn current(&self) -> &Pool {
        let others = self.0.len() - 1;
        let index = DELIVERY_THREAD
            .with(Cell::get)
            .map_or(others, |thread| thread.min(others));
        &self.0[index]
    }
}

/// Connections held idle for reuse this long, by both clients.
const POOL_IDLE: Duration = Duration::from_secs(60);
/// The connect timeout's ceiling: a slow handshake is not worth a long request timeout.
const MAX_CONNECT: Duration = Duration::from_secs(10);
// reqwest's TCP keep-alive defaults, kept so pooled connections behave as they did.
const KEEPALIVE: Duration = Duration::from_secs(15);
const KEEPALIVE_RETRIES: u32 = 3;

/// Why a client cannot be built (at start).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Dns(#[from] resolver::DnsConfigError),
    #[error("signature.header is not a valid header name")]
    Header(#[from] http::header::InvalidHeaderName),
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("cannot configure TLS: {0}")]
    Tls(#[from] rustls::Error),
}

fn connect_timeout(timeout: Duration) -> Duration {
    timeout.min(MAX_CONNECT)
}

/// The delivery client. `timeout` bounds connecting here; the whole request is bounded by the
/// caller, who also reads the body.
pub fn delivery_client(timeout: Duration, resolver: SafeResolver) -> Result<Pool, ClientError> {
    let connect_timeout = connect_timeout(timeout);
    let mut http = HttpConnector::new_with_resolver(resolver);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    // The scheme is the TLS layer's to judge: https goes through it, http does not.
    http.enforce_http(false);
    http.set_keepalive(Some(KEEPALIVE));
    http.set_keepalive_interval(Some(KEEPALIVE));
    http.set_keepalive_retries(Some(KEEPALIVE_RETRIES));
    let https = HttpsConnector::from((http, tls_config()?));
    let connector = Connector {
        inner: https,
        timeout: connect_timeout,
    };
    Ok(Pool::new(connector, POOL_IDLE))
}

/// TLS as reqwest (`rustls-tls`) set it up: the process's default crypto provider if one is
/// installed, else ring; TLS 1.2 and 1.3; the webpki roots; SNI; ALPN offering HTTP/1.1 only.
fn tls_config() -> Result<rustls::ClientConfig, ClientError> {
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::ALL_VERSIONS)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The token client, for OAuth token endpoints: reqwest, with the same resolver and limits.
pub fn token_client(
    timeout: Duration,
    resolver: SafeResolver,
) -> Result<reqwest::Client, ClientError> {
    Ok(reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .timeout(timeout)
        .connect_timeout(connect_timeout(timeout))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .pool_idle_timeout(POOL_IDLE)
        .dns_resolver(Arc::new(resolver))
        .build()?)
}

/// The delivery client's connector: TCP (through the resolver) then TLS for https, the whole
/// bounded by the connect timeout, as reqwest bounded it (hyper-util's own timeout covers only
/// the TCP connect).
#[derive(Clone)]
pub struct Connector {
    inner: HttpsConnector<HttpConnector<SafeResolver>>,
    timeout: Duration,
}

type Connection = MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>;

impl tower::Service<Uri> for Connector {
    type Response = Connection;
    type Error = BoxError;
    // Boxed: hyper-util wants an `Unpin` future, and this runs once per new connection only.
    type Future = Pin<Box<dyn Future<Output = Result<Connection, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(connected) => connected,
                Err(_) => Err(Box::new(ConnectTimedOut) as BoxError),
            }
        })
    }
}

/// The connect timeout passed.
#[derive(Debug)]
struct ConnectTimedOut;

impl fmt::Display for ConnectTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connecting timed out")
    }
}

impl StdError for ConnectTimedOut {}

/// A transport error as a short reason without the URL (which may carry customer data). The
/// classes are the ones reqwest's error gave: a body read error cannot reach here (the body is
/// drained separately and its errors only end the read), nor a timeout of the whole request
/// (the caller's).
pub fn describe(error: &SendError) -> Failure {
    if resolver::is_blocked(error) {
        Failure::new("blocked_address: the host resolves only to non-public addresses")
    } else if is_timeout(error) {
        Failure::timeout()
    } else if matches!(error, SendError::Connect(_)) {
        Failure::of_kind(FailureKind::Connect, "connect: connection failed")
    } else {
        Failure::new("request: the request failed")
    }
}

/// Whether a timeout anywhere in the error's causes ended the request, as reqwest judged it.
fn is_timeout(error: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        let timed_out = e.is::<ConnectTimedOut>()
            || e.downcast_ref::<hyper::Error>()
                .is_some_and(hyper::Error::is_timeout)
            || e.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::TimedOut);
        if timed_out {
            return true;
        }
        current = e.source();
    }
    false
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
