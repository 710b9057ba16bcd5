//! A daemon that exits in the middle of a reply: the client names what was
//! interrupted and where to look, instead of an HTTP framing error.

use std::path::Path;

use banger_api::VmName;
use banger_api::operation::Progress;
use banger_api::vms::VmCreateRequest;
use banger_client::{ClientError, DaemonClient, Operation};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

/// Serves one connection: reads the request head, writes `reply`, closes.
async fn serve_once(socket: &Path, reply: &'static [u8]) -> tokio::task::JoinHandle<()> {
    let listener = UnixListener::bind(socket).expect("bind");
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut request = Vec::new();
        let mut buffer = [0_u8; 4096];
        while !request.windows(4).any(|window| window == b"\r\n\r\n") {
            let read = stream.read(&mut buffer).await.expect("read");
            if read == 0 {
                break;
            }
            request.extend_from_slice(&buffer[..read]);
        }
        stream.write_all(reply).await.expect("write");
        stream.flush().await.expect("flush");
        // Dropping the stream closes the connection, as a dying daemon does.
    })
}

/// Headers, one complete progress line, then the start of a second chunk.
const CUT_STREAM: &[u8] = b"HTTP/1.1 200 OK\r\n\
content-type: application/x-ndjson\r\n\
transfer-encoding: chunked\r\n\
\r\n\
40\r\n\
{\"event\":\"progress\",\"stage\":\"boot\",\"message\":\"waiting for SSH\"}\n\r\n\
2";

#[tokio::test]
async fn daemon_exiting_mid_stream_is_daemon_gone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("bangerd.sock");
    let server = serve_once(&socket, CUT_STREAM).await;
    let client = DaemonClient::new(&socket);
    let name = VmName::parse("devbox").expect("name");
    let request = VmCreateRequest {
        name: Some(name.clone()),
        ..Default::default()
    };
    let mut seen: Vec<Progress> = Vec::new();
    let error = client
        .create_vm(&request, &mut |progress| seen.push(progress.clone()))
        .await
        .expect_err("the stream was cut");
    server.await.expect("server");
    assert_eq!(seen.len(), 1, "the complete line was still reported");
    match &error {
        ClientError::DaemonGone { operation, .. } => {
            assert_eq!(*operation, Operation::CreateVm { name: Some(name) });
        }
        other => panic!("expected DaemonGone, got {other:?}"),
    }
    assert_eq!(
        error.to_string(),
        "bangerd exited while creating VM devbox; see `banger vm show devbox`, and bangerd.log in banger's state directory for why"
    );
}

#[tokio::test]
async fn daemon_exiting_before_the_reply_is_daemon_gone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("bangerd.sock");
    let server = serve_once(&socket, b"").await;
    let client = DaemonClient::new(&socket);
    let name = VmName::parse("devbox").expect("name");
    let error = client
        .start_vm(&name, &mut |_| {})
        .await
        .expect_err("no reply");
    server.await.expect("server");
    assert!(
        matches!(
            &error,
            ClientError::DaemonGone {
                operation: Operation::StartVm { .. },
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with("bangerd exited while starting VM devbox; see `banger vm show devbox`"),
        "{error}"
    );
}

#[tokio::test]
async fn plain_call_cut_mid_body_is_daemon_gone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("bangerd.sock");
    let server = serve_once(
        &socket,
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n[{\"na",
    )
    .await;
    let client = DaemonClient::new(&socket);
    let error = client.vms().await.expect_err("the body was cut");
    server.await.expect("server");
    assert!(
        matches!(
            &error,
            ClientError::DaemonGone {
                operation: Operation::Request { .. },
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with("bangerd exited while answering GET /v1/vms; see `banger daemon status`"),
        "{error}"
    );
}
