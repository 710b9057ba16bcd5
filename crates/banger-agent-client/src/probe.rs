//! Host-side probes of guest TCP ports: does an HTTP or a TLS server answer?
//!
//! The host connects to the VM's IP (which it assigned, not the guest) and
//! reads only a few bytes, so a hostile listener can neither stall the
//! probe past its timeout nor make it buffer much.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes read from the server at most.
const PEEK_BYTES: usize = 16;

/// Why a probe could not tell.
#[derive(Debug, Error)]
pub enum ProbeError {
    /// The TCP connection failed (refused, unreachable).
    #[error("probe {addr}: connect")]
    Connect {
        /// Target.
        addr: SocketAddr,
        /// Underlying error.
        source: std::io::Error,
    },
    /// No connection within the timeout.
    #[error("probe {addr}: no connection within {timeout:?}")]
    Timeout {
        /// Target.
        addr: SocketAddr,
        /// The timeout.
        timeout: Duration,
    },
}

/// What kind of web listener a port is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebKind {
    /// Answers plain HTTP.
    Http,
    /// Answers a TLS handshake (presumably HTTPS).
    Https,
}

impl WebKind {
    /// `http://<vm>.vm:<port>/` or `https://...`.
    pub fn url(self, vm_name: &str, port: u16) -> String {
        let scheme = match self {
            WebKind::Http => "http",
            WebKind::Https => "https",
        };
        format!("{scheme}://{vm_name}.vm:{port}/")
    }
}

/// Sends `HEAD / HTTP/1.0` and reports whether the reply starts with `HTTP/`.
/// `Ok(false)` means connected but not HTTP (or silent within `timeout`).
pub async fn probe_http(ip: IpAddr, port: u16, timeout: Duration) -> Result<bool, ProbeError> {
    let host = SocketAddr::new(ip, port);
    let request = format!(
        "HEAD / HTTP/1.0\r\nHost: {host}\r\nUser-Agent: banger-probe\r\nConnection: close\r\n\r\n"
    );
    let reply = exchange(ip, port, request.as_bytes(), timeout).await?;
    Ok(reply.starts_with(b"HTTP/"))
}

/// Sends a TLS ClientHello and reports whether the first reply record is a
/// TLS handshake (ServerHello) or alert record. No certificate is looked at:
/// this only tells whether TLS is spoken. `Ok(false)` means connected but
/// not TLS (or silent within `timeout`).
pub async fn probe_https(ip: IpAddr, port: u16, timeout: Duration) -> Result<bool, ProbeError> {
    let reply = exchange(ip, port, &client_hello(), timeout).await?;
    Ok(is_tls_record(&reply))
}

/// Probes HTTP first (cheaper, and most dev servers), then HTTPS. `None`
/// when neither answers or the port is not reachable.
pub async fn probe_web(ip: IpAddr, port: u16, timeout: Duration) -> Option<WebKind> {
    if probe_http(ip, port, timeout).await.ok()? {
        return Some(WebKind::Http);
    }
    probe_https(ip, port, timeout)
        .await
        .ok()?
        .then_some(WebKind::Https)
}

/// Connects, writes `request`, reads up to [`PEEK_BYTES`]. A connection that
/// succeeds but then stays silent, resets or closes yields the bytes seen so
/// far (possibly none).
async fn exchange(
    ip: IpAddr,
    port: u16,
    request: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, ProbeError> {
    let addr = SocketAddr::new(ip, port);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut stream = match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(source)) => return Err(ProbeError::Connect { addr, source }),
        Err(_) => return Err(ProbeError::Timeout { addr, timeout }),
    };
    let mut reply = Vec::with_capacity(PEEK_BYTES);
    let _ = tokio::time::timeout_at(deadline, async {
        stream.write_all(request).await?;
        let mut buf = [0u8; PEEK_BYTES];
        while reply.len() < PEEK_BYTES {
            let n = stream.read(&mut buf[..PEEK_BYTES - reply.len()]).await?;
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&buf[..n]);
            // Enough to decide either probe.
            if reply.len() >= 5 {
                break;
            }
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
    Ok(reply)
}

/// A TLS record header: content type handshake (22) or alert (21), then
/// legacy version 3.x.
pub fn is_tls_record(bytes: &[u8]) -> bool {
    matches!(bytes, [0x16 | 0x15, 0x03, minor, ..] if *minor <= 0x04)
}

/// A minimal TLS 1.2/1.3 ClientHello: common cipher suites, groups,
/// signature algorithms and supported_versions. Servers answer it with a
/// ServerHello, a HelloRetryRequest (also a handshake record) or an alert.
pub fn client_hello() -> Vec<u8> {
    let mut extensions = Vec::new();
    // supported_groups: x25519, secp256r1, secp384r1.
    extension(
        &mut extensions,
        0x000a,
        &with_len16(&[0x00, 0x1d, 0x00, 0x17, 0x00, 0x18]),
    );
    // ec_point_formats: uncompressed.
    extension(&mut extensions, 0x000b, &[0x01, 0x00]);
    // signature_algorithms.
    extension(
        &mut extensions,
        0x000d,
        &with_len16(&[
            0x04, 0x03, 0x05, 0x03, 0x06, 0x03, 0x08, 0x04, 0x08, 0x05, 0x08, 0x06, 0x04, 0x01,
            0x05, 0x01, 0x06, 0x01,
        ]),
    );
    // supported_versions: TLS 1.3, TLS 1.2.
    extension(&mut extensions, 0x002b, &[0x04, 0x03, 0x04, 0x03, 0x03]);

    let mut body = vec![0x03, 0x03];
    // The random need not be unpredictable: no session is ever completed.
    body.extend((0u8..32).map(|i| i.wrapping_mul(37)));
    body.push(0); // no session id
    body.extend(with_len16(&[
        0x13, 0x01, 0x13, 0x02, 0x13, 0x03, 0xc0, 0x2b, 0xc0, 0x2f, 0xc0, 0x2c, 0xc0, 0x30, 0xcc,
        0xa9, 0xcc, 0xa8, 0xc0, 0x13, 0xc0, 0x14, 0x00, 0x9c, 0x00, 0x9d, 0x00, 0x2f, 0x00, 0x35,
    ]));
    body.extend([0x01, 0x00]); // null compression only
    body.extend(with_len16(&extensions));

    let mut handshake = vec![0x01]; // ClientHello
    let len = u32::try_from(body.len()).unwrap_or(0).to_be_bytes();
    handshake.extend(&len[1..]);
    handshake.extend(body);

    let mut record = vec![0x16, 0x03, 0x01];
    record.extend(with_len16(&handshake));
    record
}

fn extension(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    out.extend(kind.to_be_bytes());
    out.extend(with_len16(data));
}

fn with_len16(data: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(data.len())
        .unwrap_or(0)
        .to_be_bytes()
        .to_vec();
    out.extend(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_hello_lengths_are_consistent() {
        let hello = client_hello();
        assert_eq!(&hello[..3], &[0x16, 0x03, 0x01]);
        let record_len = usize::from(u16::from_be_bytes([hello[3], hello[4]]));
        assert_eq!(record_len, hello.len() - 5);
        assert_eq!(hello[5], 0x01);
        let handshake_len = usize::from(hello[7]) << 8 | usize::from(hello[8]);
        assert_eq!(handshake_len, hello.len() - 9);
    }

    #[test]
    fn tls_records_are_recognised() {
        assert!(is_tls_record(&[0x16, 0x03, 0x03, 0x00, 0x5a]));
        assert!(is_tls_record(&[0x15, 0x03, 0x01, 0x00, 0x02]));
        assert!(!is_tls_record(b"HTTP/1.1 400"));
        assert!(!is_tls_record(b"SSH-2.0-OpenSSH"));
        assert!(!is_tls_record(&[0x16]));
    }

    #[test]
    fn urls() {
        assert_eq!(WebKind::Http.url("dev", 8080), "http://dev.vm:8080/");
        assert_eq!(WebKind::Https.url("dev", 443), "https://dev.vm:443/");
    }
}
