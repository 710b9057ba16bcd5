//! Web probes against local fake servers.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use banger_agent_client::probe::{WebKind, probe_http, probe_https, probe_web};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const TIMEOUT: Duration = Duration::from_secs(2);

/// A server answering every connection with `reply` after reading a bit
/// (or never, if `reply` is `None`).
async fn server(reply: Option<&'static [u8]>) -> u16 {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 512];
                let _ = stream.read(&mut buf).await;
                match reply {
                    Some(reply) => {
                        let _ = stream.write_all(reply).await;
                    }
                    None => tokio::time::sleep(Duration::from_secs(30)).await,
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn http_server_is_detected() {
    let port = server(Some(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")).await;
    assert!(probe_http(LOCALHOST, port, TIMEOUT).await.expect("probe"));
    assert!(!probe_https(LOCALHOST, port, TIMEOUT).await.expect("probe"));
    assert_eq!(
        probe_web(LOCALHOST, port, TIMEOUT).await,
        Some(WebKind::Http)
    );
}

#[tokio::test]
async fn tls_server_is_detected() {
    // A TLS alert record (handshake_failure), as a server that rejects our
    // offer would send: still proof that TLS is spoken.
    let port = server(Some(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28])).await;
    assert!(!probe_http(LOCALHOST, port, TIMEOUT).await.expect("probe"));
    assert!(probe_https(LOCALHOST, port, TIMEOUT).await.expect("probe"));
    assert_eq!(
        probe_web(LOCALHOST, port, TIMEOUT).await,
        Some(WebKind::Https)
    );
}

#[tokio::test]
async fn other_and_silent_servers_are_not_web() {
    let port = server(Some(b"SSH-2.0-OpenSSH_9.2\r\n")).await;
    assert_eq!(probe_web(LOCALHOST, port, TIMEOUT).await, None);

    let port = server(None).await;
    let started = Instant::now();
    assert!(
        !probe_http(LOCALHOST, port, Duration::from_millis(200))
            .await
            .expect("connects")
    );
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn closed_port_is_an_error() {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    assert!(probe_http(LOCALHOST, port, TIMEOUT).await.is_err());
    assert_eq!(probe_web(LOCALHOST, port, TIMEOUT).await, None);
}
