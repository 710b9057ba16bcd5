//! Accepting connections and answering requests.
//!
//! Every connection gets its own task, so a slow or stuck client holds up
//! nobody else. A connection is served only if its peer (`SO_PEERCRED`,
//! taken by the kernel at `connect`) has the installed owner's uid; others
//! get one `refused` reply and are closed. Each frame must arrive whole
//! within [`Policy::frame_timeout`] and be at most
//! [`MAX_FRAME`](banger_host::root_helper::MAX_FRAME) bytes: a slow frame
//! gets `timeout`, an oversized header `too_large` (the body is never read),
//! and the connection is closed; a frame that is not a valid request gets
//! `bad_request` and the connection stays usable. At most
//! [`Policy::max_connections`] connections are served at once.
//!
//! Every request and every refusal is logged with the peer's pid and uid.

use std::fmt::Write as _;
use std::sync::Arc;

use banger_host::error_chain;
use banger_host::net::tun::TunError;
use banger_host::privileged::{PrivilegedError, PrivilegedOps};
use banger_host::root_helper::proto::{
    ErrorCode, ErrorReply, FrameError, HelloReply, Reply, Request, Response, read_frame,
    write_frame,
};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use crate::policy::Policy;

/// Who is on the other end of a connection.
#[derive(Debug, Clone, Copy)]
struct Peer {
    uid: u32,
    pid: i32,
}

/// Serves `listener` until the task is dropped (the caller decides when
/// to stop, e.g. on SIGTERM). Accept errors (out of file descriptors) are
/// logged and retried after a pause, never fatal.
pub async fn serve(listener: UnixListener, policy: Policy, ops: Arc<dyn PrivilegedOps>) {
    let policy = Arc::new(policy);
    let slots = Arc::new(Semaphore::new(policy.max_connections));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::error!(%error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(
                limit = policy.max_connections,
                "too many connections; closing a new one"
            );
            continue;
        };
        let policy = policy.clone();
        let ops = ops.clone();
        tokio::spawn(async move {
            connection(stream, &policy, ops.as_ref()).await;
            drop(slot);
        });
    }
}

/// Serves one connection until it closes, misbehaves or times out.
async fn connection(mut stream: UnixStream, policy: &Policy, ops: &dyn PrivilegedOps) {
    let peer = match stream.peer_cred() {
        Ok(cred) => Peer {
            uid: cred.uid(),
            pid: cred.pid().unwrap_or(0),
        },
        Err(error) => {
            tracing::warn!(%error, "cannot read the peer's credentials; closing");
            return;
        }
    };
    if !policy.allows_peer(peer.uid) {
        tracing::warn!(
            peer.pid,
            peer.uid,
            owner = policy.owner_uid,
            "refused: peer is not the installed owner"
        );
        let message = format!(
            "uid {} may not use bangerd-root; it serves only uid {}",
            peer.uid, policy.owner_uid
        );
        reply_error(&mut stream, policy, ErrorCode::Refused, message).await;
        return;
    }
    loop {
        let body = match tokio::time::timeout(policy.frame_timeout, read_frame(&mut stream)).await {
            Ok(Ok(Some(body))) => body,
            Ok(Ok(None)) => return,
            Err(_) => {
                tracing::warn!(
                    peer.pid,
                    peer.uid,
                    "refused: no whole request within {:?}; closing",
                    policy.frame_timeout
                );
                let message = format!(
                    "no whole request arrived within {} s",
                    policy.frame_timeout.as_secs_f32()
                );
                reply_error(&mut stream, policy, ErrorCode::Timeout, message).await;
                return;
            }
            Ok(Err(error @ FrameError::TooLarge { .. })) => {
                tracing::warn!(peer.pid, peer.uid, %error, "refused: frame too large; closing");
                reply_error(&mut stream, policy, ErrorCode::TooLarge, error.to_string()).await;
                return;
            }
            Ok(Err(error)) => {
                tracing::warn!(peer.pid, peer.uid, error = %error_chain(&error), "connection failed");
                return;
            }
        };
        let response = handle(&body, peer, policy, ops).await;
        if !send(&mut stream, policy, &response).await {
            return;
        }
    }
}

/// Decodes, checks and performs one request.
async fn handle(body: &[u8], peer: Peer, policy: &Policy, ops: &dyn PrivilegedOps) -> Response {
    let request: Request = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(error) => {
            tracing::warn!(peer.pid, peer.uid, %error, "refused: not a valid request");
            return error_response(
                ErrorCode::BadRequest,
                format!("not a valid request: {error}"),
            );
        }
    };
    let operation = request.operation();
    let args = describe(&request);
    if let Err(refusal) = policy.check(&request) {
        let message = error_chain(&refusal);
        tracing::warn!(peer.pid, peer.uid, operation, %args, reason = %message, "refused");
        return error_response(ErrorCode::Forbidden, message);
    }
    tracing::info!(peer.pid, peer.uid, operation, %args, "request");
    match execute(&request, policy, ops).await {
        Ok(reply) => {
            tracing::debug!(peer.pid, operation, "done");
            Response::Ok(reply)
        }
        Err(error) => {
            let message = error_chain(&error);
            tracing::warn!(peer.pid, peer.uid, operation, %args, error = %message, "failed");
            let code = match error {
                PrivilegedError::Tun(TunError::Exists { .. }) => ErrorCode::Exists,
                _ => ErrorCode::Failed,
            };
            error_response(code, message)
        }
    }
}

/// Performs an allowed request. TAPs are always made for the installed owner.
async fn execute(
    request: &Request,
    policy: &Policy,
    ops: &dyn PrivilegedOps,
) -> Result<Reply, PrivilegedError> {
    let done = |()| Reply::Done;
    match request {
        Request::Hello => Ok(Reply::Hello(HelloReply {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            owner_uid: policy.owner_uid,
            bridge: policy.bridge.clone(),
            allowed_cidrs: policy.allowed_cidrs.clone(),
        })),
        Request::EnsureBridge { bridge, ip, prefix } => {
            ops.ensure_bridge(bridge, *ip, *prefix).await.map(done)
        }
        Request::DeleteBridge { bridge } => ops.delete_bridge(bridge).await.map(done),
        Request::CreateTap { tap, bridge } => ops
            .create_tap(tap, policy.owner_uid, bridge)
            .await
            .map(done),
        Request::DeleteTap { tap } => ops.delete_tap(tap).await.map(done),
        Request::ListBangerTaps => ops.list_banger_taps().await.map(Reply::Taps),
        Request::ApplyFirewall { state } => ops.apply_firewall(state).await.map(done),
        Request::RemoveFirewall => ops.remove_firewall().await.map(done),
        Request::RouteVmDomain { bridge, server } => ops
            .route_vm_domain(bridge, *server)
            .await
            .map(Reply::Routing),
    }
}

/// A short description of the arguments, for the log.
fn describe(request: &Request) -> String {
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = match request {
        Request::Hello | Request::ListBangerTaps | Request::RemoveFirewall => Ok(()),
        Request::EnsureBridge { bridge, ip, prefix } => write!(text, "{bridge} {ip}/{prefix}"),
        Request::DeleteBridge { bridge } => write!(text, "{bridge}"),
        Request::CreateTap { tap, bridge } => write!(text, "{tap} on {bridge}"),
        Request::DeleteTap { tap } => write!(text, "{tap}"),
        Request::ApplyFirewall { state } => write!(
            text,
            "{} {} via {}: {} guests, {} with NAT",
            state.bridge,
            state.cidr,
            state.bridge_ip,
            state.guests.len(),
            state.guests.iter().filter(|guest| guest.nat).count()
        ),
        Request::RouteVmDomain { bridge, server } => write!(text, "~vm on {bridge} to {server}"),
    };
    text
}

fn error_response(code: ErrorCode, message: String) -> Response {
    Response::Err(ErrorReply { code, message })
}

/// Sends `response`, bounded by the frame timeout; false when the
/// connection is unusable.
async fn send(stream: &mut UnixStream, policy: &Policy, response: &Response) -> bool {
    match tokio::time::timeout(policy.frame_timeout, write_frame(stream, response)).await {
        Ok(Ok(())) => true,
        Ok(Err(error)) => {
            tracing::debug!(error = %error_chain(&error), "cannot send a reply");
            false
        }
        Err(_) => {
            tracing::debug!("the client did not take a reply in time");
            false
        }
    }
}

/// Sends an error reply before closing (best effort: the peer may be gone).
async fn reply_error(stream: &mut UnixStream, policy: &Policy, code: ErrorCode, message: String) {
    send(stream, policy, &error_response(code, message)).await;
}
