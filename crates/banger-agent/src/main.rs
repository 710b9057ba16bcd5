//! `banger-vsock-agent`: the guest side of banger.
//!
//! Injected into every VM by the banger initramfs and started before the
//! image's init, it listens on vsock port [`AGENT_PORT`] and answers one
//! request per connection (see `banger-agent-proto`). It is built as a
//! static binary (`scripts/build-agent.sh`) so it runs on glibc and musl
//! distributions alike, and uses only std threads: no runtime to start, tiny
//! memory use.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use banger_agent_proto::{
    AGENT_PORT, Envelope, MAX_FRAME_BYTES, PROTOCOL_VERSION, Request, Response,
};
use vsock::{VMADDR_CID_ANY, VsockAddr, VsockListener, VsockStream};

/// A connection that sends nothing for this long is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

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
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let _ = std::thread::Builder::new()
                    .name("connection".into())
                    .spawn(move || serve(stream));
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
    if let Ok(bytes) = banger_agent_proto::encode(&response) {
        let _ = writer.write_all(&bytes);
    }
}

fn handle(request: Request) -> Response {
    match request {
        Request::Health => Response::Health {
            protocol_version: PROTOCOL_VERSION,
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_secs: uptime_secs(),
        },
    }
}

fn uptime_secs() -> u64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|text| {
            text.split('.')
                .next()
                .and_then(|seconds| seconds.parse().ok())
        })
        .unwrap_or(0)
}
