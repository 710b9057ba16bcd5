//! A deadline on each connection's first request head, so a client that
//! connects and then sends nothing, or sends its request a byte at a time,
//! is cut off after [`HEADER_READ_TIMEOUT`] instead of holding a
//! connection (and its task and buffers) for ever.
//!
//! The server (hyper, through axum) sets no such timeout itself: it has no
//! timer configured. Every connection is served by its own task, so a slow
//! client never delays others (tests/slow_client.rs measures that); this
//! bounds what a stuck or hostile local client can hold.
//!
//! The deadline ends, and the connection is left alone from then on, at the
//! first of: the end of the request head (an empty line, `\r\n\r\n` or
//! `\n\n`), or the first byte the server writes (its response has begun).
//! So a long upload body, a long-running request such as `vm create`, an
//! event stream and an upgraded `vm attach` session are never cut; a
//! keep-alive connection's later requests are not timed (the CLI sends one
//! request per connection).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio::time::Sleep;

/// How long a client has to send its first request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection whose first request head must arrive before a deadline
/// (see the module doc).
#[derive(Debug)]
pub struct HeadDeadline<S> {
    inner: S,
    /// Until the head is read or a response begins; `None` afterwards.
    deadline: Option<Pin<Box<Sleep>>>,
    /// Whether the last byte that was not `\r` was a `\n`.
    after_newline: bool,
}

impl<S> HeadDeadline<S> {
    /// Wraps `inner`; its first request head must arrive within `timeout`.
    pub fn new(inner: S, timeout: Duration) -> Self {
        Self {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
            after_newline: false,
        }
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Whether the deadline still applies.
    pub fn is_armed(&self) -> bool {
        self.deadline.is_some()
    }

    /// Looks for the empty line that ends a request head in `bytes`.
    fn scan(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            match byte {
                b'\n' if self.after_newline => {
                    self.deadline = None;
                    return;
                }
                b'\n' => self.after_newline = true,
                b'\r' => {}
                _ => self.after_newline = false,
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HeadDeadline<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(deadline) = this.deadline.as_mut() {
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client did not send its request head in time",
                )));
            }
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.deadline.is_some() {
            if let Poll::Ready(Ok(())) = polled {
                this.scan(&buf.filled()[before..]);
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeadDeadline<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // The response has begun: the request was read.
        this.deadline = None;
        Pin::new(&mut this.inner).poll_write(cx, bytes)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.deadline = None;
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The daemon's socket, handing out connections wrapped in [`HeadDeadline`].
#[derive(Debug)]
pub struct DeadlineListener {
    inner: UnixListener,
    timeout: Duration,
}

impl DeadlineListener {
    /// Wraps `inner`; each connection gets `timeout` for its first head.
    pub fn new(inner: UnixListener, timeout: Duration) -> Self {
        Self { inner, timeout }
    }

    /// The next connection. Accept errors (out of file descriptors, say)
    /// are logged and retried after a pause, never returned: the server
    /// must keep serving.
    pub async fn accept(&mut self) -> (HeadDeadline<UnixStream>, tokio::net::unix::SocketAddr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => return (HeadDeadline::new(stream, self.timeout), addr),
                Err(error) => {
                    tracing::warn!(%error, "cannot accept an API connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// The socket's address.
    pub fn local_addr(&self) -> io::Result<tokio::net::unix::SocketAddr> {
        self.inner.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::HeadDeadline;

    #[tokio::test]
    async fn a_trickled_head_is_cut_off_at_the_deadline() {
        let (client, server) = tokio::net::UnixStream::pair().expect("pair");
        let mut server = HeadDeadline::new(server, Duration::from_millis(300));
        let writer = tokio::spawn(async move {
            let mut client = client;
            for byte in b"GET / HTTP/1.1\r\nHost: x\r\n" {
                if client.write_all(&[*byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let started = Instant::now();
        let mut buf = [0u8; 64];
        let error = loop {
            match server.read(&mut buf).await {
                Ok(0) => panic!("the client closed first"),
                Ok(_) => continue,
                Err(error) => break error,
            }
        };
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(2),
            "{took:?}"
        );
        writer.abort();
    }

    #[tokio::test]
    async fn a_complete_head_or_a_response_disarms_the_deadline() {
        for head in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"GET / HTTP/1.1\n\n",
        ] {
            let (mut client, server) = tokio::net::UnixStream::pair().expect("pair");
            let mut server = HeadDeadline::new(server, Duration::from_millis(100));
            client.write_all(head).await.expect("write");
            let mut buf = vec![0u8; head.len()];
            server.read_exact(&mut buf).await.expect("read the head");
            assert!(!server.is_armed(), "{:?}", String::from_utf8_lossy(head));
            tokio::time::sleep(Duration::from_millis(200)).await;
            client.write_all(b"body").await.expect("write");
            let mut body = [0u8; 4];
            server
                .read_exact(&mut body)
                .await
                .expect("read the body late");
        }
        let (_client, server) = tokio::net::UnixStream::pair().expect("pair");
        let mut server = HeadDeadline::new(server, Duration::from_millis(100));
        server
            .write_all(b"HTTP/1.1 200 OK\r\n")
            .await
            .expect("write");
        assert!(!server.is_armed(), "a response disarms it");
    }
}
