//! The host against a hostile agent: a fake hybrid-vsock socket does the
//! `CONNECT`/`OK` handshake, reads the request, then plays a script.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use banger_agent_client::{
    AgentError, InvalidReply, call, guest_stats, health, listening_ports, proto,
};
use proto::{MAX_FRAME_BYTES, Request, Transport};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

/// What the fake agent does after reading the request.
enum Script {
    /// Send these bytes, then keep the connection open.
    Send(Vec<u8>),
    /// Send these bytes, then close.
    SendAndClose(Vec<u8>),
    /// Stream `x` forever, without a newline.
    Flood,
    /// Read the request and never answer.
    Silent,
}

struct Fake {
    _dir: tempfile::TempDir,
    uds: PathBuf,
    requests: tokio::sync::mpsc::UnboundedReceiver<String>,
}

async fn fake_agent(script: Script) -> Fake {
    let dir = tempfile::tempdir().expect("tempdir");
    let uds = dir.path().join("vsock.sock");
    let listener = UnixListener::bind(&uds).expect("bind");
    let (tx, requests) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let mut stream = BufReader::new(stream);
        let mut line = String::new();
        stream.read_line(&mut line).await.expect("handshake");
        assert_eq!(line, "CONNECT 1024\n");
        stream
            .get_mut()
            .write_all(b"OK 1073741824\n")
            .await
            .expect("ok");
        line.clear();
        stream.read_line(&mut line).await.expect("request");
        let _ = tx.send(line);
        let stream = stream.get_mut();
        match script {
            Script::Send(bytes) => {
                let _ = stream.write_all(&bytes).await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            Script::SendAndClose(bytes) => {
                let _ = stream.write_all(&bytes).await;
            }
            Script::Flood => {
                let chunk = vec![b'x'; 64 * 1024];
                // Ends when the client stops reading and drops the socket.
                while stream.write_all(&chunk).await.is_ok() {}
            }
            Script::Silent => tokio::time::sleep(Duration::from_secs(30)).await,
        }
    });
    Fake {
        _dir: dir,
        uds,
        requests,
    }
}

fn json_line(value: serde_json::Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(&value).expect("json");
    bytes.push(b'\n');
    bytes
}

const TIMEOUT: Duration = Duration::from_secs(5);

async fn ports_reply(uds: &Path) -> Result<banger_agent_client::GuestPorts, AgentError> {
    listening_ports(uds, TIMEOUT).await
}

#[tokio::test]
async fn well_formed_replies_are_returned() {
    let mut fake = fake_agent(Script::Send(json_line(serde_json::json!({
        "type": "listening_ports",
        "truncated": false,
        "sockets": [
            {"transport": "udp", "address": "::", "port": 5353, "process": null},
            {"transport": "tcp", "address": "127.0.0.1", "port": 5432,
             "process": {"pid": 90, "comm": "postgres", "cmdline": "postgres -D /data"}},
            {"transport": "tcp", "address": "0.0.0.0", "port": 8080,
             "process": {"pid": 100, "comm": "python3", "cmdline": "python3 -m http.server 8080"}},
        ],
    }))))
    .await;
    let ports = ports_reply(&fake.uds).await.expect("reply");
    let request = fake.requests.recv().await.expect("request seen");
    assert_eq!(
        request,
        format!(
            "{{\"version\":{},\"request\":{{\"type\":\"listening_ports\"}}}}\n",
            proto::PROTOCOL_VERSION
        )
    );
    let summary: Vec<(Transport, u16, bool)> = ports
        .listeners
        .iter()
        .map(|l| (l.transport, l.port, l.reachable_from_host()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (Transport::Tcp, 5432, false),
            (Transport::Tcp, 8080, true),
            (Transport::Udp, 5353, true),
        ]
    );
}

#[tokio::test]
async fn stats_and_health_replies_are_returned() {
    let fake = fake_agent(Script::Send(
        proto::encode(&proto::schema::responses()[2]).expect("encode"),
    ))
    .await;
    let stats = guest_stats(&fake.uds, TIMEOUT).await.expect("stats");
    assert_eq!(stats.load_avg_x100, [12, 5, 1]);
    let fake = fake_agent(Script::Send(
        proto::encode(&proto::schema::responses()[0]).expect("encode"),
    ))
    .await;
    let health = health(&fake.uds, TIMEOUT).await.expect("health");
    assert_eq!(health.protocol_version, proto::PROTOCOL_VERSION);
}

#[tokio::test]
async fn oversized_frame_is_refused_without_reading_it_all() {
    let fake = fake_agent(Script::Flood).await;
    let started = Instant::now();
    let error = ports_reply(&fake.uds).await.expect_err("refused");
    assert!(matches!(error, AgentError::TooLarge { .. }), "{error}");
    assert!(started.elapsed() < TIMEOUT);

    // One byte over the limit, newline included, is refused too.
    let mut frame = vec![b' '; MAX_FRAME_BYTES];
    frame.push(b'\n');
    let fake = fake_agent(Script::Send(frame)).await;
    let error = ports_reply(&fake.uds).await.expect_err("refused");
    assert!(matches!(error, AgentError::TooLarge { .. }), "{error}");
}

#[tokio::test]
async fn silent_agent_times_out() {
    let fake = fake_agent(Script::Silent).await;
    let started = Instant::now();
    let error = call(&fake.uds, Request::Stats, Duration::from_millis(300))
        .await
        .expect_err("timeout");
    assert!(matches!(error, AgentError::Timeout { .. }), "{error}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn garbage_truncated_and_wrong_variant_replies_are_refused() {
    let fake = fake_agent(Script::Send(b"\x1b[31mnot json\n".to_vec())).await;
    let error = ports_reply(&fake.uds).await.expect_err("garbage");
    assert!(matches!(error, AgentError::Malformed { .. }), "{error}");

    let fake = fake_agent(Script::SendAndClose(b"{\"type\":\"hea".to_vec())).await;
    let error = ports_reply(&fake.uds).await.expect_err("truncated");
    assert!(
        matches!(error, AgentError::Incomplete { received: 12, .. }),
        "{error}"
    );

    let fake = fake_agent(Script::Send(
        proto::encode(&proto::schema::responses()[0]).expect("encode"),
    ))
    .await;
    let error = ports_reply(&fake.uds).await.expect_err("wrong variant");
    assert!(
        matches!(error, AgentError::WrongVariant { got: "health", .. }),
        "{error}"
    );
}

#[tokio::test]
async fn impossible_values_are_refused() {
    for (reply, what) in [
        (
            serde_json::json!({"type": "listening_ports", "truncated": false, "sockets": [
                {"transport": "tcp", "address": "0.0.0.0", "port": 0, "process": null}]}),
            "port 0",
        ),
        (
            serde_json::json!({"type": "listening_ports", "truncated": false, "sockets": [
                {"transport": "tcp", "address": "0.0.0.0", "port": 65536, "process": null}]}),
            "port out of range",
        ),
        (
            serde_json::json!({"type": "listening_ports", "truncated": false, "sockets": [
                {"transport": "tcp", "address": "/etc/passwd", "port": 80, "process": null}]}),
            "path as address",
        ),
        (
            serde_json::json!({"type": "listening_ports", "truncated": false, "sockets": (0..300)
                .map(|port| serde_json::json!({"transport": "tcp", "address": "::", "port": port + 1, "process": null}))
                .collect::<Vec<_>>()}),
            "too many sockets",
        ),
    ] {
        let fake = fake_agent(Script::Send(json_line(reply))).await;
        let error = ports_reply(&fake.uds).await.expect_err(what);
        assert!(
            matches!(
                error,
                AgentError::Invalid { .. } | AgentError::Malformed { .. }
            ),
            "{what}: {error}"
        );
    }
    let fake = fake_agent(Script::Send(json_line(serde_json::json!({
        "type": "stats", "uptime_secs": 1, "load_avg_x100": [0, 0, 0],
        "mem_total_bytes": 1, "mem_available_bytes": 2, "fs_root": null, "fs_root_home": null,
    }))))
    .await;
    let error = guest_stats(&fake.uds, TIMEOUT).await.expect_err("mem");
    assert!(
        matches!(
            error,
            AgentError::Invalid {
                reason: InvalidReply::MemoryAvailableExceedsTotal {
                    available: 2,
                    total: 1
                },
                ..
            }
        ),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .ends_with("invalid reply: available memory exceeds total memory"),
        "{error}"
    );
}

/// No control character, ESC, C1 or bidi override may survive.
fn assert_printable(text: &str) {
    assert!(
        !text
            .chars()
            .any(|c| c.is_control()
                || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')),
        "{text:?}"
    );
}

#[tokio::test]
async fn escape_sequences_in_guest_strings_are_neutralised() {
    let fake = fake_agent(Script::Send(json_line(serde_json::json!({
        "type": "listening_ports", "truncated": false, "sockets": [{
            "transport": "tcp", "address": "0.0.0.0", "port": 8080,
            "process": {
                "pid": 4242,
                "comm": "\u{1b}]0;owned\u{7}web\u{9b}2J",
                "cmdline": format!("\u{1b}[2J\u{1b}[H\u{202E}nohtyp {}", "A".repeat(10_000)),
            }
        }]
    }))))
    .await;
    let ports = ports_reply(&fake.uds).await.expect("reply");
    let process = ports.listeners[0]
        .reported_process
        .as_ref()
        .expect("process");
    assert_printable(&process.comm);
    assert_printable(&process.cmdline);
    assert!(process.comm.contains("owned") && process.comm.contains("web"));
    assert!(process.cmdline.chars().count() <= proto::MAX_CMDLINE_BYTES + 1);

    let fake = fake_agent(Script::Send(json_line(serde_json::json!({
        "type": "error", "message": "\u{1b}[8mhidden\u{1b}[0m\u{202E}",
    }))))
    .await;
    match ports_reply(&fake.uds).await {
        Err(AgentError::Rejected { message, .. }) => assert_printable(&message),
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[tokio::test]
async fn forged_port_22_owner_is_reported_as_a_guest_claim_only() {
    // The guest claims pid 1 "sshd" owns port 22 (say, to hide that a
    // different program listens there). The host cannot verify it; it must
    // pass the claim through, sanitised, as a ReportedProcess, without
    // consulting anything on the host: pid 1 on the host is the host's init.
    let fake = fake_agent(Script::Send(json_line(serde_json::json!({
        "type": "listening_ports", "truncated": false, "sockets": [{
            "transport": "tcp", "address": "0.0.0.0", "port": 22,
            "process": {"pid": 1, "comm": "sshd", "cmdline": "/usr/sbin/sshd -D"},
        }]
    }))))
    .await;
    let ports = ports_reply(&fake.uds).await.expect("reply");
    let listener = &ports.listeners[0];
    assert_eq!(listener.port, 22);
    let claim = listener.reported_process.as_ref().expect("claim");
    assert_eq!(
        (claim.pid, claim.comm.as_str(), claim.cmdline.as_str()),
        (1, "sshd", "/usr/sbin/sshd -D")
    );
    let host_init = fs_err::read_to_string("/proc/1/comm").unwrap_or_default();
    if host_init.trim() != "sshd" {
        assert_ne!(
            claim.comm,
            host_init.trim(),
            "host data leaked into a guest claim"
        );
    }
}

#[tokio::test]
async fn missing_socket_is_a_connect_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let error = ports_reply(&dir.path().join("absent.sock"))
        .await
        .expect_err("no socket");
    assert!(matches!(error, AgentError::Connect(_)), "{error}");
}
