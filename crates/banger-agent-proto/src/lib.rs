//! The protocol between the host (bangerd) and the guest agent
//! (`banger-vsock-agent`), carried over vsock.
//!
//! Framing: one JSON object per line, at most [`MAX_FRAME_BYTES`] bytes,
//! one request then one response per connection. Every request carries
//! the sender's [`PROTOCOL_VERSION`]; the agent answers a newer version with
//! [`Response::Error`] rather than guessing. The host treats everything the
//! guest sends as untrusted input (see `banger-agent-client`).
//!
//! Versioning: [`SCHEMA_HISTORY`] records, for every protocol version, a
//! fingerprint of the canonical examples in [`schema::examples`]. A test fails
//! when the schema changes without a new entry, and entries must have strictly
//! increasing versions ending at [`PROTOCOL_VERSION`], so changing a type
//! forces a version bump. Procedure: `docs/agent.md`.
//!
//! Sessions ([`session`]): two requests are followed by a byte stream on the
//! same connection after the reply line — [`Request::SessionLogs`] (raw log
//! bytes) and [`Request::SessionAttach`] (frames of [`attach`]).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub mod attach;
pub mod identity;
pub mod schema;
pub mod session;

pub use attach::{ATTACH_HEADER_BYTES, AttachFrame, AttachFrameError, MAX_ATTACH_PAYLOAD};
pub use identity::{Identity, IdentityError};
pub use session::{
    LogStream, MAX_ARG_BYTES, MAX_ARGS, MAX_ARGV_BYTES, MAX_REQUIRED_COMMANDS,
    MAX_SESSION_NAME_BYTES, MAX_SESSIONS, SESSION_PATH, SessionNameError, SessionRefusal,
    SessionSignal, SessionSpec, SessionState, SessionStatus, StdinMode, validate_session_name,
    validate_spec,
};

/// Version of this protocol. Bump it whenever a type here changes shape.
pub const PROTOCOL_VERSION: u32 = 5;

/// `(protocol version, schema fingerprint)` for every version since the
/// fingerprint was introduced; the last entry is the current schema. The
/// fingerprint is [`schema::fingerprint`] of [`schema::examples`].
pub const SCHEMA_HISTORY: &[(u32, u64)] = &[
    (2, 0x02f8_0988_e93d_f901),
    (3, 0x8622_e97e_842f_06a0),
    (4, 0x428e_561e_7947_0b42),
    (5, 0xc49c_77cb_8056_3399),
];

/// The vsock port the agent listens on.
pub const AGENT_PORT: u32 = 1024;

/// Longest accepted frame (one JSON line, newline included).
pub const MAX_FRAME_BYTES: usize = 256 * 1024;

/// Most sockets one [`Response::ListeningPorts`] carries; the agent sets
/// `truncated` when it had more.
pub const MAX_SOCKETS: usize = 256;

/// Longest process name the agent sends, in bytes (the kernel's own limit
/// for `comm` is 15).
pub const MAX_COMM_BYTES: usize = 64;

/// Longest command line the agent sends, in bytes.
pub const MAX_CMDLINE_BYTES: usize = 512;

/// Longest [`Response::Error`] message or agent version string, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// A request from the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// The sender's protocol version.
    pub version: u32,
    /// What is asked.
    pub request: Request,
}

/// What the host can ask.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Is the agent alive, and which version is it?
    Health,
    /// The guest's listening TCP sockets and bound UDP sockets.
    ListeningPorts,
    /// Load, memory, disk use and uptime of the guest.
    Stats,
    /// Start a session: answered with [`Response::SessionStarted`].
    SessionStart(SessionSpec),
    /// All sessions: answered with [`Response::Sessions`].
    SessionList,
    /// One session: answered with [`Response::Session`].
    SessionShow {
        /// The session.
        name: String,
    },
    /// Signal a running session's process group: answered with
    /// [`Response::Done`].
    SessionSignal {
        /// The session.
        name: String,
        /// Which signal.
        signal: SessionSignal,
    },
    /// Forget an exited session and delete its logs: answered with
    /// [`Response::Done`].
    SessionRemove {
        /// The session.
        name: String,
    },
    /// A session's log from `offset`: answered with [`Response::LogStream`],
    /// then the raw bytes; with `follow`, until the session has exited and
    /// the log is drained.
    SessionLogs {
        /// The session.
        name: String,
        /// Which log.
        stream: LogStream,
        /// First byte to send.
        offset: u64,
        /// Keep sending as the log grows.
        follow: bool,
    },
    /// Attach to a running pipe-mode session: answered with
    /// [`Response::Attached`], then [`AttachFrame`]s both ways.
    SessionAttach {
        /// The session.
        name: String,
    },
    /// Set the guest's wall clock (`CLOCK_REALTIME`) to the host's time,
    /// sent right after a resume (the guest did not see the paused time
    /// pass): answered with [`Response::Done`].
    SetClock {
        /// Seconds since the Unix epoch.
        unix_secs: u64,
        /// Nanoseconds within that second (below 1e9).
        nanos: u32,
    },
    /// Give a guest resumed as a new VM (a fork) its own identity: network
    /// address, MAC, hostname, SSH host key (sshd is restarted with it),
    /// machine id, and fresh entropy for its random number generator:
    /// answered with [`Response::Done`] once all of it is in place.
    Reidentify(Identity),
}

impl Request {
    /// The request's wire `type`, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Health => "health",
            Self::ListeningPorts => "listening_ports",
            Self::Stats => "stats",
            Self::SessionStart(_) => "session_start",
            Self::SessionList => "session_list",
            Self::SessionShow { .. } => "session_show",
            Self::SessionSignal { .. } => "session_signal",
            Self::SessionRemove { .. } => "session_remove",
            Self::SessionLogs { .. } => "session_logs",
            Self::SessionAttach { .. } => "session_attach",
            Self::SetClock { .. } => "set_clock",
            Self::Reidentify(_) => "reidentify",
        }
    }
}

/// What the agent answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    /// Answer to [`Request::Health`].
    Health {
        /// The agent's protocol version.
        protocol_version: u32,
        /// The agent's build version.
        agent_version: String,
        /// Seconds since the guest booted.
        uptime_secs: u64,
    },
    /// Answer to [`Request::ListeningPorts`].
    ListeningPorts {
        /// At most [`MAX_SOCKETS`] sockets.
        sockets: Vec<ListeningSocket>,
        /// The guest had more sockets than were sent.
        truncated: bool,
    },
    /// Answer to [`Request::Stats`].
    Stats(GuestStats),
    /// Answer to [`Request::SessionStart`]: it runs.
    SessionStarted {
        /// The new session.
        session: SessionStatus,
    },
    /// Answer to [`Request::SessionList`], sorted by name.
    Sessions {
        /// The sessions, at most [`MAX_SESSIONS`].
        sessions: Vec<SessionStatus>,
        /// Some were left out to keep the reply within a frame (use
        /// [`Request::SessionShow`] for those).
        truncated: bool,
    },
    /// Answer to [`Request::SessionShow`].
    Session {
        /// The session.
        session: SessionStatus,
    },
    /// A session request was refused.
    SessionRefused {
        /// Why.
        reason: SessionRefusal,
    },
    /// Answer to [`Request::SessionSignal`], [`Request::SessionRemove`],
    /// [`Request::SetClock`] and [`Request::Reidentify`].
    Done,
    /// Answer to [`Request::SessionLogs`]; the raw log bytes follow.
    LogStream {
        /// Size of the log file when the request was served.
        size: u64,
    },
    /// Answer to [`Request::SessionAttach`]; attach frames follow.
    Attached {
        /// The session.
        session: SessionStatus,
    },
    /// The request could not be served.
    Error {
        /// Why.
        message: String,
    },
}

/// Transport protocol of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// A TCP socket in the LISTEN state.
    Tcp,
    /// An unconnected, bound UDP socket.
    Udp,
}

/// One listening socket in the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListeningSocket {
    /// TCP or UDP.
    pub transport: Transport,
    /// Local address it is bound to (`0.0.0.0` / `::` for all addresses).
    pub address: IpAddr,
    /// Local port.
    pub port: u16,
    /// The process holding the socket, when the agent could find it
    /// (lowest pid when several share it).
    pub process: Option<SocketProcess>,
}

/// A guest process, as the guest reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocketProcess {
    /// Its pid in the guest.
    pub pid: u32,
    /// `/proc/<pid>/comm`, at most [`MAX_COMM_BYTES`].
    pub comm: String,
    /// `/proc/<pid>/cmdline` with NULs as spaces, at most [`MAX_CMDLINE_BYTES`].
    pub cmdline: String,
}

/// Guest-side statistics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestStats {
    /// Seconds since the guest booted.
    pub uptime_secs: u64,
    /// 1, 5 and 15 minute load averages, times 100 (the kernel reports two
    /// decimals, so this is exact and keeps floats out of the protocol).
    pub load_avg_x100: [u32; 3],
    /// `MemTotal` from `/proc/meminfo`, in bytes.
    pub mem_total_bytes: u64,
    /// `MemAvailable` from `/proc/meminfo`, in bytes.
    pub mem_available_bytes: u64,
    /// Usage of the filesystem holding `/`, if it could be read.
    pub fs_root: Option<FsUsage>,
    /// Usage of the filesystem holding `/root` (the work disk), if it could
    /// be read.
    pub fs_root_home: Option<FsUsage>,
}

/// Space on one guest filesystem (from `statvfs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsUsage {
    /// Size of the filesystem.
    pub total_bytes: u64,
    /// Free space, including blocks reserved for root.
    pub free_bytes: u64,
    /// Free space available to unprivileged users.
    pub available_bytes: u64,
}

/// Failures encoding or decoding a frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The frame is larger than [`MAX_FRAME_BYTES`].
    #[error("frame of {len} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// The frame is not valid JSON of the expected shape.
    #[error("malformed frame")]
    Malformed(#[source] serde_json::Error),
}

/// Encodes `value` as one newline-terminated JSON frame.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, FrameError> {
    let mut bytes = serde_json::to_vec(value).map_err(FrameError::Malformed)?;
    bytes.push(b'\n');
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge { len: bytes.len() });
    }
    Ok(bytes)
}

/// Decodes one frame (with or without its trailing newline).
pub fn decode<'a, T: Deserialize<'a>>(frame: &'a [u8]) -> Result<T, FrameError> {
    if frame.len() > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge { len: frame.len() });
    }
    serde_json::from_slice(frame.strip_suffix(b"\n").unwrap_or(frame))
        .map_err(FrameError::Malformed)
}

/// Truncates `text` to at most `max_bytes` bytes on a character boundary.
pub fn truncate_utf8(text: &mut String, max_bytes: usize) {
    if text.len() <= max_bytes {
        return;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let envelope = Envelope {
            version: PROTOCOL_VERSION,
            request: Request::Health,
        };
        let bytes = encode(&envelope).expect("encode");
        assert_eq!(
            bytes,
            b"{\"version\":5,\"request\":{\"type\":\"health\"}}\n"
        );
        assert_eq!(decode::<Envelope>(&bytes).expect("decode"), envelope);
    }

    #[test]
    fn every_example_round_trips() {
        for request in schema::requests() {
            let bytes = encode(&request).expect("encode");
            assert_eq!(decode::<Envelope>(&bytes).expect("decode"), request);
        }
        for response in schema::responses() {
            let bytes = encode(&response).expect("encode");
            assert_eq!(decode::<Response>(&bytes).expect("decode"), response);
        }
    }

    #[test]
    fn oversized_and_malformed_frames_are_refused() {
        let big = vec![b' '; MAX_FRAME_BYTES + 1];
        assert!(matches!(
            decode::<Response>(&big),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(
            decode::<Response>(b"{\"type\":\"health\"}"),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            decode::<Response>(b"not json"),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn out_of_range_values_and_unknown_fields_are_refused() {
        for frame in [
            // Port above u16.
            &br#"{"type":"listening_ports","truncated":false,"sockets":[{"transport":"tcp","address":"10.0.0.1","port":70000,"process":null}]}"#[..],
            // Not an IP address.
            br#"{"type":"listening_ports","truncated":false,"sockets":[{"transport":"tcp","address":"../../etc","port":80,"process":null}]}"#,
            // Unknown transport.
            br#"{"type":"listening_ports","truncated":false,"sockets":[{"transport":"sctp","address":"::","port":80,"process":null}]}"#,
            // Unknown field.
            br#"{"type":"error","message":"x","extra":1}"#,
            // Negative number.
            br#"{"type":"health","protocol_version":-1,"agent_version":"x","uptime_secs":1}"#,
        ] {
            assert!(
                matches!(decode::<Response>(frame), Err(FrameError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(frame)
            );
        }
    }

    #[test]
    fn truncate_utf8_keeps_char_boundaries() {
        let mut text = "héllo".to_owned();
        truncate_utf8(&mut text, 2);
        assert_eq!(text, "h");
        let mut text = "abc".to_owned();
        truncate_utf8(&mut text, 10);
        assert_eq!(text, "abc");
    }
}
