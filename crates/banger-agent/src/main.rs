//! `banger-vsock-agent`: the guest side of banger.
//!
//! Injected into every VM by the banger initramfs and started before the
//! image's init, it listens on vsock port [`AGENT_PORT`] and answers one
//! request per connection (see `banger-agent-proto`). It is built as a
//! static binary (`scripts/build-agent.sh`) so it runs on glibc and musl
//! distributions alike, and uses only std threads: no runtime to start, tiny
//! memory use.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use banger_agent::{Agent, DEFAULT_SESSION_ROOT, SessionManager};
use banger_agent_proto::{AGENT_PORT, PROTOCOL_VERSION};
use vsock::{VMADDR_CID_ANY, VsockAddr, VsockListener};

/// Connections served at once; beyond this, new ones are closed at once so a
/// flood cannot exhaust the guest's threads. Attach and log-follow
/// connections count too, but at most `server::MAX_LONG_LIVED` of them.
const MAX_CONNECTIONS: usize = 32;

fn main() -> ExitCode {
    let mut port = AGENT_PORT;
    let mut session_root = PathBuf::from(DEFAULT_SESSION_ROOT);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--port", Some(value)) => match value.parse() {
                Ok(value) => port = value,
                Err(_) => return usage(&format!("--port needs a number, got {value:?}")),
            },
            ("--session-root", Some(value)) => session_root = PathBuf::from(value),
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
    let agent = Arc::new(Agent::new(SessionManager::new(session_root)));
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                    active.fetch_sub(1, Ordering::SeqCst);
                    continue;
                }
                let slot = active.clone();
                let agent = agent.clone();
                let spawned =
                    std::thread::Builder::new()
                        .name("connection".into())
                        .spawn(move || {
                            agent.serve(stream);
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
    eprintln!(
        "banger-vsock-agent: {problem}\nusage: banger-vsock-agent [--port PORT] [--session-root DIR] [--version]"
    );
    ExitCode::from(2)
}
