//! The pool against loopback servers that count their connections.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    sync::mpsc,
};

use super::Pool;
use crate::{
    delivery::client::delivery_client,
    net::{resolver::SafeResolver, AddressPolicy, RequestTarget},
};

fn pool(idle_timeout: Duration) -> Pool {
    let loopback = vec!["127.0.0.0/8".parse().expect("a network")];
    let resolver = SafeResolver::new(AddressPolicy::new(loopback)).expect("a resolver");
    let connector = delivery_client(Duration::from_secs(5), resolver)
        .expect("a client")
        .inner
        .connector
        .clone();
    Pool::new(connector, idle_timeout)
}

/// A server that answers `200 ok` to each request and closes a connection after
/// `per_connection` of them (or once the client has), telling `closed` when it has.
struct Server {
    target: RequestTarget,
    connections: Arc<AtomicUsize>,
    closed: mpsc::UnboundedReceiver<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(per_connection: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a listener");
        let port = listener.local_addr().expect("an address").port();
        let url = url::Url::parse(&format!("http://127.0.0.1:{port}/hook")).expect("a URL");
        let connections = Arc::new(AtomicUsize::new(0));
        let (tell, closed) = mpsc::unbounded_channel();
        let counted = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let tell = tell.clone();
                tokio::spawn(async move {
                    for _ in 0..per_connection {
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if !read_request(&mut stream).await
                            || stream.write_all(answer).await.is_err()
                        {
                            break;
                        }
                    }
                    drop(stream);
                    let _ = tell.send(());
                });
            }
        });
        Self {
            target: RequestTarget::new(&url).expect("a target"),
            connections,
            closed,
            task,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request with an empty body (up to its blank line); false at the end of the stream.
async fn read_request(stream: &mut tokio::net::TcpStream) -> bool {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return false,
        }
    }
    true
}

/// One POST; the body read to its end, and the connection given back when `release`.
async fn post(pool: &Pool, server: &Server, release: bool) -> String {
    let mut request = Request::new(Full::new(Bytes::new()));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = server.target.origin.clone();
    let (response, lease) = pool
        .send(&server.target.uri, &server.target.key, request)
        .await
        .expect("a response");
    let body = response
        .into_body()
        .collect()
        .await
        .expect("the body")
        .to_bytes();
    if release {
        lease.release();
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// Waits until `done` holds, for at most 10 s.
async fn until(mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn requests_one_after_another_share_one_connection() {
    let server = Server::start(usize::MAX).await;
    let pool = pool(Duration::from_secs(60));
    for _ in 0..20 {
        assert_eq!(post(&pool, &server, true).await, "ok");
    }
    assert_eq!(server.connections(), 1);
    assert_eq!(pool.idle(), 1);
}

#[tokio::test]
async fn a_connection_not_given_back_is_closed_and_not_reused() {
    let server = Server::start(usize::MAX).await;
    let pool = pool(Duration::from_secs(60));
    assert_eq!(post(&pool, &server, false).await, "ok");
    assert_eq!(pool.idle(), 0);
    assert_eq!(post(&pool, &server, true).await, "ok");
    assert_eq!(server.connections(), 2);
}

#[tokio::test]
async fn a_connection_the_server_closed_while_idle_gives_way_to_a_new_one() {
    let mut server = Server::start(1).await;
    let pool = pool(Duration::from_secs(60));
    assert_eq!(post(&pool, &server, true).await, "ok");
    server
        .closed
        .recv()
        .await
        .expect("the server closed the connection");
    // Whether the pool has seen the close yet or not, the next request gets through.
    assert_eq!(post(&pool, &server, true).await, "ok");
    assert_eq!(server.connections(), 2);
}

#[tokio::test]
async fn an_idle_connection_is_closed_once_it_expires() {
    let mut server = Server::start(usize::MAX).await;
    let pool = pool(Duration::from_millis(200));
    assert_eq!(post(&pool, &server, true).await, "ok");
    assert_eq!(pool.idle(), 1);
    until(|| pool.idle() == 0).await;
    // The sweep dropped the connection's sender: the client closes it, and the server sees so.
    server.closed.recv().await.expect("the connection closed");
    assert_eq!(post(&pool, &server, true).await, "ok");
    assert_eq!(server.connections(), 2);
}
