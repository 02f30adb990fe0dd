//! The API's HTTP/1.1 server: the accept loop, the connection caps and the connections' timeouts.
//!
//! axum's `serve` runs hyper without a timer, so hyper cannot time out a client that sends its
//! headers one byte at a time, and accepts every connection it is offered. Here each connection
//! is served by hyper's HTTP/1 connection with a tokio timer, so its headers must arrive within
//! `api.header_read_timeout` (also how long a keep-alive connection may sit idle: hyper starts
//! that clock as soon as the connection waits for a request), and a semaphore permit is taken
//! *before* accepting: beyond `api.max_connections` new connections wait in the kernel's listen
//! backlog instead of costing a task and buffers each.
//!
//! Two more guards keep clients that never read from holding the server: every connection's
//! writes give up after `api.write_timeout` without progress ([`write_timeout`]), and one peer
//! address holds at most `api.max_connections_per_peer` connections ([`peers`]); one more is
//! closed as soon as it is accepted, giving its permit back at once. Both act sooner, and cost
//! less, because a connection's buffers are bounded (hyper's, and the kernel's send buffer): a
//! client that never reads stalls the writes after a few hundred answers, not tens of thousands.
//!
//! On cancellation the loop stops accepting, every connection finishes the request it is
//! serving (idle ones close at once), and [`serve`] returns when the last one has closed.

mod peers;
mod write_timeout;

use std::{io, sync::Arc, time::Duration};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use self::{peers::PeerCounts, write_timeout::WriteTimeout};
use crate::config::ApiConfig;

/// How many connections the server holds (in all, and per peer address), how long a client may
/// take over its headers, and how long it may leave an answer unread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub write_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_peer: usize,
}

impl ConnectionLimits {
    pub fn from_config(api: &ApiConfig) -> Self {
        ConnectionLimits {
            header_read_timeout: api.header_read_timeout.0,
            write_timeout: api.write_timeout.0,
            max_connections: api.max_connections,
            max_connections_per_peer: api.max_connections_per_peer,
        }
    }
}

impl Default for ConnectionLimits {
    /// The defaults of `config/default.toml`.
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_connections_per_peer: 64,
        }
    }
}

/// The most a connection buffers in hyper, each way: a request's head must fit, and answers
/// not yet taken by the kernel stop the connection from reading further requests beyond it.
/// hyper's default (about 400 KiB) let a client that pipelines requests and never reads make the
/// server answer thousands of them before its writes stalled, and hold that memory per
/// connection; 16 KiB is still twice the largest head common servers accept (8 KiB).
const CONNECTION_BUFFER_BYTES: usize = 16 * 1024;

/// The kernel's send buffer of each connection. Left to itself Linux grows it to
/// `net.ipv4.tcp_wmem`'s maximum (4 MiB by default) even for a client that reads nothing, so such
/// a client could make the server answer tens of thousands of pipelined requests, and keep
/// megabytes per connection, before its writes stall and `api.write_timeout` can act. The API's
/// answers are small (the largest, the OpenAPI document and a page of 100 webhooks, are tens of
/// kilobytes), so a fixed buffer costs them nothing. Linux doubles the value given.
const SEND_BUFFER_BYTES: usize = 32 * 1024;

/// Serves `router` on `listener` until `cancel` fires, then waits for open connections to finish
/// their requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    cancel: CancellationToken,
) -> io::Result<()> {
    // One permit per open connection; a permit lives as long as its connection's task.
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let peers = PeerCounts::new(limits.max_connections_per_peer);
    let connections = TaskTracker::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(CONNECTION_BUFFER_BYTES);
    loop {
        let permit = tokio::select! {
            () = cancel.cancelled() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // closed: never, the semaphore is ours
            },
        };
        let (stream, peer) = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    pause_after_accept_error(error).await;
                    continue;
                }
            },
        };
        let Some(peer_slot) = peers.admit(peer.ip()) else {
            // Refused with a reset (no lingering close to wait out), and dropping the permit gives
            // its slot back before the next accept.
            let _ = stream.set_zero_linger();
            tracing::debug!(peer = %peer.ip(), "API connection refused: api.max_connections_per_peer reached");
            continue;
        };
        // Answers are small: send them at once rather than wait to fill a segment.
        let _ = stream.set_nodelay(true);
        // See SEND_BUFFER_BYTES; a failure leaves the kernel's default, which still works.
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER_BYTES);
        let connection = http.serve_connection(
            TokioIo::new(WriteTimeout::new(stream, limits.write_timeout)),
            TowerToHyperService::new(router.clone()),
        );
        let cancel = cancel.clone();
        connections.spawn(async move {
            // Both live as long as the connection: its place in the global and the peer's cap.
            let _permit = permit;
            let _peer_slot = peer_slot;
            let mut connection = std::pin::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = cancel.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                // Header and write timeouts, resets, malformed requests: the client's business.
                tracing::debug!(%error, "API connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    Ok(())
}

/// A connection that failed between the kernel and us is the client's problem; anything else
/// (out of file descriptors) is ours, and retrying at once would spin.
async fn pause_after_accept_error(error: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if !matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        tracing::warn!(%error, "cannot accept API connections; retrying in 1 s");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
