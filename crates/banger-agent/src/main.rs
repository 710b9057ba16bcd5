//! `banger-vsock-agent`: the guest side of banger.
//!
//! Injected into every VM by the banger initramfs and started before the
//! image's init, it listens on vsock port [`AGENT_PORT`] and answers one
//! request per connection (see `banger-agent-proto`). It is built as a
//! static binary (`scripts/build-agent.sh`) so it runs on glibc and musl
//! distributions alike, and uses only std threads: no runtime to start, tiny
//! memory use.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use banger_agent_proto::{
    AGENT_PORT, Envelope, MAX_FRAME_BYTES, PROTOCOL_VERSION, Request, Response,
};
use vsock::{VMADDR_CID_ANY, VsockAddr, VsockListener, VsockStream};

mod ports;
mod stats;

/// A connection that sends nothing for this long is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A host that stops reading is dropped after this long, so a stuck peer
/// cannot pin a thread forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once; beyond this, new ones are closed at once so a
/// flood cannot exhaust the guest's threads.
const MAX_CONNECTIONS: usize = 32;

fn main() -> ExitCode {
    let mut port = AGENT_PORT;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--port", Some(value)) => match value.parse() {
                Ok(value) => port = value,
                Err(_) => return usage(&format!("--port needs a number, got {value:?}")),
            },
            ("--version", _) => {
                eprintln!(
                    "banger-vsock-agent {} (protocol {PROTOCOL_VERSION})",
                    env!("CARGO_PKG_VERSION")
                );
                return ExitCode::SUCCESS;
            }
            _ => return usage(&format!("unknown argument {arg:?}")),
        }
    }
    let listener = match VsockListener::bind(&VsockAddr::new(VMADDR_CID_ANY, port)) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("banger-vsock-agent: cannot listen on vsock port {port}: {error}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("banger-vsock-agent: listening on vsock port {port}");
    let active = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                use std::sync::atomic::Ordering;
                if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                    active.fetch_sub(1, Ordering::SeqCst);
                    continue;
                }
                let slot = active.clone();
                let spawned =
                    std::thread::Builder::new()
                        .name("connection".into())
                        .spawn(move || {
                            serve(stream);
                            slot.fetch_sub(1, Ordering::SeqCst);
                        });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::SeqCst);
                }
            }
            Err(error) => eprintln!("banger-vsock-agent: accept failed: {error}"),
        }
    }
    ExitCode::SUCCESS
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("banger-vsock-agent: {problem}\nusage: banger-vsock-agent [--port PORT] [--version]");
    ExitCode::from(2)
}

fn serve(stream: VsockStream) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let mut writer = match stream.try_clone() {
        Ok(writer) => writer,
        Err(_) => return,
    };
    let mut line = Vec::new();
    let limit = u64::try_from(MAX_FRAME_BYTES).unwrap_or(u64::MAX);
    let mut reader = BufReader::new(stream).take(limit);
    let response = match reader.read_until(b'\n', &mut line) {
        Ok(_) if !line.ends_with(b"\n") => Response::Error {
            message: "request too large or incomplete".into(),
        },
        Ok(_) => match banger_agent_proto::decode::<Envelope>(&line) {
            Ok(envelope) if envelope.version > PROTOCOL_VERSION => Response::Error {
                message: format!(
                    "protocol version {} is newer than this agent's {PROTOCOL_VERSION}",
                    envelope.version
                ),
            },
            Ok(envelope) => handle(envelope.request),
            Err(error) => Response::Error {
                message: error.to_string(),
            },
        },
        Err(error) => Response::Error {
            message: format!("cannot read request: {error}"),
        },
    };
    if let Some(bytes) = encode_bounded(response) {
        let _ = writer.write_all(&bytes);
    }
}

/// Encodes `response`, dropping listening sockets until it fits in a frame
/// (a command line full of escaped control characters can be six times its
/// raw length), so the host always gets a valid, bounded reply.
fn encode_bounded(mut response: Response) -> Option<Vec<u8>> {
    loop {
        match banger_agent_proto::encode(&response) {
            Ok(bytes) => return Some(bytes),
            Err(banger_agent_proto::FrameError::TooLarge { .. }) => match &mut response {
                Response::ListeningPorts { sockets, truncated } if !sockets.is_empty() => {
                    sockets.truncate(sockets.len() / 2);
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

fn handle(request: Request) -> Response {
    match request {
        Request::Health => Response::Health {
            protocol_version: PROTOCOL_VERSION,
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_secs: stats::parse_uptime(
                &std::fs::read_to_string("/proc/uptime").unwrap_or_default(),
            ),
        },
        Request::ListeningPorts => {
            let (sockets, truncated) = ports::listening_sockets(Path::new("/proc"));
            Response::ListeningPorts { sockets, truncated }
        }
        Request::Stats => Response::Stats(stats::collect(Path::new("/proc"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use banger_agent_proto::{ListeningSocket, SocketProcess, Transport};

    #[test]
    fn handle_reads_this_hosts_proc() {
        // Real /proc, so the parsers are exercised on a live kernel too.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        match handle(Request::ListeningPorts) {
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
        assert!(matches!(handle(Request::Stats), Response::Stats(s) if s.mem_total_bytes > 0));
        assert!(matches!(handle(Request::Health), Response::Health { .. }));
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
