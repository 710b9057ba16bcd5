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

/// A real TLS stack (`openssl s_server`, TLS 1.2+1.3 and TLS 1.3 only) must
/// answer the hand-built ClientHello with a handshake record. Without a
/// usable `openssl` it fails under CI and reports itself SKIPPED elsewhere.
#[tokio::test]
async fn real_tls_server_is_detected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("key.pem");
    let cert = dir.path().join("cert.pem");
    let generated = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=probe", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    if !matches!(generated, Ok(status) if status.success()) {
        banger_testkit::skip_or_fail("openssl not usable (cannot make a certificate)");
        return;
    }
    for extra in [&[][..], &["-tls1_3"][..]] {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let mut server = tokio::process::Command::new("openssl")
            .args(["s_server", "-quiet", "-accept", &port.to_string(), "-cert"])
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .args(extra)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("s_server starts");
        let started = Instant::now();
        let result = loop {
            match probe_https(LOCALHOST, port, TIMEOUT).await {
                Err(_) if started.elapsed() < Duration::from_secs(5) => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                other => break other,
            }
        };
        let _ = server.kill().await;
        assert!(
            result.expect("connects"),
            "openssl s_server {extra:?} not detected"
        );
    }
}
