//! The API listener's edges: a client that sends its headers a byte at a time is cut off after
//! `api.header_read_timeout` while other clients are answered, and no more than
//! `api.max_connections` connections are served at once.

use std::time::{Duration, Instant};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use webhook_worker::api::ConnectionLimits;

use crate::support::{spawn_app_with, Backend, Settings, TestApp};

async fn app_with(limits: ConnectionLimits) -> TestApp {
    let settings = Settings {
        limits,
        ..Settings::default()
    };
    spawn_app_with(Backend::Sqlite, settings).await
}

fn address(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_string()
}

/// Reads until the peer closes the connection (or resets it); returns what was read.
async fn read_until_closed(stream: &mut tokio::net::tcp::OwnedReadHalf) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 1024];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return received,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

#[tokio::test]
async fn a_client_sending_one_header_byte_a_second_is_disconnected_while_others_are_answered() {
    let timeout = Duration::from_secs(3);
    let app = app_with(ConnectionLimits {
        header_read_timeout: timeout,
        ..ConnectionLimits::default()
    })
    .await;
    let stream = TcpStream::connect(address(&app)).await.expect("connects");
    let (mut reader, mut writer) = stream.into_split();
    let started = Instant::now();
    // Far more bytes than the timeout lets through at one a second.
    let request =
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let trickle = tokio::spawn(async move {
        let mut sent = 0;
        for byte in request {
            if writer.write_all(&[*byte]).await.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        sent
    });
    // Meanwhile the API answers others, again and again.
    let mut answered = 0;
    while started.elapsed() < timeout - Duration::from_millis(500) {
        let reply = app.call(reqwest::Method::GET, "/healthz", None, None).await;
        assert_eq!(reply.status, 200);
        answered += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        answered >= 5,
        "only {answered} answers while the slow client trickled"
    );
    let closed = tokio::time::timeout(timeout * 4, read_until_closed(&mut reader))
        .await
        .expect("the slow client is disconnected");
    let elapsed = started.elapsed();
    assert!(
        !String::from_utf8_lossy(&closed).contains(" 200 "),
        "the slow request must not be served"
    );
    assert!(
        elapsed >= timeout - Duration::from_millis(100) && elapsed < timeout * 2,
        "disconnected after {elapsed:?}, the timeout is {timeout:?}"
    );
    let sent = trickle.await.expect("the trickle task");
    assert!(
        sent < request.len(),
        "the whole request got through ({sent} bytes)"
    );
}

/// Sends one keep-alive request on `stream` and reads the start of its answer.
async fn request_on(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("sent");
    let mut buffer = [0u8; 1024];
    let n = stream.read(&mut buffer).await.expect("an answer");
    String::from_utf8_lossy(&buffer[..n]).to_string()
}

#[tokio::test]
async fn no_more_connections_than_max_connections_are_served_at_once() {
    let app = app_with(ConnectionLimits {
        max_connections: 2,
        ..ConnectionLimits::default()
    })
    .await;
    // Two keep-alive connections, each answered once and then held open.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(address(&app)).await.expect("connects");
        assert!(request_on(&mut stream).await.starts_with("HTTP/1.1 200"));
        held.push(stream);
    }
    // A third client gets its TCP connection from the kernel, but no answer.
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .expect("a client");
    let url = format!("{}/healthz", app.base);
    let third = quick.get(&url).send().await;
    assert!(third.is_err(), "a third connection was served: {third:?}");
    // The held connections still work.
    assert!(request_on(&mut held[0]).await.starts_with("HTTP/1.1 200"));
    // Closing one lets the next client in.
    drop(held.pop());
    let reply = app.call(reqwest::Method::GET, "/healthz", None, None).await;
    assert_eq!(reply.status, 200);
}
