//! The delivery client against loopback listeners: how its failures are described, and that https
//! goes through TLS that verifies the server. A whole delivery over https is not tested here: it
//! would need a root the client trusts, and the client trusts the webpki roots only.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use tokio::{
    io::AsyncReadExt,
    net::{TcpListener, TcpStream},
};

use super::*;
use crate::{
    delivery::{Failure, FailureKind},
    net::{AddressPolicy, RequestTarget},
};

fn client(allow_loopback: bool) -> Pool {
    let networks = if allow_loopback {
        vec!["127.0.0.0/8".parse().expect("a network")]
    } else {
        Vec::new()
    };
    let resolver = SafeResolver::new(AddressPolicy::new(networks)).expect("a resolver");
    delivery_client(Duration::from_secs(5), resolver).expect("a client")
}

/// Sends an empty POST and describes how it failed.
async fn failure(client: &Pool, url: String) -> Failure {
    let url = url::Url::parse(&url).expect("a URL");
    let target = RequestTarget::new(&url).expect("a target");
    let mut request = Request::new(Full::new(Bytes::new()));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = target.origin.clone();
    let Err(error) = client.send(&target.uri, &target.key, request).await else {
        panic!("the request fails");
    };
    describe(&error)
}

async fn listener() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a listener");
    let port = listener.local_addr().expect("an address").port();
    (listener, port)
}

#[tokio::test]
async fn a_host_resolving_only_to_non_public_addresses_is_a_blocked_address() {
    let failure = failure(&client(false), "http://localhost:9/hook".into()).await;
    assert_eq!(
        failure.reason,
        "blocked_address: the host resolves only to non-public addresses"
    );
    assert_eq!(failure.kind, FailureKind::Local);
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_failure_that_names_no_url() {
    let (listener, port) = listener().await;
    drop(listener);
    let failure = failure(
        &client(true),
        format!("http://127.0.0.1:{port}/secret-path"),
    )
    .await;
    assert_eq!(failure.reason, "connect: connection failed");
    assert_eq!(failure.kind, FailureKind::Connect);
}

/// The ClientHello's bytes, read by a listener that then hangs up.
async fn client_hello(listener: TcpListener) -> Vec<u8> {
    let (mut stream, _) = listener.accept().await.expect("a connection");
    let mut header = [0u8; 5];
    stream
        .read_exact(&mut header)
        .await
        .expect("a record header");
    let mut hello = vec![0u8; usize::from(u16::from_be_bytes([header[3], header[4]]))];
    stream.read_exact(&mut hello).await.expect("a record");
    [header.as_slice(), &hello].concat()
}

#[tokio::test]
async fn https_starts_a_tls_handshake_naming_the_host_and_offering_only_http_1_1() {
    let (listener, port) = listener().await;
    let hello = tokio::spawn(client_hello(listener));
    let failure = failure(&client(true), format!("https://localhost:{port}/")).await;
    let hello = hello.await.expect("the listener's task");
    // A TLS handshake record, and in it the server name (SNI) and ALPN's "http/1.1" alone.
    assert_eq!(hello[0], 0x16);
    let has = |needle: &[u8]| hello.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"localhost"));
    assert!(has(b"\x00\x09\x08http/1.1"), "ALPN lists http/1.1 only");
    assert!(!has(b"h2"));
    assert_eq!(failure.kind, FailureKind::Connect);
}

#[tokio::test]
async fn a_server_whose_certificate_no_trusted_root_signed_is_refused() {
    let key = crate::oidc::keygen::generate_key(2048).expect("a key");
    let cert =
        crate::oidc::keygen::self_signed_certificate(&key, "localhost", Duration::from_secs(3600))
            .expect("a certificate");
    let der = |text: &str| pem::parse(text).expect("PEM").into_contents();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![der(&cert).into()],
            rustls::pki_types::PrivatePkcs8KeyDer::from(der(&key)).into(),
        )
        .expect("a server configuration");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let (listener, port) = listener().await;
    let server = tokio::spawn(async move {
        let (stream, _): (TcpStream, _) = listener.accept().await.expect("a connection");
        acceptor.accept(stream).await.map(|_| ())
    });
    let failure = failure(&client(true), format!("https://localhost:{port}/")).await;
    assert_eq!(failure.kind, FailureKind::Connect);
    let handshake = server.await.expect("the server's task");
    assert!(handshake.is_err(), "the client ended the handshake");
}

#[test]
fn each_delivery_thread_has_a_client_of_its_own_and_other_threads_share_one() {
    let resolver = SafeResolver::new(AddressPolicy::new(Vec::new())).expect("a resolver");
    let clients = DeliveryClients::new(2, Duration::from_secs(5), &resolver).expect("clients");
    // Which of the clients a thread marked `mark` (or not marked) gets.
    let used_on = |mark: Option<usize>| {
        let clients = clients.clone();
        std::thread::spawn(move || {
            if let Some(index) = mark {
                mark_delivery_thread(index);
            }
            let current: *const Pool = clients.current();
            clients
                .0
                .iter()
                .position(|client| std::ptr::eq(client, current))
        })
        .join()
        .expect("the thread ends")
    };
    assert_eq!(used_on(Some(0)), Some(0));
    assert_eq!(used_on(Some(1)), Some(1));
    assert_eq!(
        used_on(None),
        Some(2),
        "another thread's client is the last"
    );
    assert_eq!(
        used_on(Some(5)),
        Some(2),
        "a thread past the count gets that one too"
    );
}
