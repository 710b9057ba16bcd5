//! Waiting until a guest's sshd answers.
//!
//! A listening socket is not enough (the guest kernel may accept before
//! sshd is ready, or a forwarder may accept and then drop), so a probe only
//! counts when the server sends its SSH identification line
//! (`SSH-2.0-...`, RFC 4253 §4.2).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Pause between probes while the guest's address does not answer (its
/// network is not up: each attempt waits for ARP until its connect budget).
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Pause between probes once the guest refuses connections: its network is
/// up and sshd is coming. A refused connect is one SYN answered by the
/// guest's kernel (sshd never sees it), so polling this often costs the
/// guest nothing and tells the caller within milliseconds that sshd
/// listens; at 100 ms a create reported readiness 50 ms late on average.
const POLL_INTERVAL_REFUSED: Duration = Duration::from_millis(5);
/// Longest a single attempt (connect plus banner) may take: sshd under
/// emulation can be slow to send its banner once connected.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connect attempt may take before the next poll.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(250);
/// The banner must show up within this many bytes (RFC 4253 allows other
/// lines before it; the identification line itself is at most 255 bytes).
const MAX_BANNER_BYTES: usize = 4096;

/// Why one probe did not count as an answering SSH server.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The TCP connect failed (refused, unreachable, ...).
    #[error("connect")]
    Connect(#[source] std::io::Error),
    /// The TCP connect did not finish within its budget.
    #[error("connect: no answer within {budget:?}")]
    ConnectTimeout {
        /// How long the connect could take.
        budget: Duration,
    },
    /// Reading from the connection failed.
    #[error("read banner")]
    ReadBanner(#[source] std::io::Error),
    /// The server closed the connection without sending anything.
    #[error("connection closed before the SSH banner")]
    ClosedBeforeBanner,
    /// The server sent something else and closed the connection.
    #[error("connection closed after {received:?}, no SSH-2.0 banner")]
    ClosedWithoutBanner {
        /// What it sent (lossily decoded).
        received: String,
    },
    /// The server kept talking without an identification line.
    #[error("no SSH-2.0 banner in the first {limit} bytes")]
    NoBannerWithin {
        /// How many bytes were read before giving up.
        limit: usize,
    },
    /// Connect plus banner took longer than the attempt's budget.
    #[error("timed out after {budget:?} (connect or banner)")]
    TimedOut {
        /// How long the attempt could take.
        budget: Duration,
    },
}

impl ProbeError {
    /// How long to wait before the next probe after this failure.
    fn next_poll(&self) -> Duration {
        match self {
            Self::Connect(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                POLL_INTERVAL_REFUSED
            }
            _ => POLL_INTERVAL,
        }
    }
}

/// sshd did not answer in time.
#[derive(Debug, thiserror::Error)]
#[error(
    "no SSH server answered on {addr} after waiting {waited:?} ({attempts} attempts); last failure: {last_failure}"
)]
pub struct SshWaitError {
    /// The address probed.
    pub addr: SocketAddrV4,
    /// How long we waited.
    pub waited: Duration,
    /// How many probes were made.
    pub attempts: u32,
    /// What went wrong with the last probe: the last [`ProbeError`]
    /// rendered once with its causes (`connect: Connection refused (os
    /// error 111)`). Text, not a source: it is shown inside this error's
    /// message, and callers (and their test doubles) only display it.
    pub last_failure: String,
}

/// Polls `ip:port` until a connection yields an SSH-2.0 identification
/// line, and returns how long that took: every 100 ms while the address
/// does not answer, every 5 ms once connections are refused. Gives up after
/// `timeout` with the last failure in the error.
pub async fn wait_for_ssh(
    ip: Ipv4Addr,
    port: u16,
    timeout: Duration,
) -> Result<Duration, SshWaitError> {
    let addr = SocketAddrV4::new(ip, port);
    let start = Instant::now();
    let deadline = start + timeout;
    let mut attempts = 0;
    let mut last_failure = String::from("no attempt was made");
    loop {
        let now = Instant::now();
        if now >= deadline && attempts > 0 {
            break;
        }
        attempts += 1;
        let remaining = deadline
            .saturating_duration_since(now)
            .max(Duration::from_millis(10));
        let interval = match probe(
            addr,
            remaining.min(CONNECT_TIMEOUT),
            remaining.min(ATTEMPT_TIMEOUT),
        )
        .await
        {
            Ok(()) => return Ok(start.elapsed()),
            Err(failure) => {
                last_failure = crate::error_chain(&failure);
                failure.next_poll()
            }
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break;
        }
        tokio::time::sleep(interval.min(remaining)).await;
    }
    Err(SshWaitError {
        addr,
        waited: start.elapsed(),
        attempts,
        last_failure,
    })
}

/// One probe: connect within `connect_budget` (a guest that is not up yet
/// does not answer ARP, so a connect would otherwise hang a whole attempt
/// and delay readiness), then read until an `SSH-2.0-` (or `SSH-1.99-`)
/// line, all within `budget`.
async fn probe(
    addr: SocketAddrV4,
    connect_budget: Duration,
    budget: Duration,
) -> Result<(), ProbeError> {
    let attempt = async {
        let mut stream = match tokio::time::timeout(connect_budget, TcpStream::connect(addr)).await
        {
            Ok(connected) => connected.map_err(ProbeError::Connect)?,
            Err(_) => {
                return Err(ProbeError::ConnectTimeout {
                    budget: connect_budget,
                });
            }
        };
        let mut received: Vec<u8> = Vec::new();
        let mut chunk = [0u8; 512];
        loop {
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(ProbeError::ReadBanner)?;
            if n == 0 {
                return Err(if received.is_empty() {
                    ProbeError::ClosedBeforeBanner
                } else {
                    ProbeError::ClosedWithoutBanner {
                        received: String::from_utf8_lossy(&received).into_owned(),
                    }
                });
            }
            received.extend_from_slice(&chunk[..n]);
            for line in received.split(|b| *b == b'\n') {
                if line.starts_with(b"SSH-2.0-") || line.starts_with(b"SSH-1.99-") {
                    // The line may still be incomplete, but its prefix
                    // already proves an SSH server is talking.
                    return Ok(());
                }
            }
            if received.len() > MAX_BANNER_BYTES {
                return Err(ProbeError::NoBannerWithin {
                    limit: MAX_BANNER_BYTES,
                });
            }
        }
    };
    match tokio::time::timeout(budget, attempt).await {
        Ok(result) => result,
        Err(_) => Err(ProbeError::TimedOut { budget }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn sees_a_banner() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let _ = socket.write_all(b"hello\r\nSSH-2.0-Fake_1.0\r\n").await;
            }
        });
        let took = wait_for_ssh(Ipv4Addr::LOCALHOST, port, Duration::from_secs(5))
            .await
            .expect("banner");
        assert!(took < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_silent_or_wrong_server_times_out_with_the_reason() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let _ = socket.write_all(b"HTTP/1.1 400 Bad\r\n\r\n").await;
            }
        });
        let error = wait_for_ssh(Ipv4Addr::LOCALHOST, port, Duration::from_millis(400))
            .await
            .expect_err("not ssh");
        assert!(error.waited >= Duration::from_millis(400));
        assert!(error.waited < Duration::from_secs(2), "{error}");
        assert!(error.attempts >= 2, "{error}");
        let text = error.to_string();
        assert!(text.contains("no SSH-2.0 banner"), "{text}");
        assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    }

    #[tokio::test]
    async fn refused_port_reports_connect_error() {
        // Bind then drop to get a port that is (very likely) closed.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let error = wait_for_ssh(Ipv4Addr::LOCALHOST, port, Duration::from_millis(300))
            .await
            .expect_err("closed");
        assert!(error.last_failure.starts_with("connect:"), "{error}");
        // Refusals are retried at the short interval, not every 100 ms
        // (which would make 3 or 4 attempts in 300 ms).
        assert!(error.attempts >= 10, "{error}");
    }

    #[test]
    fn only_a_refusal_shortens_the_poll() {
        let refused = ProbeError::Connect(std::io::ErrorKind::ConnectionRefused.into());
        assert_eq!(refused.next_poll(), POLL_INTERVAL_REFUSED);
        let unreachable = ProbeError::Connect(std::io::ErrorKind::HostUnreachable.into());
        assert_eq!(unreachable.next_poll(), POLL_INTERVAL);
        let silent = ProbeError::ConnectTimeout {
            budget: CONNECT_TIMEOUT,
        };
        assert_eq!(silent.next_poll(), POLL_INTERVAL);
        assert_eq!(ProbeError::ClosedBeforeBanner.next_poll(), POLL_INTERVAL);
    }
}
