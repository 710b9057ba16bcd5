//! Host side of the guest agent protocol (`banger-agent-proto`).
//!
//! [`call`] sends one request to a VM's agent over the VMM's hybrid-vsock
//! socket and returns the reply only after it has been checked:
//!
//! - the whole call (connect, handshake, request, reply) has a deadline;
//! - reading stops at [`MAX_FRAME_BYTES`]: a longer reply is refused, never
//!   buffered;
//! - malformed JSON, unknown fields, a reply of the wrong variant, ports of 0,
//!   more than [`MAX_SOCKETS`] sockets and inconsistent numbers are refused;
//! - every guest string is passed through [`sanitize_guest_text`], so what is
//!   returned is safe to print.
//!
//! Trust policy: the agent runs inside the guest, which the user (or any
//! program in it) controls. What it says about processes is a *claim*: the
//! host shows it labelled as guest-reported and never acts on it — no pid is
//! looked up, signalled or compared on the host, and no guest-supplied string
//! is used as a host path. The typed helpers ([`listening_ports`]) expose the
//! process as [`ReportedProcess`] to keep that visible in the API.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use banger_agent_proto::{
    AGENT_PORT, Envelope, FrameError, GuestStats, MAX_CMDLINE_BYTES, MAX_COMM_BYTES,
    MAX_FRAME_BYTES, MAX_MESSAGE_BYTES, MAX_SESSIONS, MAX_SOCKETS, PROTOCOL_VERSION, Request,
    Response, SessionRefusal, Transport,
};
use banger_vmm::VsockError;
use rustix::net::RecvFlags;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::UnixStream;

pub mod host_stats;
pub mod probe;
mod sanitize;
mod session;

pub use banger_agent_proto as proto;
pub use sanitize::{GUEST_TEXT_MAX_CHARS, REPLACEMENT, sanitize_guest_text};
pub use session::{
    session_attach, session_list, session_logs, session_remove, session_show, session_signal,
    session_start,
};

/// Why an agent call failed.
#[derive(Debug, Error)]
pub enum AgentError {
    /// The hybrid-vsock connection or handshake failed.
    #[error(transparent)]
    Connect(#[from] VsockError),
    /// The call did not complete within its deadline.
    #[error("agent call {request} via {}: no reply within {timeout:?}", uds.display())]
    Timeout {
        /// The VM's vsock socket.
        uds: PathBuf,
        /// What was asked.
        request: &'static str,
        /// The deadline.
        timeout: Duration,
    },
    /// Writing the request or reading the reply failed.
    #[error("agent call {request}: i/o")]
    Io {
        /// What was asked.
        request: &'static str,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The request could not be encoded (a bug, not a guest problem).
    #[error("agent call {request}: cannot encode request")]
    Encode {
        /// What was asked.
        request: &'static str,
        /// Underlying error.
        source: FrameError,
    },
    /// The reply exceeded [`MAX_FRAME_BYTES`] without a newline.
    #[error("agent call {request}: reply exceeds the {MAX_FRAME_BYTES}-byte limit")]
    TooLarge {
        /// What was asked.
        request: &'static str,
    },
    /// The agent closed the connection before a complete reply.
    #[error(
        "agent call {request}: connection closed after {received} bytes, before a complete reply"
    )]
    Incomplete {
        /// What was asked.
        request: &'static str,
        /// Bytes received.
        received: usize,
    },
    /// The reply is not valid JSON of a known shape.
    #[error("agent call {request}: malformed reply")]
    Malformed {
        /// What was asked.
        request: &'static str,
        /// Underlying error.
        source: FrameError,
    },
    /// The reply is well-formed but answers a different request.
    #[error("agent call {request}: unexpected {got} reply")]
    WrongVariant {
        /// What was asked.
        request: &'static str,
        /// The variant received.
        got: &'static str,
    },
    /// The reply has impossible values (port 0, too many entries, ...).
    #[error("agent call {request}: invalid reply: {reason}")]
    Invalid {
        /// What was asked.
        request: &'static str,
        /// What is wrong (part of this message, not a cause).
        reason: InvalidReply,
    },
    /// The agent refused a session request (the refusal's strings are
    /// sanitised).
    #[error("{reason}")]
    SessionRefused {
        /// Why.
        reason: SessionRefusal,
    },
    /// The agent answered with [`Response::Error`].
    #[error("agent call {request}: agent error: {message}")]
    Rejected {
        /// What was asked.
        request: &'static str,
        /// The agent's message, sanitised.
        message: String,
    },
}

/// What makes a well-formed reply impossible: the value the guest claimed,
/// and the bound it broke. Guest strings in it are sanitised or passed the
/// session-name rule, so it is safe to print.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidReply {
    /// More sockets than [`MAX_SOCKETS`].
    #[error("{count} sockets, more than the limit of {MAX_SOCKETS}")]
    TooManySockets {
        /// How many were listed.
        count: usize,
    },
    /// A listening socket on port 0.
    #[error("a socket with port 0")]
    SocketPortZero,
    /// A socket's process with pid 0.
    #[error("a process with pid 0")]
    ProcessPidZero,
    /// `MemAvailable` larger than `MemTotal`.
    #[error("available memory exceeds total memory")]
    MemoryAvailableExceedsTotal {
        /// The claimed available bytes.
        available: u64,
        /// The claimed total bytes.
        total: u64,
    },
    /// A filesystem with more free (or available) than total space.
    #[error("free space of {mount} exceeds its size")]
    FreeSpaceExceedsSize {
        /// The mount point (`/` or `/root`).
        mount: &'static str,
    },
    /// More sessions than [`MAX_SESSIONS`].
    #[error("{count} sessions, more than the limit of {MAX_SESSIONS}")]
    TooManySessions {
        /// How many were listed.
        count: usize,
    },
    /// A session name the agent itself would refuse.
    #[error("invalid session name {name:?}")]
    SessionName {
        /// The name, sanitised and cut to 64 characters.
        name: String,
    },
    /// A session with pid 0.
    #[error("session {name:?} with pid 0")]
    SessionPidZero {
        /// The session.
        name: String,
    },
    /// A session with no argv, or more than
    /// [`MAX_ARGS`](banger_agent_proto::MAX_ARGS) arguments.
    #[error("session {name:?} with {count} arguments")]
    SessionArgCount {
        /// The session.
        name: String,
        /// How many arguments it claims.
        count: usize,
    },
    /// The status of another session than the one asked about.
    #[error("status of session {got:?} instead of {asked:?}")]
    OtherSession {
        /// The session the reply is about.
        got: String,
        /// The session asked about.
        asked: String,
    },
}

/// Sends `request` to the agent behind the VM's hybrid-vsock socket `uds` and
/// returns its validated, sanitised reply. The whole exchange must finish
/// within `timeout`. A [`Response::Error`] reply becomes
/// [`AgentError::Rejected`] and a [`Response::SessionRefused`] one
/// [`AgentError::SessionRefused`], so `Ok` always holds the variant matching
/// `request`. For the two requests followed by a stream (logs, attach) use
/// [`session_logs`] and [`session_attach`], which return the connection.
pub async fn call(uds: &Path, request: Request, timeout: Duration) -> Result<Response, AgentError> {
    call_keeping_stream(uds, &request, timeout)
        .await
        .map(|(response, _)| response)
}

/// [`call`], also returning the connection positioned right after the
/// reply line (nothing past the newline has been read).
async fn call_keeping_stream(
    uds: &Path,
    request: &Request,
    timeout: Duration,
) -> Result<(Response, UnixStream), AgentError> {
    match tokio::time::timeout(timeout, exchange(uds, request, timeout)).await {
        Ok(result) => result,
        Err(_) => Err(AgentError::Timeout {
            uds: uds.to_path_buf(),
            request: request.kind(),
            timeout,
        }),
    }
}

async fn exchange(
    uds: &Path,
    request: &Request,
    timeout: Duration,
) -> Result<(Response, UnixStream), AgentError> {
    let kind = request.kind();
    let frame = banger_agent_proto::encode(&Envelope {
        version: PROTOCOL_VERSION,
        request: request.clone(),
    })
    .map_err(|source| AgentError::Encode {
        request: kind,
        source,
    })?;
    let mut stream = banger_vmm::connect_vsock(uds, AGENT_PORT, timeout).await?;
    let io = |source| AgentError::Io {
        request: kind,
        source,
    };
    stream.write_all(&frame).await.map_err(io)?;
    let line = read_frame(&mut stream, kind).await?;
    let response =
        banger_agent_proto::decode::<Response>(&line).map_err(|source| AgentError::Malformed {
            request: kind,
            source,
        })?;
    Ok((validate(request, response)?, stream))
}

/// Reads one newline-terminated frame, never more than [`MAX_FRAME_BYTES`],
/// and nothing past the newline: it peeks at what is available and consumes
/// only up to the newline, because after some replies the connection carries
/// a stream that belongs to the caller.
async fn read_frame(stream: &mut UnixStream, request: &'static str) -> Result<Vec<u8>, AgentError> {
    let io = |source| AgentError::Io { request, source };
    let mut line = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let room = MAX_FRAME_BYTES - line.len();
        if room == 0 {
            return Err(AgentError::TooLarge { request });
        }
        let window = &mut chunk[..room.min(16 * 1024)];
        let available = stream
            .async_io(Interest::READABLE, || {
                rustix::net::recv(&*stream, &mut *window, RecvFlags::PEEK)
                    .map(|(read, _)| read)
                    .map_err(std::io::Error::from)
            })
            .await
            .map_err(io)?;
        if available == 0 {
            return Err(AgentError::Incomplete {
                request,
                received: line.len(),
            });
        }
        let take = window[..available]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(available, |index| index + 1);
        stream.read_exact(&mut window[..take]).await.map_err(io)?;
        line.extend_from_slice(&window[..take]);
        if line.ends_with(b"\n") {
            return Ok(line);
        }
    }
}

/// Checks that `response` answers `request` with plausible values, and
/// sanitises its strings.
fn validate(request: &Request, response: Response) -> Result<Response, AgentError> {
    let kind = request.kind();
    let invalid = |reason: InvalidReply| AgentError::Invalid {
        request: kind,
        reason,
    };
    match (request, response) {
        (_, Response::Error { message }) => Err(AgentError::Rejected {
            request: kind,
            message: sanitize_guest_text(&message, MAX_MESSAGE_BYTES),
        }),
        (
            Request::Health,
            Response::Health {
                protocol_version,
                agent_version,
                uptime_secs,
            },
        ) => Ok(Response::Health {
            protocol_version,
            agent_version: sanitize_guest_text(&agent_version, 64),
            uptime_secs,
        }),
        (
            Request::ListeningPorts,
            Response::ListeningPorts {
                mut sockets,
                truncated,
            },
        ) => {
            if sockets.len() > MAX_SOCKETS {
                return Err(invalid(InvalidReply::TooManySockets {
                    count: sockets.len(),
                }));
            }
            for socket in &mut sockets {
                if socket.port == 0 {
                    return Err(invalid(InvalidReply::SocketPortZero));
                }
                if let Some(process) = &mut socket.process {
                    if process.pid == 0 {
                        return Err(invalid(InvalidReply::ProcessPidZero));
                    }
                    process.comm = sanitize_guest_text(&process.comm, MAX_COMM_BYTES);
                    process.cmdline = sanitize_guest_text(&process.cmdline, MAX_CMDLINE_BYTES);
                }
            }
            Ok(Response::ListeningPorts { sockets, truncated })
        }
        (Request::SetClock { .. } | Request::Reidentify(_), Response::Done) => Ok(Response::Done),
        (Request::Stats, Response::Stats(stats)) => {
            check_stats(&stats).map_err(invalid)?;
            Ok(Response::Stats(stats))
        }
        (request, response) if session::is_session_request(request) => {
            session::validate(request, response)
        }
        (_, other) => Err(AgentError::WrongVariant {
            request: kind,
            got: variant_name(&other),
        }),
    }
}

fn check_stats(stats: &GuestStats) -> Result<(), InvalidReply> {
    if stats.mem_available_bytes > stats.mem_total_bytes {
        return Err(InvalidReply::MemoryAvailableExceedsTotal {
            available: stats.mem_available_bytes,
            total: stats.mem_total_bytes,
        });
    }
    for (name, usage) in [("/", &stats.fs_root), ("/root", &stats.fs_root_home)] {
        if let Some(usage) = usage {
            if usage.free_bytes > usage.total_bytes || usage.available_bytes > usage.total_bytes {
                return Err(InvalidReply::FreeSpaceExceedsSize { mount: name });
            }
        }
    }
    Ok(())
}

pub(crate) fn variant_name(response: &Response) -> &'static str {
    match response {
        Response::Health { .. } => "health",
        Response::ListeningPorts { .. } => "listening_ports",
        Response::Stats(_) => "stats",
        Response::Error { .. } => "error",
        Response::SessionStarted { .. } => "session_started",
        Response::Sessions { .. } => "sessions",
        Response::Session { .. } => "session",
        Response::SessionRefused { .. } => "session_refused",
        Response::Done => "done",
        Response::LogStream { .. } => "log_stream",
        Response::Attached { .. } => "attached",
    }
}

/// The agent's answer to a health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentHealth {
    /// The agent's protocol version.
    pub protocol_version: u32,
    /// The agent's build version (sanitised).
    pub agent_version: String,
    /// Seconds since the guest booted.
    pub uptime_secs: u64,
}

/// Asks the agent for [`Request::Health`].
pub async fn health(uds: &Path, timeout: Duration) -> Result<AgentHealth, AgentError> {
    match call(uds, Request::Health, timeout).await? {
        Response::Health {
            protocol_version,
            agent_version,
            uptime_secs,
        } => Ok(AgentHealth {
            protocol_version,
            agent_version,
            uptime_secs,
        }),
        other => Err(AgentError::WrongVariant {
            request: Request::Health.kind(),
            got: variant_name(&other),
        }),
    }
}

/// A guest process *as claimed by the guest agent*. Nothing here is verified
/// by the host: show it labelled as guest-reported, never act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedProcess {
    /// Pid in the guest's pid namespace (meaningless on the host).
    pub pid: u32,
    /// Process name, sanitised.
    pub comm: String,
    /// Command line, sanitised.
    pub cmdline: String,
}

/// One guest listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestListener {
    /// TCP or UDP.
    pub transport: Transport,
    /// Guest address the socket is bound to.
    pub address: IpAddr,
    /// Guest port (never 0).
    pub port: u16,
    /// The owning process, as the guest claims it.
    pub reported_process: Option<ReportedProcess>,
}

impl GuestListener {
    /// Whether the host can reach it through the VM's IP: bound to all
    /// addresses or to a non-loopback one (guest-local listeners are not).
    pub fn reachable_from_host(&self) -> bool {
        !self.address.to_canonical().is_loopback()
    }
}

/// The guest's listening sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestPorts {
    /// Sorted by transport, then port.
    pub listeners: Vec<GuestListener>,
    /// The agent had more sockets than it sent.
    pub truncated: bool,
}

/// Asks the agent for the guest's listening sockets.
pub async fn listening_ports(uds: &Path, timeout: Duration) -> Result<GuestPorts, AgentError> {
    match call(uds, Request::ListeningPorts, timeout).await? {
        Response::ListeningPorts { sockets, truncated } => {
            let mut listeners: Vec<GuestListener> = sockets
                .into_iter()
                .map(|socket| GuestListener {
                    transport: socket.transport,
                    address: socket.address,
                    port: socket.port,
                    reported_process: socket.process.map(|process| ReportedProcess {
                        pid: process.pid,
                        comm: process.comm,
                        cmdline: process.cmdline,
                    }),
                })
                .collect();
            // Do not rely on the guest's ordering.
            listeners.sort_by_key(|l| (l.transport, l.port, l.address));
            Ok(GuestPorts {
                listeners,
                truncated,
            })
        }
        other => Err(AgentError::WrongVariant {
            request: Request::ListeningPorts.kind(),
            got: variant_name(&other),
        }),
    }
}

/// Sets the guest's wall clock to the host's, now (after a resume). The
/// exchange takes a few milliseconds, well within the second the clock must
/// be right to.
pub async fn set_clock(uds: &Path, timeout: Duration) -> Result<(), AgentError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let request = Request::SetClock {
        unix_secs: now.as_secs(),
        nanos: now.subsec_nanos(),
    };
    match call(uds, request.clone(), timeout).await? {
        Response::Done => Ok(()),
        other => Err(AgentError::WrongVariant {
            request: request.kind(),
            got: variant_name(&other),
        }),
    }
}

/// Gives a guest resumed from another VM's memory its own identity (see
/// `banger_agent_proto::identity`); returns once the agent has applied all
/// of it.
pub async fn reidentify(
    uds: &Path,
    identity: banger_agent_proto::Identity,
    timeout: Duration,
) -> Result<(), AgentError> {
    let request = Request::Reidentify(identity);
    let kind = request.kind();
    match call(uds, request, timeout).await? {
        Response::Done => Ok(()),
        other => Err(AgentError::WrongVariant {
            request: kind,
            got: variant_name(&other),
        }),
    }
}

/// Asks the agent for guest statistics.
pub async fn guest_stats(uds: &Path, timeout: Duration) -> Result<GuestStats, AgentError> {
    match call(uds, Request::Stats, timeout).await? {
        Response::Stats(stats) => Ok(stats),
        other => Err(AgentError::WrongVariant {
            request: Request::Stats.kind(),
            got: variant_name(&other),
        }),
    }
}

/// `<vm>.vm:<port>`: how the host reaches a guest port by name.
pub fn host_endpoint(vm_name: &str, port: u16) -> String {
    format!("{vm_name}.vm:{port}")
}
