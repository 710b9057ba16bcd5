//! One connection: read the request line, answer it, and for the streaming
//! session requests keep serving the connection. Generic over
//! [`Connection`], so tests drive it through Unix sockets on the host.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use banger_agent_proto::{
    Envelope, MAX_FRAME_BYTES, PROTOCOL_VERSION, Request, Response, SessionRefusal,
};

use crate::sessions::{SessionManager, stream};
use crate::{ports, stats};

/// A connection that sends nothing for this long is dropped (attach and log
/// follow connections change this).
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A host that stops reading is dropped after this long, so a stuck peer
/// cannot pin a thread forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Attach and log-follow connections served at once, kept below the total
/// connection limit so they cannot starve ordinary requests.
pub const MAX_LONG_LIVED: usize = 24;

/// A byte stream to the host: vsock in the guest, Unix sockets in tests.
pub trait Connection: Read + Write + Send + Sized + 'static {
    /// A second handle to the same connection.
    fn try_clone(&self) -> std::io::Result<Self>;
    /// See [`std::os::unix::net::UnixStream::set_read_timeout`].
    fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()>;
    /// See [`std::os::unix::net::UnixStream::set_write_timeout`].
    fn set_write_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()>;
    /// Shuts both directions down, waking up a thread blocked on it.
    fn shutdown(&self) -> std::io::Result<()>;
}

/// Implements [`Connection`] by forwarding to the stream type's own
/// inherent methods, which have the same names and signatures.
macro_rules! forward_connection {
    ($($stream:ty),+) => {$(
        impl Connection for $stream {
            fn try_clone(&self) -> std::io::Result<Self> {
                Self::try_clone(self)
            }
            fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
                Self::set_read_timeout(self, timeout)
            }
            fn set_write_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
                Self::set_write_timeout(self, timeout)
            }
            fn shutdown(&self) -> std::io::Result<()> {
                Self::shutdown(self, Shutdown::Both)
            }
        }
    )+};
}

forward_connection!(std::os::unix::net::UnixStream, vsock::VsockStream);

/// The agent's shared state: its sessions and how many long-lived
/// connections it serves.
#[derive(Debug)]
pub struct Agent {
    sessions: SessionManager,
    long_lived: AtomicUsize,
}

impl Agent {
    /// An agent with the given session manager.
    pub fn new(sessions: SessionManager) -> Self {
        Self {
            sessions,
            long_lived: AtomicUsize::new(0),
        }
    }

    /// Its sessions.
    pub fn sessions(&self) -> &SessionManager {
        &self.sessions
    }

    /// Serves one connection: one request, its reply, and the stream that
    /// follows for logs and attach.
    pub fn serve<C: Connection>(&self, stream: C) {
        let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
        let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
        let Ok(mut writer) = stream.try_clone() else {
            return;
        };
        let limit = u64::try_from(MAX_FRAME_BYTES).unwrap_or(u64::MAX);
        // The reader keeps whatever the host sent after the request line
        // (attach frames) for the streaming handlers.
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        let request = match (&mut reader).take(limit).read_until(b'\n', &mut line) {
            Ok(_) if !line.ends_with(b"\n") => Err("request too large or incomplete".to_owned()),
            Ok(_) => match banger_agent_proto::decode::<Envelope>(&line) {
                Ok(envelope) if envelope.version > PROTOCOL_VERSION => Err(format!(
                    "protocol version {} is newer than this agent's {PROTOCOL_VERSION}",
                    envelope.version
                )),
                Ok(envelope) => Ok(envelope.request),
                Err(error) => Err(error.to_string()),
            },
            Err(error) => Err(format!("cannot read request: {error}")),
        };
        let request = match request {
            Ok(request) => request,
            Err(message) => return write_reply(&mut writer, Response::Error { message }),
        };
        let long_lived = matches!(
            request,
            Request::SessionAttach { .. } | Request::SessionLogs { follow: true, .. }
        );
        if long_lived && self.long_lived.fetch_add(1, Ordering::SeqCst) >= MAX_LONG_LIVED {
            self.long_lived.fetch_sub(1, Ordering::SeqCst);
            let limit = u32::try_from(MAX_LONG_LIVED).unwrap_or(u32::MAX);
            let reason = SessionRefusal::Busy { limit };
            return write_reply(&mut writer, Response::SessionRefused { reason });
        }
        match request {
            Request::SessionLogs {
                name,
                stream,
                offset,
                follow,
            } => stream::serve_logs(
                &self.sessions,
                &mut reader,
                &mut writer,
                (&name, stream, offset, follow),
            ),
            Request::SessionAttach { name } => {
                stream::serve_attach(&self.sessions, &mut reader, &mut writer, &name);
            }
            request => write_reply(&mut writer, self.handle(request)),
        }
        if long_lived {
            self.long_lived.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Answers a request that has a reply line only.
    pub fn handle(&self, request: Request) -> Response {
        let refused = |reason| Response::SessionRefused { reason };
        match request {
            Request::Health => Response::Health {
                protocol_version: PROTOCOL_VERSION,
                agent_version: env!("CARGO_PKG_VERSION").to_owned(),
                uptime_secs: stats::parse_uptime(
                    &fs_err::read_to_string("/proc/uptime").unwrap_or_default(),
                ),
            },
            Request::ListeningPorts => {
                let (sockets, truncated) = ports::listening_sockets(Path::new("/proc"));
                Response::ListeningPorts { sockets, truncated }
            }
            Request::Stats => Response::Stats(stats::collect(Path::new("/proc"))),
            Request::SessionStart(spec) => match self.sessions.start(spec) {
                Ok(session) => Response::SessionStarted { session },
                Err(reason) => refused(reason),
            },
            Request::SessionList => Response::Sessions {
                sessions: self.sessions.list(),
                truncated: false,
            },
            Request::SessionShow { name } => match self.sessions.show(&name) {
                Ok(session) => Response::Session { session },
                Err(reason) => refused(reason),
            },
            Request::SessionSignal { name, signal } => match self.sessions.signal(&name, signal) {
                Ok(()) => Response::Done,
                Err(reason) => refused(reason),
            },
            Request::SessionRemove { name } => match self.sessions.remove(&name) {
                Ok(()) => Response::Done,
                Err(reason) => refused(reason),
            },
            Request::SetClock { unix_secs, nanos } => crate::clock::set(unix_secs, nanos),
            Request::Reidentify(identity) => crate::identity::apply(&identity),
            Request::SessionLogs { .. } | Request::SessionAttach { .. } => Response::Error {
                message: "logs and attach are served on the connection, not by handle".into(),
            },
        }
    }
}

/// Encodes and sends one reply line (failures mean the host is gone).
pub(crate) fn write_reply(writer: &mut impl Write, response: Response) {
    if let Some(bytes) = encode_bounded(response) {
        let _ = writer.write_all(&bytes);
    }
}

/// Encodes `response`, dropping listening sockets or sessions until it fits
/// in a frame (a command line full of escaped control characters can be six
/// times its raw length), so the host always gets a valid, bounded reply.
pub(crate) fn encode_bounded(mut response: Response) -> Option<Vec<u8>> {
    loop {
        match banger_agent_proto::encode(&response) {
            Ok(bytes) => return Some(bytes),
            Err(banger_agent_proto::FrameError::TooLarge { .. }) => match &mut response {
                Response::ListeningPorts { sockets, truncated } if !sockets.is_empty() => {
                    sockets.truncate(sockets.len() / 2);
                    *truncated = true;
                }
                Response::Sessions {
                    sessions,
                    truncated,
                } if !sessions.is_empty() => {
                    sessions.truncate(sessions.len() / 2);
                    *truncated = true;
                }
                _ => {
                    response = Response::Error {
                        message: "reply too large".into(),
                    }
                }
            },
            Err(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use banger_agent_proto::{ListeningSocket, SocketProcess, Transport};

    fn agent() -> Agent {
        Agent::new(SessionManager::new("/nonexistent/sessions"))
    }

    #[test]
    fn handle_reads_this_hosts_proc() {
        // Real /proc, so the parsers are exercised on a live kernel too.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        match agent().handle(Request::ListeningPorts) {
            Response::ListeningPorts { sockets, .. } => {
                let ours = sockets
                    .iter()
                    .find(|s| s.port == port && s.transport == Transport::Tcp)
                    .expect("our listener is listed");
                assert_eq!(
                    ours.process.as_ref().map(|p| p.pid),
                    Some(std::process::id())
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            matches!(agent().handle(Request::Stats), Response::Stats(s) if s.mem_total_bytes > 0)
        );
        assert!(matches!(
            agent().handle(Request::Health),
            Response::Health { .. }
        ));
    }

    #[test]
    fn oversized_replies_are_cut_to_fit_a_frame() {
        // Control characters escape to six bytes each in JSON.
        let socket = ListeningSocket {
            transport: Transport::Tcp,
            address: "0.0.0.0".parse().expect("ip"),
            port: 80,
            process: Some(SocketProcess {
                pid: 1,
                comm: "x".into(),
                cmdline: "\u{1}".repeat(MAX_FRAME_BYTES / 100),
            }),
        };
        let response = Response::ListeningPorts {
            sockets: vec![socket; 256],
            truncated: false,
        };
        let bytes = encode_bounded(response).expect("encoded");
        assert!(bytes.len() <= MAX_FRAME_BYTES);
        match banger_agent_proto::decode::<Response>(&bytes).expect("decode") {
            Response::ListeningPorts { sockets, truncated } => {
                assert!(truncated);
                assert!(!sockets.is_empty() && sockets.len() < 256);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
