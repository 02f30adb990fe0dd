//! The delivery client's connections: HTTP/1.1 over hyper's connection API, kept idle per scheme
//! and authority ([`PoolKey`]) for the next request.
//!
//! Why not hyper-util's pooled client, which this replaced: on every request it cloned the
//! connector and built a connect future whether or not a connection was idle, hashed the key
//! twice, and spawned a task to give the connection back once it was ready again. Here a request
//! takes an idle connection or opens one, and the caller gives it back ([`Lease::release`])
//! once it has read the whole response, when hyper has it ready at once.
//!
//! As hyper-util's client did: a request that a reused connection could not send (the server
//! closed it while idle) goes once more on another; idle connections close after
//! [`Pool::new`]'s `idle_timeout`; there is no limit on connections per authority (the
//! endpoint's concurrency limit bounds them).

use std::{
    collections::HashMap,
    error::Error as StdError,
    fmt,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::Full;
use hyper::{body::Incoming, client::conn::http1::SendRequest};
use tower::ServiceExt;

use super::client::Connector;
use crate::net::PoolKey;

type BoxError = Box<dyn StdError + Send + Sync>;
type Sender = SendRequest<Full<Bytes>>;

/// Connections to customer endpoints, kept for reuse. Each delivery thread has its own.
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    connector: Connector,
    idle: Mutex<HashMap<PoolKey, Vec<Idle>>>,
    idle_timeout: Duration,
    /// Whether the task that closes expired idle connections runs.
    sweeping: AtomicBool,
}

struct Idle {
    sender: Sender,
    since: Instant,
}

/// Why a request got no response.
#[derive(Debug)]
pub enum SendError {
    /// No connection: refused, unreachable, a blocked address, the connect timeout, TLS.
    Connect(BoxError),
    /// The connection failed while the request was sent or the response head read.
    Send(hyper::Error),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(_) => f.write_str("connection failed"),
            Self::Send(_) => f.write_str("request failed"),
        }
    }
}

impl StdError for SendError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Self::Connect(error) => Some(error.as_ref()),
            Self::Send(error) => Some(error),
        }
    }
}

/// The connection a response came on, until its body is read.
pub struct Lease<'a> {
    sender: Sender,
    key: &'a PoolKey,
    pool: &'a Pool,
}

impl Pool {
    pub fn new(connector: Connector, idle_timeout: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                connector,
                idle: Mutex::default(),
                idle_timeout,
                sweeping: AtomicBool::new(false),
            }),
        }
    }

    /// Sends `request` (its URI in origin form) to `uri`'s origin over a connection for `key`,
    /// and returns the response's head with the connection it came on.
    pub async fn send<'a>(
        &'a self,
        uri: &Uri,
        key: &'a PoolKey,
        mut request: Request<Full<Bytes>>,
    ) -> Result<(Response<Incoming>, Lease<'a>), SendError> {
        loop {
            let (mut sender, reused) = match self.inner.checkout(key) {
                Some(sender) => (sender, true),
                // Boxed: connecting (TCP, TLS) is rare once a connection is pooled, and its
                // ~2.4 KB future held inline made every request's future, and the task of every
                // message above it, that much larger to build and move.
                None => (Box::pin(self.connect(uri)).await?, false),
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let lease = Lease {
                        sender,
                        key,
                        pool: self,
                    };
                    return Ok((response, lease));
                }
                Err(mut error) => match error.take_message() {
                    // Never sent: the connection closed while idle. A new one ends the loop.
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(SendError::Send(error.into_error())),
                },
            }
        }
    }

    async fn connect(&self, uri: &Uri) -> Result<Sender, SendError> {
        let io = self
            .inner
            .connector
            .clone()
            .oneshot(uri.clone())
            .await
            .map_err(SendError::Connect)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|error| SendError::Connect(Box::new(error)))?;
        // Ends when the server closes the connection, or once no one holds its sender.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        self.start_sweeping();
        Ok(sender)
    }

    /// Closes idle connections once they expire, on the runtime of the first connection, for as
    /// long as the pool lives.
    fn start_sweeping(&self) {
        if self.inner.sweeping.swap(true, Ordering::Relaxed) {
            return;
        }
        let pool = Arc::downgrade(&self.inner);
        let every = self.inner.idle_timeout / 2;
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(pool) = pool.upgrade() else { return };
                pool.sweep();
            }
        });
    }

    /// How many connections are idle (for tests).
    #[cfg(test)]
    pub fn idle(&self) -> usize {
        self.inner.lock().values().map(Vec::len).sum()
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PoolKey, Vec<Idle>>> {
        // The map stays consistent whatever a holder did: each change is one push or pop.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The most recently used idle connection for `key` that is open and not expired.
    fn checkout(&self, key: &PoolKey) -> Option<Sender> {
        let mut idle = self.lock();
        let list = idle.get_mut(key)?;
        while let Some(connection) = list.pop() {
            if connection.since.elapsed() < self.idle_timeout && connection.sender.is_ready() {
                return Some(connection.sender);
            }
        }
        None
    }

    fn put(&self, key: &PoolKey, sender: Sender) {
        let connection = Idle {
            sender,
            since: Instant::now(),
        };
        let mut idle = self.lock();
        match idle.get_mut(key) {
            Some(list) => list.push(connection),
            None => {
                idle.insert(key.clone(), vec![connection]);
            }
        }
    }

    fn sweep(&self) {
        let timeout = self.idle_timeout;
        self.lock().retain(|_, list| {
            list.retain(|c| c.since.elapsed() < timeout && !c.sender.is_closed());
            !list.is_empty()
        });
    }
}

impl Lease<'_> {
    /// Gives the connection back for the next request: call it once the response's body has been
    /// read to its end. A lease dropped instead closes its connection.
    pub fn release(self) {
        let Self { sender, key, pool } = self;
        if sender.is_ready() {
            pool.inner.put(key, sender);
        } else if !sender.is_closed() {
            // hyper has not yet taken the connection back from the response: wait for it.
            let (inner, key, mut sender) = (pool.inner.clone(), key.clone(), sender);
            tokio::spawn(async move {
                if sender.ready().await.is_ok() {
                    inner.put(&key, sender);
                }
            });
        }
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
