//! Who is on the other end of a connection, and refusing everyone but the owner.
//!
//! The socket's 0600 mode in a 0700 directory already keeps other users out;
//! the `SO_PEERCRED` check is the second wall, for peers that get past file
//! permissions (root without being us, or a process with `CAP_DAC_OVERRIDE`).
//! Credentials are read once per connection, at accept time.

use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use tokio::net::UnixListener;

use super::ApiFailure;
use crate::listener::{DeadlineListener, HeadDeadline};

/// Credentials of a connected peer, from `SO_PEERCRED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCredentials {
    /// The peer's uid, or `None` when the kernel did not tell us.
    pub uid: Option<u32>,
    /// The peer's pid, when known.
    pub pid: Option<i32>,
}

impl PeerCredentials {
    /// What the kernel says of the process at the other end of `stream`.
    fn of(stream: &tokio::net::UnixStream) -> Self {
        match stream.peer_cred() {
            Ok(credentials) => Self {
                uid: Some(credentials.uid()),
                pid: credentials.pid(),
            },
            Err(_) => Self {
                uid: None,
                pid: None,
            },
        }
    }
}

impl Connected<IncomingStream<'_, UnixListener>> for PeerCredentials {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        Self::of(stream.io())
    }
}

impl Connected<IncomingStream<'_, DeadlineListener>> for PeerCredentials {
    fn connect_info(stream: IncomingStream<'_, DeadlineListener>) -> Self {
        Self::of(stream.io().get_ref())
    }
}

/// The daemon's socket as axum serves it: every connection with a deadline
/// on its first request head (`crate::listener::deadline`).
impl axum::serve::Listener for DeadlineListener {
    type Io = HeadDeadline<tokio::net::UnixStream>;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        DeadlineListener::accept(self).await
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        DeadlineListener::local_addr(self)
    }
}

/// The uid allowed to use the API: the daemon's own.
#[derive(Debug, Clone, Copy)]
pub struct OwnerUid(pub u32);

/// Middleware refusing every request whose peer is not the owner.
pub async fn require_owner(
    State(owner): State<OwnerUid>,
    request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<PeerCredentials>>()
        .map(|info| info.0);
    match peer {
        Some(PeerCredentials { uid: Some(uid), .. }) if uid == owner.0 => next.run(request).await,
        other => {
            let uid = other.and_then(|peer| peer.uid);
            let pid = other.and_then(|peer| peer.pid);
            tracing::warn!(
                ?uid,
                ?pid,
                owner = owner.0,
                "refused API connection from another user"
            );
            ApiFailure::forbidden(format!(
                "this bangerd belongs to uid {}; connections from uid {} are refused",
                owner.0,
                uid.map_or_else(|| "unknown".to_owned(), |uid| uid.to_string())
            ))
            .into_response()
        }
    }
}
