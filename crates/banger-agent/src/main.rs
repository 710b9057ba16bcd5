//! `banger-vsock-agent`: the guest side of banger.
//!
//! Injected into every VM by the banger initramfs and started before the
//! image's init, it listens on vsock port [`AGENT_PORT`] and answers one
//! request per connection (see `banger-agent-proto`). It is built as a
//! static binary (`scripts/build-agent.sh`) so it runs on glibc and musl
//! distributions alike, and uses only std threads for the agent itself.
//!
//! `--ssh` also serves SSH on port 22 (images without sshd, see
//! `banger_agent::sshd`, on a small tokio runtime of its own); `--init` makes
//! it banger's minimal PID 1 for images without an init
//! (`banger_agent::init`), which runs the agent as its child;
//! `--power-button` turns ACPI power button presses into SIGUSR2 to PID 1
//! (for busybox init, which does not watch the button).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use banger_agent::{Agent, DEFAULT_SESSION_ROOT, SessionManager, init, sshd};
use banger_agent_proto::{AGENT_PORT, PROTOCOL_VERSION};
use vsock::{VMADDR_CID_ANY, VsockAddr, VsockListener};

/// Connections served at once; beyond this, new ones are closed at once so a
/// flood cannot exhaust the guest's threads. Attach and log-follow
/// connections count too, but at most `server::MAX_LONG_LIVED` of them.
const MAX_CONNECTIONS: usize = 32;

/// Where `--ssh` listens unless `--ssh-address` says otherwise.
const SSH_ADDRESS: &str = "0.0.0.0:22";

fn main() -> ExitCode {
    let all: Vec<String> = std::env::args().skip(1).collect();
    if all.iter().any(|arg| arg == "--init") {
        // The child agent gets the same arguments without the init ones.
        let child: Vec<OsString> = all
            .iter()
            .filter(|arg| *arg != "--init" && *arg != "--no-agent")
            .map(OsString::from)
            .collect();
        let no_agent = all.iter().any(|arg| arg == "--no-agent");
        return init::run((!no_agent).then_some(child));
    }
    let mut port = AGENT_PORT;
    let mut session_root = PathBuf::from(DEFAULT_SESSION_ROOT);
    let mut ssh: Option<SocketAddr> = None;
    let mut args = all.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--ssh" {
            ssh = ssh.or(SSH_ADDRESS.parse().ok());
            continue;
        }
        if arg == "--power-button" {
            init::forward_power_button_to_init();
            continue;
        }
        match (arg.as_str(), args.next()) {
            ("--ssh-address", Some(value)) => match value.parse() {
                Ok(value) => ssh = Some(value),
                Err(_) => return usage(&format!("--ssh-address needs IP:PORT, got {value:?}")),
            },
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
    if let Some(address) = ssh {
        start_ssh(address);
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

/// Serves SSH on `address` from a thread with its own runtime; a failure is
/// reported on the console and leaves the agent running.
fn start_ssh(address: SocketAddr) {
    let spawned = std::thread::Builder::new()
        .name("sshd".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("banger-vsock-agent: ssh: cannot start a runtime: {error}");
                    return;
                }
            };
            let served = runtime.block_on(sshd::serve(
                address,
                std::path::Path::new(sshd::HOST_KEY_DIR),
                PathBuf::from(sshd::AUTHORIZED_KEYS),
            ));
            if let Err(error) = served {
                let mut message = error.to_string();
                let mut source = std::error::Error::source(&error);
                while let Some(cause) = source {
                    message.push_str(&format!(": {cause}"));
                    source = cause.source();
                }
                eprintln!("banger-vsock-agent: ssh: {message}");
            }
        });
    if let Err(error) = spawned {
        eprintln!("banger-vsock-agent: ssh: cannot start its thread: {error}");
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!(
        "banger-vsock-agent: {problem}\nusage: banger-vsock-agent [--port PORT] [--session-root DIR] [--ssh] [--ssh-address IP:PORT] [--power-button] [--init [--no-agent]] [--version]"
    );
    ExitCode::from(2)
}
