//! Shared pieces of the helper's tests: an install, a server on a socket,
//! and clients that really are other processes with other uids.
//!
//! The tests run as root. A client is this test binary run again (as
//! `client_mode`, with `Command::uid`), so `SO_PEERCRED` sees a real peer
//! with the uid the test chose. It follows a script of steps on one
//! connection and prints one line per reply (`REPLY <json>`) or `CLOSED`.

#![allow(dead_code, reason = "each test binary uses part of this module")]

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use banger_config::InstallMetadata;
use banger_host::root_helper::proto::{self, Response};
use banger_testkit::fake_network::FakeNetwork;
use bangerd_root::Policy;

/// The installed owner in these tests (need not exist in /etc/passwd).
pub const OWNER: u32 = 4711;
/// Someone else.
pub const OTHER: u32 = 4712;
/// The installed bridge.
pub const BRIDGE: &str = "bgrtest0";

const SCRIPT_ENV: &str = "BANGERD_ROOT_TEST_SCRIPT";
const SOCKET_ENV: &str = "BANGERD_ROOT_TEST_SOCKET";

/// The install the tests use.
pub fn metadata(socket: &Path) -> InstallMetadata {
    InstallMetadata {
        version: env!("CARGO_PKG_VERSION").into(),
        owner_uid: OWNER,
        owner_gid: OWNER,
        owner_name: "bgowner".into(),
        owner_home: "/nonexistent".into(),
        bin_dir: "/usr/local/bin".into(),
        lib_dir: "/usr/local/lib/banger".into(),
        root_socket: socket.to_owned(),
        bridge_name: BRIDGE.into(),
        allowed_cidrs: vec!["10.213.0.0/24".parse().expect("cidr")],
        systemd: false,
        shell_files: Vec::new(),
    }
}

/// A temp dir other uids can traverse (the socket's own mode guards it).
pub fn open_tempdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("bgroot")
        .tempdir_in("/tmp")
        .expect("temp dir");
    fs_err::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// A helper serving a [`FakeNetwork`] on a socket made by `socket::bind`,
/// on its own thread and runtime.
pub struct FakeServer {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub net: Arc<FakeNetwork>,
}

impl FakeServer {
    pub fn start(frame_timeout: Duration) -> Self {
        let dir = open_tempdir();
        let socket = dir.path().join("run/root.sock");
        let mut policy = Policy::from_metadata(&metadata(&socket)).expect("policy");
        policy.frame_timeout = frame_timeout;
        let net = Arc::new(FakeNetwork::new());
        let ops = net.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let path = socket.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let (listener, _file) =
                    bangerd_root::socket::bind(&path, OWNER, OWNER).expect("bind");
                ready_tx.send(()).expect("ready");
                bangerd_root::serve(listener, policy, ops).await;
            });
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server ready");
        Self { dir, socket, net }
    }
}

/// One step of a client script.
pub enum Step {
    /// Send this text as one frame, read one reply.
    Send(String),
    /// Write these bytes as they are, read one reply.
    Raw(Vec<u8>),
    /// Send this text as one frame one byte per second, read one reply.
    Slow(String),
}

/// What a client saw after a step.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Reply(Response),
    Closed,
    /// `connect` itself failed (the socket's mode keeps this uid out).
    Denied,
}

fn script(steps: &[Step]) -> String {
    let steps: Vec<serde_json::Value> = steps
        .iter()
        .map(|step| match step {
            Step::Send(text) => serde_json::json!({"send": text}),
            Step::Raw(bytes) => serde_json::json!({"raw": bytes}),
            Step::Slow(text) => serde_json::json!({"slow": text}),
        })
        .collect();
    serde_json::to_string(&steps).expect("script")
}

/// Starts this test binary as a client with `uid`, running `steps`.
pub fn spawn_client(socket: &Path, uid: u32, steps: &[Step]) -> Child {
    Command::new(std::env::current_exe().expect("current exe"))
        .args(["--exact", "client_mode", "--nocapture", "--test-threads=1"])
        .env(SCRIPT_ENV, script(steps))
        .env(SOCKET_ENV, socket)
        .uid(uid)
        .gid(uid)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn client")
}

/// Collects a client's outcomes.
pub fn outcomes(child: Child) -> Vec<Outcome> {
    let output = child.wait_with_output().expect("client output");
    assert!(
        output.status.success(),
        "client failed: {:?}",
        output.status
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| match line.split_once(' ') {
            Some(("REPLY", json)) => {
                Some(Outcome::Reply(serde_json::from_str(json).expect("reply")))
            }
            _ if line == "CLOSED" => Some(Outcome::Closed),
            _ if line.starts_with("DENIED") => Some(Outcome::Denied),
            _ => None,
        })
        .collect()
}

/// Runs a client with `uid` through `steps` and returns what it saw.
pub fn run_client(socket: &Path, uid: u32, steps: &[Step]) -> Vec<Outcome> {
    outcomes(spawn_client(socket, uid, steps))
}

/// The error code of a reply, or `None` for success.
pub fn code(outcome: &Outcome) -> Option<String> {
    match outcome {
        Outcome::Reply(Response::Err(error)) => Some(error.code.to_string()),
        Outcome::Reply(Response::Ok(_)) => None,
        Outcome::Closed => Some("closed".into()),
        Outcome::Denied => Some("denied".into()),
    }
}

fn frame(text: &str) -> Vec<u8> {
    let mut bytes = (text.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(text.as_bytes());
    bytes
}

/// The client side (`client_mode`): does nothing unless started by
/// [`spawn_client`].
pub fn client_mode() {
    let (Some(script), Some(socket)) = (std::env::var_os(SCRIPT_ENV), std::env::var_os(SOCKET_ENV))
    else {
        return;
    };
    let steps: Vec<serde_json::Value> =
        serde_json::from_str(script.to_str().expect("utf-8")).expect("script");
    // libtest has printed `test client_mode ... ` without a newline: every
    // line written here starts on a fresh one.
    let mut out = std::io::stdout().lock();
    let mut stream = match UnixStream::connect(socket) {
        Ok(stream) => stream,
        Err(error) => {
            writeln!(out, "\nDENIED {error}").expect("stdout");
            return;
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    for step in steps {
        let sent = if let Some(text) = step["send"].as_str() {
            stream.write_all(&frame(text))
        } else if let Some(text) = step["slow"].as_str() {
            frame(text).iter().try_for_each(|byte| {
                stream.write_all(std::slice::from_ref(byte))?;
                std::thread::sleep(Duration::from_secs(1));
                Ok(())
            })
        } else {
            let bytes: Vec<u8> = serde_json::from_value(step["raw"].clone()).expect("raw");
            stream.write_all(&bytes)
        };
        // A refused or timed-out connection may be closed while we write;
        // the reply (if any) is still there to read.
        drop(sent);
        match proto::read_frame_blocking(&mut stream) {
            Ok(body) => {
                let text = String::from_utf8(body).expect("utf-8 reply");
                writeln!(out, "\nREPLY {text}").expect("stdout");
            }
            Err(_) => {
                writeln!(out, "\nCLOSED").expect("stdout");
                return;
            }
        }
    }
}
