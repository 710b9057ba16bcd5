//! [`RootHelperOps`]: [`PrivilegedOps`] done by `bangerd-root`.
//!
//! Each call opens a fresh connection to the helper's socket, sends one
//! request and waits for one reply, both bounded in time: a helper that was
//! restarted between two calls is simply reached again, and a wedged one
//! fails the call instead of hanging the daemon. A helper that does not
//! answer is named with its socket and the command that brings it back.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::UnixStream;

use super::proto::{
    self, ErrorCode, FrameError, HelloReply, Reply, Request, Response, read_frame, write_frame,
};
use crate::net::firewall::FirewallState;
use crate::net::names::{BridgeName, TapName};
use crate::net::tun::TunError;
use crate::privileged::{OpFuture, PrivilegedError, PrivilegedOps, VmDomainRouting};

/// How long connecting to the helper may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long one request may take, reply included. Longer than the
/// helper's own limits (nft: 10 s) so its error arrives instead of ours.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Talking to `bangerd-root` failed, or it refused or failed a request.
#[derive(Debug, thiserror::Error)]
pub enum RootHelperError {
    /// Nothing answers on the socket.
    #[error(
        "cannot connect to bangerd-root at {}; start it with `sudo banger system restart` (or install it with `sudo banger system install`)",
        socket.display()
    )]
    Connect {
        /// The helper's socket.
        socket: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Connecting or the request took too long.
    #[error(
        "bangerd-root at {} did not answer {operation} within {seconds} s; restart it with `sudo banger system restart`",
        socket.display()
    )]
    Timeout {
        /// The helper's socket.
        socket: PathBuf,
        /// The request (or `connect`).
        operation: &'static str,
        /// The limit.
        seconds: u64,
    },
    /// The request or its reply could not be sent or read.
    #[error("bangerd-root at {}: {operation} failed on the connection", socket.display())]
    Frame {
        /// The helper's socket.
        socket: PathBuf,
        /// The request.
        operation: &'static str,
        /// What went wrong.
        #[source]
        source: FrameError,
    },
    /// The reply is not a valid response.
    #[error("bangerd-root at {} sent an unreadable reply to {operation}", socket.display())]
    Decode {
        /// The helper's socket.
        socket: PathBuf,
        /// The request.
        operation: &'static str,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The reply does not belong to the request.
    #[error("bangerd-root at {} answered {operation} with {reply}", socket.display())]
    UnexpectedReply {
        /// The helper's socket.
        socket: PathBuf,
        /// The request.
        operation: &'static str,
        /// What came back.
        reply: String,
    },
    /// The helper refused or failed the request.
    #[error("bangerd-root ({code}) {operation}: {message}")]
    Helper {
        /// The request.
        operation: &'static str,
        /// The kind of error.
        code: ErrorCode,
        /// The helper's message.
        message: String,
    },
    /// The helper serves another user than the one asking.
    #[error(
        "bangerd-root at {} serves uid {helper_owner}, not uid {uid}; re-run `sudo banger system install --owner` for this user, or use that user",
        socket.display()
    )]
    OwnerMismatch {
        /// The helper's socket.
        socket: PathBuf,
        /// The uid it serves.
        helper_owner: u32,
        /// The uid asking.
        uid: u32,
    },
}

impl RootHelperError {
    /// The helper's error code, when the helper itself answered with an error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Helper { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// [`PrivilegedOps`] forwarded to `bangerd-root` on `socket`.
#[derive(Debug, Clone)]
pub struct RootHelperOps {
    socket: PathBuf,
    owner_uid: u32,
    connect_timeout: Duration,
    request_timeout: Duration,
}

impl RootHelperOps {
    /// Asks the helper on `socket` who it is and checks that it serves
    /// `uid` ([`RootHelperError::OwnerMismatch`] otherwise).
    pub async fn connect(socket: &Path, uid: u32) -> Result<(Self, HelloReply), RootHelperError> {
        let ops = Self {
            socket: socket.to_owned(),
            owner_uid: uid,
            connect_timeout: CONNECT_TIMEOUT,
            request_timeout: REQUEST_TIMEOUT,
        };
        let hello = ops.hello().await?;
        if hello.owner_uid != uid {
            return Err(RootHelperError::OwnerMismatch {
                socket: socket.to_owned(),
                helper_owner: hello.owner_uid,
                uid,
            });
        }
        Ok((ops, hello))
    }

    /// Replaces the time limits (tests).
    pub fn with_timeouts(mut self, connect: Duration, request: Duration) -> Self {
        self.connect_timeout = connect;
        self.request_timeout = request;
        self
    }

    /// The helper's socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The uid the TAPs are made for.
    pub fn owner_uid(&self) -> u32 {
        self.owner_uid
    }

    /// Asks the helper who it is.
    pub async fn hello(&self) -> Result<HelloReply, RootHelperError> {
        match self.call(&Request::Hello).await? {
            Reply::Hello(hello) => Ok(hello),
            other => Err(self.unexpected("hello", &other)),
        }
    }

    /// Sends one request on a new connection and returns its reply.
    pub async fn call(&self, request: &Request) -> Result<Reply, RootHelperError> {
        let operation = request.operation();
        let mut stream =
            tokio::time::timeout(self.connect_timeout, UnixStream::connect(&self.socket))
                .await
                .map_err(|_| RootHelperError::Timeout {
                    socket: self.socket.clone(),
                    operation: "connect",
                    seconds: self.connect_timeout.as_secs(),
                })?
                .map_err(|source| RootHelperError::Connect {
                    socket: self.socket.clone(),
                    source,
                })?;
        let exchange = async {
            write_frame(&mut stream, request).await?;
            read_frame(&mut stream).await?.ok_or(FrameError::Truncated)
        };
        let body = tokio::time::timeout(self.request_timeout, exchange)
            .await
            .map_err(|_| RootHelperError::Timeout {
                socket: self.socket.clone(),
                operation,
                seconds: self.request_timeout.as_secs(),
            })?
            .map_err(|source| RootHelperError::Frame {
                socket: self.socket.clone(),
                operation,
                source,
            })?;
        decode_response(&self.socket, operation, &body)
    }

    fn unexpected(&self, operation: &'static str, reply: &Reply) -> RootHelperError {
        RootHelperError::UnexpectedReply {
            socket: self.socket.clone(),
            operation,
            reply: format!("{reply:?}"),
        }
    }

    async fn expect_done(&self, request: Request) -> Result<(), PrivilegedError> {
        match self.call(&request).await? {
            Reply::Done => Ok(()),
            other => Err(self.unexpected(request.operation(), &other).into()),
        }
    }

    async fn create_tap_impl(
        &self,
        tap: &TapName,
        owner_uid: u32,
        bridge: &BridgeName,
    ) -> Result<(), PrivilegedError> {
        if owner_uid != self.owner_uid {
            return Err(RootHelperError::OwnerMismatch {
                socket: self.socket.clone(),
                helper_owner: self.owner_uid,
                uid: owner_uid,
            }
            .into());
        }
        let request = Request::CreateTap {
            tap: tap.clone(),
            bridge: bridge.clone(),
        };
        match self.expect_done(request).await {
            // The pool skips a name taken by a device it did not know of;
            // keep the error it looks for.
            Err(PrivilegedError::RootHelper(error)) if error.code() == Some(ErrorCode::Exists) => {
                Err(TunError::Exists {
                    name: tap.to_string(),
                }
                .into())
            }
            other => other,
        }
    }

    async fn list_impl(&self) -> Result<Vec<TapName>, PrivilegedError> {
        match self.call(&Request::ListBangerTaps).await? {
            Reply::Taps(taps) => Ok(taps),
            other => Err(self.unexpected("list_banger_taps", &other).into()),
        }
    }

    async fn route_impl(
        &self,
        bridge: &BridgeName,
        server: SocketAddr,
    ) -> Result<VmDomainRouting, PrivilegedError> {
        let request = Request::RouteVmDomain {
            bridge: bridge.clone(),
            server,
        };
        match self.call(&request).await? {
            Reply::Routing(routing) => Ok(routing),
            other => Err(self.unexpected("route_vm_domain", &other).into()),
        }
    }
}

/// Parses a reply frame into the request's result.
fn decode_response(
    socket: &Path,
    operation: &'static str,
    body: &[u8],
) -> Result<Reply, RootHelperError> {
    let response: Response =
        serde_json::from_slice(body).map_err(|source| RootHelperError::Decode {
            socket: socket.to_owned(),
            operation,
            source,
        })?;
    match response {
        Response::Ok(reply) => Ok(reply),
        Response::Err(error) => Err(RootHelperError::Helper {
            operation,
            code: error.code,
            message: error.message,
        }),
    }
}

/// [`RootHelperOps::hello`] over a blocking socket, for `banger doctor`
/// (which is synchronous).
pub fn hello_blocking(socket: &Path, timeout: Duration) -> Result<HelloReply, RootHelperError> {
    use std::os::unix::net::UnixStream;
    let operation = "hello";
    let frame_error = |source: FrameError| RootHelperError::Frame {
        socket: socket.to_owned(),
        operation,
        source,
    };
    let mut stream = UnixStream::connect(socket).map_err(|source| RootHelperError::Connect {
        socket: socket.to_owned(),
        source,
    })?;
    for result in [
        stream.set_read_timeout(Some(timeout)),
        stream.set_write_timeout(Some(timeout)),
    ] {
        result.map_err(|error| frame_error(FrameError::Io(error)))?;
    }
    proto::write_frame_blocking(&mut stream, &Request::Hello).map_err(frame_error)?;
    let body = proto::read_frame_blocking(&mut stream).map_err(|error| match error {
        FrameError::Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            RootHelperError::Timeout {
                socket: socket.to_owned(),
                operation,
                seconds: timeout.as_secs(),
            }
        }
        other => frame_error(other),
    })?;
    match decode_response(socket, operation, &body)? {
        Reply::Hello(hello) => Ok(hello),
        other => Err(RootHelperError::UnexpectedReply {
            socket: socket.to_owned(),
            operation,
            reply: format!("{other:?}"),
        }),
    }
}

impl PrivilegedOps for RootHelperOps {
    fn ensure_bridge<'a>(
        &'a self,
        name: &'a BridgeName,
        ip: Ipv4Addr,
        prefix: u8,
    ) -> OpFuture<'a, ()> {
        Box::pin(self.expect_done(Request::EnsureBridge {
            bridge: name.clone(),
            ip,
            prefix,
        }))
    }

    fn delete_bridge<'a>(&'a self, name: &'a BridgeName) -> OpFuture<'a, ()> {
        Box::pin(self.expect_done(Request::DeleteBridge {
            bridge: name.clone(),
        }))
    }

    fn create_tap<'a>(
        &'a self,
        name: &'a TapName,
        owner_uid: u32,
        bridge: &'a BridgeName,
    ) -> OpFuture<'a, ()> {
        Box::pin(self.create_tap_impl(name, owner_uid, bridge))
    }

    fn delete_tap<'a>(&'a self, name: &'a TapName) -> OpFuture<'a, ()> {
        Box::pin(self.expect_done(Request::DeleteTap { tap: name.clone() }))
    }

    fn list_banger_taps(&self) -> OpFuture<'_, Vec<TapName>> {
        Box::pin(self.list_impl())
    }

    fn apply_firewall<'a>(&'a self, state: &'a FirewallState) -> OpFuture<'a, ()> {
        Box::pin(self.expect_done(Request::ApplyFirewall {
            state: state.clone(),
        }))
    }

    fn remove_firewall(&self) -> OpFuture<'_, ()> {
        Box::pin(self.expect_done(Request::RemoveFirewall))
    }

    fn route_vm_domain<'a>(
        &'a self,
        bridge: &'a BridgeName,
        server: SocketAddr,
    ) -> OpFuture<'a, VmDomainRouting> {
        Box::pin(self.route_impl(bridge, server))
    }
}

#[cfg(test)]
mod tests;
