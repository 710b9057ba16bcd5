//! The `bangerd-root` wire protocol: typed requests mirroring
//! [`PrivilegedOps`](crate::privileged::PrivilegedOps), typed replies, and
//! their framing.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of
//! JSON; no frame may be longer than [`MAX_FRAME`]. Every message refuses
//! unknown fields, and the names and the firewall state inside are read back
//! through their checking constructors ([`TapName`], [`BridgeName`],
//! [`FirewallState::validate`]), so a request that decodes at all is already
//! made only of values banger could have produced. What the install allows
//! (the one bridge, the allowed networks) is the helper's own second check.
//!
//! The client opens one connection per request; the server answers any
//! number of requests on a connection, one at a time.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};

use banger_config::config::Ipv4Cidr;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::net::firewall::FirewallState;
use crate::net::names::{BridgeName, TapName};
use crate::privileged::VmDomainRouting;

/// The largest frame body either side sends or accepts: 1 MiB. A firewall
/// state with a few thousand guests is well under 300 KiB.
pub const MAX_FRAME: u32 = 1 << 20;

/// One request. Mirrors the [`PrivilegedOps`](crate::privileged::PrivilegedOps)
/// methods, plus [`Request::Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Who is the helper: version, owner, bridge, allowed networks.
    Hello,
    /// `ensure_bridge`.
    EnsureBridge {
        /// The bridge (must be the installed one).
        bridge: BridgeName,
        /// Its address.
        ip: Ipv4Addr,
        /// Its prefix length.
        prefix: u8,
    },
    /// `delete_bridge`.
    DeleteBridge {
        /// The bridge (must be the installed one).
        bridge: BridgeName,
    },
    /// `create_tap`; the helper makes it owned by the installed owner, so
    /// the request carries no uid.
    CreateTap {
        /// The TAP.
        tap: TapName,
        /// The bridge it joins (must be the installed one).
        bridge: BridgeName,
    },
    /// `delete_tap`.
    DeleteTap {
        /// The TAP.
        tap: TapName,
    },
    /// `list_banger_taps`.
    ListBangerTaps,
    /// `apply_firewall`.
    ApplyFirewall {
        /// The desired state (validated on decode).
        state: FirewallState,
    },
    /// `remove_firewall`.
    RemoveFirewall,
    /// `route_vm_domain`.
    RouteVmDomain {
        /// The bridge link (must be the installed one).
        bridge: BridgeName,
        /// banger's DNS server (loopback or the bridge's address).
        server: SocketAddr,
    },
}

impl Request {
    /// The operation's name, for logs and errors.
    pub fn operation(&self) -> &'static str {
        match self {
            Self::Hello => "hello",
            Self::EnsureBridge { .. } => "ensure_bridge",
            Self::DeleteBridge { .. } => "delete_bridge",
            Self::CreateTap { .. } => "create_tap",
            Self::DeleteTap { .. } => "delete_tap",
            Self::ListBangerTaps => "list_banger_taps",
            Self::ApplyFirewall { .. } => "apply_firewall",
            Self::RemoveFirewall => "remove_firewall",
            Self::RouteVmDomain { .. } => "route_vm_domain",
        }
    }
}

/// What a successful request returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Reply {
    /// The operation was done (no payload).
    Done,
    /// The answer to [`Request::Hello`].
    Hello(HelloReply),
    /// The answer to [`Request::ListBangerTaps`].
    Taps(Vec<TapName>),
    /// The answer to [`Request::RouteVmDomain`].
    Routing(VmDomainRouting),
}

/// Who the helper is and what it will do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelloReply {
    /// The helper's version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// The helper's pid.
    pub pid: u32,
    /// The only uid it serves (and owner of the TAPs it makes).
    pub owner_uid: u32,
    /// The only bridge it touches.
    pub bridge: BridgeName,
    /// The networks a bridge address or guest network must lie in.
    #[serde(serialize_with = "cidrs_as_text")]
    pub allowed_cidrs: Vec<Ipv4Cidr>,
}

/// Writes networks as text, the only form `Ipv4Cidr` reads.
fn cidrs_as_text<S: serde::Serializer>(
    cidrs: &[Ipv4Cidr],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(cidrs.iter().map(ToString::to_string))
}

/// Why a request was not done; clients branch on this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The peer is not the installed owner; the connection is closed.
    Refused,
    /// A well-formed request outside what the install allows (another
    /// bridge, a network outside `allowed_cidrs`, a foreign DNS server).
    Forbidden,
    /// The frame was not a valid request (garbage, unknown fields, a name
    /// banger would not make, an invalid firewall state).
    BadRequest,
    /// The frame's length is over [`MAX_FRAME`]; the connection is closed.
    TooLarge,
    /// The request did not arrive in time; the connection is closed.
    Timeout,
    /// The TAP name is taken by an existing device.
    Exists,
    /// The operation was allowed and failed.
    Failed,
}

impl ErrorCode {
    /// The code as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::Forbidden => "forbidden",
            Self::BadRequest => "bad_request",
            Self::TooLarge => "too_large",
            Self::Timeout => "timeout",
            Self::Exists => "exists",
            Self::Failed => "failed",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal or failure, as sent to the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorReply {
    /// What kind of error.
    pub code: ErrorCode,
    /// The helper's message (its whole error chain).
    pub message: String,
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    /// Done, with the payload.
    Ok(Reply),
    /// Refused or failed.
    Err(ErrorReply),
}

/// A frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The announced or encoded length is over the limit.
    #[error("frame of {len} bytes is over the {MAX_FRAME}-byte limit")]
    TooLarge {
        /// The length.
        len: u64,
    },
    /// The other side closed the connection in the middle of a frame.
    #[error("connection closed in the middle of a frame")]
    Truncated,
    /// Reading or writing the socket failed.
    #[error("socket I/O failed")]
    Io(#[source] std::io::Error),
    /// The message could not be encoded (it cannot happen for these types,
    /// but serde's signature says it might).
    #[error("cannot encode the message")]
    Encode(#[source] serde_json::Error),
}

/// `message` as one frame: length header and JSON body.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, FrameError> {
    let body = serde_json::to_vec(message).map_err(FrameError::Encode)?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|len| *len <= MAX_FRAME)
        .ok_or(FrameError::TooLarge {
            len: body.len() as u64,
        })?;
    let mut frame = Vec::with_capacity(body.len() + 4);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// Checks a frame header's length against [`MAX_FRAME`].
fn body_len(header: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header);
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge {
            len: u64::from(len),
        });
    }
    Ok(len as usize)
}

fn read_error(error: std::io::Error) -> FrameError {
    if error.kind() == std::io::ErrorKind::UnexpectedEof {
        FrameError::Truncated
    } else {
        FrameError::Io(error)
    }
}

/// Reads one frame body; `None` when the connection was closed cleanly
/// before a frame began. A too-large header is refused before the body is
/// read (the caller then closes the connection).
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut header = [0u8; 4];
    let mut filled = 0;
    while filled < header.len() {
        match reader.read(&mut header[filled..]).await {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(n) => filled += n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(FrameError::Io(error)),
        }
    }
    let mut body = vec![0u8; body_len(header)?];
    reader.read_exact(&mut body).await.map_err(read_error)?;
    Ok(Some(body))
}

/// Writes `message` as one frame.
pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    writer: &mut W,
    message: &T,
) -> Result<(), FrameError> {
    let frame = encode(message)?;
    writer.write_all(&frame).await.map_err(FrameError::Io)?;
    writer.flush().await.map_err(FrameError::Io)
}

/// [`read_frame`] for blocking sockets (`banger doctor`); a clean close is
/// [`FrameError::Truncated`], since a reply was expected.
pub fn read_frame_blocking<R: Read>(reader: &mut R) -> Result<Vec<u8>, FrameError> {
    let mut header = [0u8; 4];
    reader.read_exact(&mut header).map_err(read_error)?;
    let mut body = vec![0u8; body_len(header)?];
    reader.read_exact(&mut body).map_err(read_error)?;
    Ok(body)
}

/// [`write_frame`] for blocking sockets.
pub fn write_frame_blocking<W: Write, T: Serialize>(
    writer: &mut W,
    message: &T,
) -> Result<(), FrameError> {
    let frame = encode(message)?;
    writer.write_all(&frame).map_err(FrameError::Io)?;
    writer.flush().map_err(FrameError::Io)
}

#[cfg(test)]
mod tests;
