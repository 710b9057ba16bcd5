//! Canonical examples of every protocol message, used to detect schema
//! changes: `tests/schema.rs` snapshots them (insta) and checks their
//! [`fingerprint`] against [`crate::SCHEMA_HISTORY`].
//!
//! Every optional field is populated and every variant appears, so any
//! change of a field name, type tag or variant shows up in the output.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{
    Envelope, FsUsage, GuestStats, ListeningSocket, LogStream, PROTOCOL_VERSION, Request, Response,
    SessionRefusal, SessionSignal, SessionSpec, SessionState, SessionStatus, SocketProcess,
    StdinMode, Transport,
};

/// The example [`crate::Identity`] (also used by its own tests).
pub fn identity_example() -> crate::Identity {
    crate::Identity {
        iface: "eth0".into(),
        mac: "02:42:ac:1e:00:07".into(),
        address: Ipv4Addr::new(172, 30, 0, 7),
        prefix_len: 24,
        gateway: Ipv4Addr::new(172, 30, 0, 1),
        hostname: "web-2".into(),
        ssh_host_key:
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaA==\n-----END OPENSSH PRIVATE KEY-----\n"
                .into(),
        ssh_host_key_pub: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA web-2".into(),
        machine_id: "0123456789abcdef0123456789abcdef".into(),
        entropy: "ab".repeat(crate::identity::ENTROPY_BYTES),
    }
}

/// One envelope per request variant.
pub fn requests() -> Vec<Envelope> {
    let name = || "web".to_owned();
    [
        Request::Health,
        Request::SetClock {
            unix_secs: 1_700_000_000,
            nanos: 123_456_789,
        },
        Request::Reidentify(identity_example()),
        Request::ListeningPorts,
        Request::Stats,
        Request::SessionStart(SessionSpec {
            name: name(),
            argv: vec!["npm".into(), "run".into(), "dev".into()],
            cwd: "/root/app".into(),
            stdin_mode: StdinMode::Pipe,
            require_commands: vec!["node".into()],
        }),
        Request::SessionList,
        Request::SessionShow { name: name() },
        Request::SessionSignal {
            name: name(),
            signal: SessionSignal::Terminate,
        },
        Request::SessionSignal {
            name: name(),
            signal: SessionSignal::Kill,
        },
        Request::SessionRemove { name: name() },
        Request::SessionLogs {
            name: name(),
            stream: LogStream::Stdout,
            offset: 0,
            follow: true,
        },
        Request::SessionLogs {
            name: name(),
            stream: LogStream::Stderr,
            offset: 1024,
            follow: false,
        },
        Request::SessionAttach { name: name() },
    ]
    .into_iter()
    .map(|request| Envelope {
        version: PROTOCOL_VERSION,
        request,
    })
    .collect()
}

/// One response per variant, with every optional field set.
pub fn responses() -> Vec<Response> {
    let usage = FsUsage {
        total_bytes: 8 << 30,
        free_bytes: 6 << 30,
        available_bytes: 5 << 30,
    };
    [
        Response::Health {
            protocol_version: PROTOCOL_VERSION,
            agent_version: "0.1.0".into(),
            uptime_secs: 42,
        },
        Response::ListeningPorts {
            sockets: vec![
                ListeningSocket {
                    transport: Transport::Tcp,
                    address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    port: 22,
                    process: Some(SocketProcess {
                        pid: 312,
                        comm: "sshd".into(),
                        cmdline: "sshd: /usr/sbin/sshd -D [listener]".into(),
                    }),
                },
                ListeningSocket {
                    transport: Transport::Udp,
                    address: IpAddr::V6(Ipv6Addr::LOCALHOST),
                    port: 5353,
                    process: None,
                },
            ],
            truncated: false,
        },
        Response::Stats(GuestStats {
            uptime_secs: 42,
            load_avg_x100: [12, 5, 1],
            mem_total_bytes: 2 << 30,
            mem_available_bytes: 1 << 30,
            fs_root: Some(usage),
            fs_root_home: Some(usage),
        }),
        Response::Error {
            message: "unsupported".into(),
        },
        Response::SessionStarted {
            session: session(SessionState::Running),
        },
        Response::Sessions {
            sessions: vec![
                session(SessionState::Running),
                session(SessionState::Exited {
                    code: Some(3),
                    signal: None,
                }),
                session(SessionState::Exited {
                    code: None,
                    signal: Some(9),
                }),
            ],
            truncated: false,
        },
        Response::Session {
            session: session(SessionState::Running),
        },
    ]
    .into_iter()
    .chain(
        refusals()
            .into_iter()
            .map(|reason| Response::SessionRefused { reason }),
    )
    .chain([
        Response::Done,
        Response::LogStream { size: 4096 },
        Response::Attached {
            session: session(SessionState::Running),
        },
    ])
    .collect()
}

fn session(state: SessionState) -> SessionStatus {
    SessionStatus {
        name: "web".into(),
        argv: vec!["npm".into(), "run".into(), "dev".into()],
        cwd: "/root/app".into(),
        stdin_mode: StdinMode::Pipe,
        pid: 812,
        started_at_unix: 1_700_000_000,
        state,
        attached: true,
        stdout_bytes: 4096,
        stderr_bytes: 12,
    }
}

/// One refusal of every kind.
fn refusals() -> Vec<SessionRefusal> {
    let name = || "web".to_owned();
    vec![
        SessionRefusal::InvalidName {
            name: "Web!".into(),
        },
        SessionRefusal::InvalidArgv {
            reason: "no program given".into(),
        },
        SessionRefusal::AlreadyExists { name: name() },
        SessionRefusal::NotFound { name: name() },
        SessionRefusal::MissingCwd {
            path: "/root/app".into(),
        },
        SessionRefusal::MissingCommand {
            command: "node".into(),
        },
        SessionRefusal::NotPipeMode { name: name() },
        SessionRefusal::AlreadyAttached { name: name() },
        SessionRefusal::StillRunning { name: name() },
        SessionRefusal::NotRunning { name: name() },
        SessionRefusal::TooManySessions { limit: 256 },
        SessionRefusal::Busy { limit: 24 },
        SessionRefusal::SpawnFailed {
            message: "Permission denied (os error 13)".into(),
        },
    ]
}

/// The canonical examples as pretty JSON, one per message, requests first.
///
/// Each value is serialised directly (not through `serde_json::Value`), so
/// field order is declaration order whatever serde_json features other crates
/// enable (`preserve_order` would otherwise reorder keys and the fingerprint).
pub fn examples() -> String {
    let mut out = String::new();
    let requests = requests()
        .into_iter()
        .map(|r| serde_json::to_string_pretty(&r));
    let responses = responses()
        .into_iter()
        .map(|r| serde_json::to_string_pretty(&r));
    for json in requests.chain(responses) {
        // Serialising plain data cannot fail; record the failure rather than
        // panic, which would change the fingerprint and fail the test loudly.
        out.push_str(&json.unwrap_or_else(|error| format!("<error: {error}>")));
        out.push('\n');
    }
    out
}

/// 64-bit FNV-1a of `text`: stable across Rust versions and platforms, which
/// `std`'s hashers do not promise.
pub fn fingerprint(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
