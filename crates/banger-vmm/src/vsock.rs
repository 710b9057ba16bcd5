//! Host side of hybrid vsock: reach a guest vsock port through the Unix
//! socket the VMM exposes.
//!
//! Firecracker and `vhost-device-vsock` (QEMU) speak the same protocol: connect
//! to the VM's vsock Unix socket, send `CONNECT <port>\n`, read `OK <hostport>\n`,
//! and the stream is then connected to the guest's listener. Everything the
//! other side sends is treated as untrusted: the reply line is bounded, must be
//! ASCII `OK <number>`, and the whole handshake has a deadline.

use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Longest accepted handshake reply, newline included (`OK 4294967295\n` is 14).
pub const MAX_REPLY_BYTES: usize = 32;

/// Why a vsock connection could not be made.
#[derive(Debug, Error)]
pub enum VsockError {
    /// Connecting to the Unix socket failed (VMM not running, wrong path).
    #[error("vsock {uds}: connect")]
    Connect {
        /// The VM's vsock socket.
        uds: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// Reading or writing the handshake failed.
    #[error("vsock {uds} port {port}: handshake")]
    Io {
        /// The VM's vsock socket.
        uds: PathBuf,
        /// Guest port.
        port: u32,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The peer closed the connection before a full reply, which is what the
    /// VMM does when nothing listens on the guest port.
    #[error(
        "vsock {uds} port {port}: connection closed during handshake (is the guest listening?)"
    )]
    Closed {
        /// The VM's vsock socket.
        uds: PathBuf,
        /// Guest port.
        port: u32,
    },
    /// The reply was not `OK <number>\n` within [`MAX_REPLY_BYTES`].
    #[error("vsock {uds} port {port}: unexpected handshake reply {reply:?}")]
    BadReply {
        /// The VM's vsock socket.
        uds: PathBuf,
        /// Guest port.
        port: u32,
        /// What arrived (lossy, truncated to the limit).
        reply: String,
    },
    /// No complete reply within the timeout.
    #[error("vsock {uds} port {port}: no handshake reply within {timeout:?}")]
    Timeout {
        /// The VM's vsock socket.
        uds: PathBuf,
        /// Guest port.
        port: u32,
        /// The timeout.
        timeout: Duration,
    },
}

/// Connects to guest vsock `port` through the VM's hybrid-vsock socket `uds`.
/// The whole exchange (connect, request, reply) must finish within `timeout`.
/// On success the stream carries the guest connection's bytes.
pub async fn connect_vsock(
    uds: &Path,
    port: u32,
    timeout: Duration,
) -> Result<UnixStream, VsockError> {
    match tokio::time::timeout(timeout, handshake(uds, port)).await {
        Ok(result) => result,
        Err(_) => Err(VsockError::Timeout {
            uds: uds.to_path_buf(),
            port,
            timeout,
        }),
    }
}

async fn handshake(uds: &Path, port: u32) -> Result<UnixStream, VsockError> {
    let mut stream = UnixStream::connect(uds)
        .await
        .map_err(|source| VsockError::Connect {
            uds: uds.to_path_buf(),
            source,
        })?;
    let io = |source| VsockError::Io {
        uds: uds.to_path_buf(),
        port,
        source,
    };
    stream
        .write_all(format!("CONNECT {port}\n").as_bytes())
        .await
        .map_err(io)?;
    // Read one byte at a time: bytes after the newline already belong to the
    // guest's stream and must stay in the socket for the caller.
    let mut reply = Vec::with_capacity(MAX_REPLY_BYTES);
    loop {
        let mut byte = [0u8; 1];
        let n = stream.read(&mut byte).await.map_err(io)?;
        if n == 0 {
            return Err(VsockError::Closed {
                uds: uds.to_path_buf(),
                port,
            });
        }
        reply.push(byte[0]);
        if byte[0] == b'\n' {
            break;
        }
        if reply.len() >= MAX_REPLY_BYTES {
            return Err(bad_reply(uds, port, &reply));
        }
    }
    if parse_ok(&reply).is_none() {
        return Err(bad_reply(uds, port, &reply));
    }
    Ok(stream)
}

fn bad_reply(uds: &Path, port: u32, reply: &[u8]) -> VsockError {
    VsockError::BadReply {
        uds: uds.to_path_buf(),
        port,
        reply: String::from_utf8_lossy(reply).into_owned(),
    }
}

/// Parses `OK <u32>\n`, returning the host-side port number.
fn parse_ok(reply: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(reply.strip_suffix(b"\n")?).ok()?;
    let number = text.strip_prefix("OK ")?;
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    number.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncBufReadExt;
    use tokio::net::UnixListener;

    /// A fake VMM vsock socket answering the handshake with `reply`, then
    /// echoing `payload` as if from the guest.
    async fn fake(reply: &'static [u8], payload: &'static [u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.sock");
        let listener = UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut stream = tokio::io::BufReader::new(stream);
            let mut line = String::new();
            stream.read_line(&mut line).await.unwrap();
            assert_eq!(line, "CONNECT 1024\n");
            stream.get_mut().write_all(reply).await.unwrap();
            stream.get_mut().write_all(payload).await.unwrap();
            // Keep the connection open so "no reply" cases time out.
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        (dir, path)
    }

    #[tokio::test]
    async fn good_reply_returns_the_stream_with_following_bytes_intact() {
        let (_dir, path) = fake(b"OK 1073741824\n", b"guest-bytes").await;
        let mut stream = connect_vsock(&path, 1024, Duration::from_secs(5))
            .await
            .unwrap();
        let mut buf = [0u8; 11];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"guest-bytes");
    }

    #[tokio::test]
    async fn oversized_reply_is_refused() {
        let (_dir, path) = fake(b"OK 111111111111111111111111111111111111111111\n", b"").await;
        let error = connect_vsock(&path, 1024, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(error, VsockError::BadReply { .. }), "{error}");
    }

    #[tokio::test]
    async fn garbage_replies_are_refused() {
        for reply in [
            &b"NO 5\n"[..],
            b"OK \n",
            b"OK -1\n",
            b"OK 99999999999\n",
            b"\xff\xfe\n",
        ] {
            let reply: &'static [u8] = Box::leak(reply.to_vec().into_boxed_slice());
            let (_dir, path) = fake(reply, b"").await;
            let error = connect_vsock(&path, 1024, Duration::from_secs(5))
                .await
                .unwrap_err();
            assert!(
                matches!(error, VsockError::BadReply { .. }),
                "{reply:?}: {error}"
            );
        }
    }

    #[tokio::test]
    async fn no_reply_times_out_and_partial_reply_too() {
        for reply in [&b""[..], b"OK 10"] {
            let (_dir, path) = fake(reply, b"").await;
            let started = std::time::Instant::now();
            let error = connect_vsock(&path, 1024, Duration::from_millis(300))
                .await
                .unwrap_err();
            assert!(matches!(error, VsockError::Timeout { .. }), "{error}");
            assert!(started.elapsed() < Duration::from_secs(3));
        }
    }

    #[tokio::test]
    async fn closed_and_missing_sockets_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.sock");
        let error = connect_vsock(&path, 1024, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(error, VsockError::Connect { .. }), "{error}");
        let listener = UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            // Like a VMM with no guest listener: read the request and hang up.
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 64];
            let _ = stream.read(&mut buf).await;
        });
        let error = connect_vsock(&path, 1024, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(error, VsockError::Closed { .. }), "{error}");
    }

    #[test]
    fn parses_ok_lines() {
        assert_eq!(parse_ok(b"OK 1024\n"), Some(1024));
        assert_eq!(parse_ok(b"OK 1024"), None);
        assert_eq!(parse_ok(b"OK +1\n"), None);
    }
}
