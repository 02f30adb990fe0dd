//! A TCP stream whose writes give up when the peer takes no bytes for a while.
//!
//! hyper has no write timeout. A client that sends requests (pipelined, say) and never reads the
//! answers fills the socket's buffers; hyper's next write then waits for ever, holding its
//! connection, its task and one of `api.max_connections`. Here every write or flush that cannot
//! go on arms a timer; any progress (a byte taken) disarms it, so a slow but moving reader is
//! served, and one that takes nothing for `api.write_timeout` gets an error, which makes hyper
//! drop the connection. The socket is then reset rather than closed gracefully: a graceful close
//! would leave the unsent answers in the kernel, waiting for a reader that never comes.

use std::{
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    time::{Instant, Sleep},
};

/// A [`TcpStream`] whose writes time out after `timeout` without progress.
#[derive(Debug)]
pub struct WriteTimeout {
    stream: TcpStream,
    timeout: Duration,
    /// Runs while a write or flush waits for the peer; boxed so the stream stays `Unpin`, and
    /// kept between stalls so a stall does not allocate.
    stall: Pin<Box<Sleep>>,
    stalled: bool,
}

impl WriteTimeout {
    pub fn new(stream: TcpStream, timeout: Duration) -> Self {
        WriteTimeout {
            stream,
            timeout,
            stall: Box::pin(tokio::time::sleep(timeout)),
            stalled: false,
        }
    }

    /// Passes on what a write or flush returned, turning a wait longer than `timeout` without
    /// progress into a `TimedOut` error.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled = false;
            return poll;
        }
        if !self.stalled {
            self.stalled = true;
            self.stall.as_mut().reset(Instant::now() + self.timeout);
        }
        match self.stall.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                // Reset on drop: the unsent answers go nowhere, and the socket is freed now.
                let _ = self.stream.set_zero_linger();
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the client took no bytes of its answer for {:?} (api.write_timeout)",
                        self.timeout
                    ),
                )))
            }
        }
    }
}

impl AsyncRead for WriteTimeout {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteTimeout {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.stream).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // shutdown(2) does not wait for the peer, so it needs no timer.
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
    };

    use super::*;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(address), listener.accept());
        (client.unwrap(), accepted.unwrap().0)
    }

    #[tokio::test]
    async fn a_write_the_peer_never_reads_times_out() {
        let (_client, server) = pair().await;
        let mut server = WriteTimeout::new(server, Duration::from_millis(200));
        let chunk = vec![0u8; 64 * 1024];
        // Fills the buffers, then waits for a reader that never comes.
        let outcome = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if let Err(error) = server.write_all(&chunk).await {
                    return error;
                }
            }
        })
        .await
        .expect("the write gave up");
        assert_eq!(outcome.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn a_slow_reader_that_keeps_taking_bytes_is_served() {
        let (mut client, server) = pair().await;
        let mut server = WriteTimeout::new(server, Duration::from_millis(300));
        let total = 8 * 1024 * 1024;
        let writer = tokio::spawn(async move {
            let chunk = vec![7u8; 64 * 1024];
            for _ in 0..total / chunk.len() {
                server.write_all(&chunk).await?;
            }
            server.shutdown().await
        });
        // Reads in small bites with pauses shorter than the timeout: each bite is progress.
        let mut received = 0;
        let mut buffer = vec![0u8; 256 * 1024];
        loop {
            let n = client.read(&mut buffer).await.unwrap();
            if n == 0 {
                break;
            }
            received += n;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(received, total);
        writer.await.unwrap().expect("no write timed out");
    }
}
