//! The client against a scripted server on a real Unix socket: replies are
//! mapped to results, the helper'"'"'s `exists` to `TunError::Exists`, a dead
//! or silent helper to errors naming the socket and the fix.

use std::sync::Arc;

use tokio::net::UnixListener;

use super::*;
use crate::root_helper::proto::ErrorReply;

fn hello(owner_uid: u32) -> HelloReply {
    HelloReply {
        version: "0.1.0".into(),
        pid: 1,
        owner_uid,
        bridge: BridgeName::new("banger0").expect("bridge"),
        allowed_cidrs: vec!["172.30.0.0/24".parse().expect("cidr")],
    }
}

/// Serves `answer(request)` on `socket`, one request per connection;
/// `None` means never answer.
fn serve(socket: &Path, answer: impl Fn(Request) -> Option<Response> + Send + Sync + 'static) {
    let listener = UnixListener::bind(socket).expect("bind");
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let answer = answer.clone();
            tokio::spawn(async move {
                let body = read_frame(&mut stream).await.expect("read").expect("frame");
                let request: Request = serde_json::from_slice(&body).expect("request");
                match answer(request) {
                    Some(response) => write_frame(&mut stream, &response).await.expect("write"),
                    None => tokio::time::sleep(Duration::from_secs(30)).await,
                }
            });
        }
    });
}

#[tokio::test]
async fn replies_become_results_and_exists_stays_a_tun_error() {
    let dir = tempfile::tempdir().expect("dir");
    let socket = dir.path().join("root.sock");
    serve(&socket, |request| {
        Some(match request {
            Request::Hello => Response::Ok(Reply::Hello(hello(1000))),
            Request::ListBangerTaps => Response::Ok(Reply::Taps(vec![TapName::new(3)])),
            Request::CreateTap { tap, .. } if tap.index() == 1 => Response::Err(ErrorReply {
                code: ErrorCode::Exists,
                message: "taken".into(),
            }),
            Request::DeleteBridge { .. } => Response::Err(ErrorReply {
                code: ErrorCode::Forbidden,
                message: "not the installed bridge".into(),
            }),
            Request::RemoveFirewall => Response::Ok(Reply::Taps(Vec::new())),
            _ => Response::Ok(Reply::Done),
        })
    });
    let (ops, hello_reply) = RootHelperOps::connect(&socket, 1000)
        .await
        .expect("connect");
    assert_eq!(hello_reply, hello(1000));
    let bridge = BridgeName::new("banger0").expect("bridge");
    assert_eq!(
        ops.list_banger_taps().await.expect("list"),
        vec![TapName::new(3)]
    );
    ops.create_tap(&TapName::new(0), 1000, &bridge)
        .await
        .expect("create");
    assert!(matches!(
        ops.create_tap(&TapName::new(1), 1000, &bridge).await,
        Err(PrivilegedError::Tun(TunError::Exists { .. }))
    ));
    assert!(matches!(
        ops.create_tap(&TapName::new(0), 0, &bridge).await,
        Err(PrivilegedError::RootHelper(
            RootHelperError::OwnerMismatch { .. }
        ))
    ));
    let refused = ops.delete_bridge(&bridge).await.expect_err("forbidden");
    assert!(matches!(
        &refused,
        PrivilegedError::RootHelper(error) if error.code() == Some(ErrorCode::Forbidden)
    ));
    assert!(refused.to_string().contains("not the installed bridge"));
    assert!(matches!(
        ops.remove_firewall().await,
        Err(PrivilegedError::RootHelper(
            RootHelperError::UnexpectedReply { .. }
        ))
    ));
    match RootHelperOps::connect(&socket, 1001).await {
        Err(RootHelperError::OwnerMismatch {
            helper_owner: 1000,
            uid: 1001,
            ..
        }) => {}
        other => panic!("expected an owner mismatch, got {other:?}"),
    }
    let blocking = socket.clone();
    let hello_reply =
        tokio::task::spawn_blocking(move || hello_blocking(&blocking, Duration::from_secs(5)))
            .await
            .expect("join")
            .expect("hello");
    assert_eq!(hello_reply.owner_uid, 1000);
}

#[tokio::test]
async fn a_dead_helper_names_its_socket_and_the_fix() {
    let dir = tempfile::tempdir().expect("dir");
    let socket = dir.path().join("root.sock");
    let error = RootHelperOps::connect(&socket, 1000)
        .await
        .expect_err("nothing listens");
    let text = error.to_string();
    assert!(text.contains(&socket.display().to_string()), "{text}");
    assert!(text.contains("sudo banger system restart"), "{text}");
    assert!(text.contains("sudo banger system install"), "{text}");
}

#[tokio::test]
async fn a_silent_helper_times_out() {
    let dir = tempfile::tempdir().expect("dir");
    let socket = dir.path().join("root.sock");
    serve(&socket, |_| None);
    let ops = RootHelperOps {
        socket: socket.clone(),
        owner_uid: 1000,
        connect_timeout: CONNECT_TIMEOUT,
        request_timeout: REQUEST_TIMEOUT,
    }
    .with_timeouts(Duration::from_secs(1), Duration::from_millis(200));
    assert!(matches!(
        ops.hello().await,
        Err(RootHelperError::Timeout {
            operation: "hello",
            ..
        })
    ));
}
