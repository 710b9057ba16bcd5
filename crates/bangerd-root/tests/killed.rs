//! The real `bangerd-root` SIGKILLed in the middle of a request, inside a
//! network namespace this test creates, with the daemon's side played by
//! the daemon's own code (`RootHelperOps` and the `TapPool`) in processes
//! with the installed owner's uid (this test binary again, `daemon_mode`):
//!
//! - the request outstanding when the helper dies fails within seconds (not
//!   after the 60 s request limit) with an error naming the socket and the
//!   operation;
//! - while no helper runs, a call fails at once with the command that
//!   brings it back (`sudo banger system restart`);
//! - a new helper binds over the stale socket the killed one left, and the
//!   next call reaches it with no reconnect step (every call connects anew);
//! - a TAP the killed helper may have made without its reply arriving (made
//!   here on purpose, to be certain) is deleted by the reconciliation the
//!   daemon runs when it starts, and the pool never hands it out meanwhile.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use banger_host::net::names::{BridgeName, TapName};
use banger_host::net::pool::TapPool;
use banger_host::privileged::PrivilegedOps;
use banger_host::root_helper::RootHelperOps;
use banger_testkit::netns::NetNs;
use common::{BRIDGE, OWNER};
use rustix::process::{Pid, Signal, kill_process};

/// What "within seconds" means for a request whose helper died.
const PROMPTLY: Duration = Duration::from_secs(5);

/// A `bangerd-root` in `ns`, serving uid 0 (this test) on `socket`.
fn start_helper(ns: &NetNs, metadata: &Path, socket: &Path, log: &Path) -> Child {
    let mut helper = ns
        .wrap(
            Command::new(env!("CARGO_BIN_EXE_bangerd-root"))
                .arg("--metadata")
                .arg(metadata)
                .env("RUST_LOG", "info"),
        )
        .stdout(Stdio::null())
        .stderr(
            fs_err::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .expect("log")
                .into_parts()
                .0,
        )
        .spawn()
        .expect("start bangerd-root");
    // A stale socket of a killed helper exists before the new one binds:
    // wait for the new helper's answer, not for the file.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = helper.try_wait().expect("wait") {
            panic!(
                "bangerd-root exited ({status}): {}",
                fs_err::read_to_string(log).unwrap_or_default()
            );
        }
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return helper;
        }
        assert!(
            Instant::now() < deadline,
            "no helper on {socket:?} after 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, signal: Signal) {
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid")).expect("pid");
    kill_process(pid, signal).expect("signal bangerd-root");
}

/// The banger TAPs in `ns`, as the kernel lists them.
fn taps_in(ns: &NetNs) -> BTreeSet<String> {
    let output = ns
        .wrap(Command::new("ls").arg("/sys/class/net"))
        .output()
        .expect("ls");
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .filter(|name| name.starts_with("bgtap"))
        .map(str::to_owned)
        .collect()
}

const ACTION_ENV: &str = "BANGERD_ROOT_KILLED_ACTION";
const SOCKET_ENV: &str = "BANGERD_ROOT_KILLED_SOCKET";

/// The daemon's side (a no-op in a normal run): connects as the daemon
/// does, prints `READY`, waits for a line (or end of file) on stdin, does
/// `$BANGERD_ROOT_KILLED_ACTION` and prints `OK <result>` or
/// `ERR <milliseconds> <error chain>`.
#[test]
fn daemon_mode() {
    let (Some(action), Some(socket)) =
        (std::env::var(ACTION_ENV).ok(), std::env::var_os(SOCKET_ENV))
    else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let socket = PathBuf::from(socket);
    let result = runtime.block_on(async {
        let ops = RootHelperOps::connect(&socket, OWNER)
            .await
            .map_err(|error| (Duration::ZERO, banger_host::error_chain(&error)))?
            .0;
        // libtest printed `test daemon_mode ... ` without a newline.
        println!("\nREADY");
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        let started = Instant::now();
        act(Arc::new(ops), &action)
            .await
            .map_err(|error| (started.elapsed(), error))
    });
    match result {
        Ok(value) => println!("\nOK {value}"),
        Err((took, error)) => println!("\nERR {} {error}", took.as_millis()),
    }
}

async fn act(ops: Arc<dyn PrivilegedOps>, action: &str) -> Result<String, String> {
    let bridge = BridgeName::new(BRIDGE).expect("bridge");
    let pool = TapPool::new(ops.clone(), bridge.clone(), OWNER, 0);
    let words: Vec<&str> = action.split_whitespace().collect();
    let tap = |index: &str| TapName::new(index.parse().expect("a TAP index"));
    let result = match words.as_slice() {
        ["bridge"] => ops
            .ensure_bridge(&bridge, "10.213.0.1".parse().expect("ip"), 24)
            .await
            .map(|()| String::new()),
        ["unbridge"] => ops.delete_bridge(&bridge).await.map(|()| String::new()),
        ["list"] => ops.list_banger_taps().await.map(|taps| {
            taps.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        }),
        ["create", index] => ops
            .create_tap(&tap(index), OWNER, &bridge)
            .await
            .map(|()| String::new()),
        ["delete", index] => ops.delete_tap(&tap(index)).await.map(|()| String::new()),
        ["take"] => {
            return pool
                .take()
                .await
                .map(|tap| tap.to_string())
                .map_err(|e| banger_host::error_chain(&e));
        }
        ["reconcile", claimed @ ..] => {
            let claimed: BTreeSet<TapName> = claimed.iter().map(|index| tap(index)).collect();
            return pool
                .reconcile(&claimed)
                .await
                .map(|removed| {
                    removed
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .map_err(|e| banger_host::error_chain(&e));
        }
        other => panic!("unknown action {other:?}"),
    };
    result.map_err(|e| banger_host::error_chain(&e))
}

/// A daemon-side process doing `action` as the owner; it waits for a line
/// on stdin after connecting.
fn spawn_daemon_side(socket: &Path, action: &str) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(std::env::current_exe().expect("current exe"))
        .args(["--exact", "daemon_mode", "--nocapture", "--test-threads=1"])
        .env(ACTION_ENV, action)
        .env(SOCKET_ENV, socket)
        .uid(OWNER)
        .gid(OWNER)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the daemon side");
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    (child, stdout)
}

/// Reads the daemon side's lines until its result: `Ok(value)` or
/// `Err((milliseconds, error))`; `READY` lines are skipped.
fn result_of(
    mut child: Child,
    stdout: BufReader<std::process::ChildStdout>,
) -> Result<String, (u64, String)> {
    let mut result = None;
    for line in stdout.lines() {
        let line = line.expect("read the daemon side");
        if let Some(value) = line.strip_prefix("OK ") {
            result = Some(Ok(value.to_owned()));
        } else if line == "OK" {
            result = Some(Ok(String::new()));
        } else if let Some(rest) = line.strip_prefix("ERR ") {
            let (ms, error) = rest.split_once(' ').expect("ERR <ms> <error>");
            result = Some(Err((ms.parse().expect("ms"), error.to_owned())));
        }
    }
    assert!(child.wait().expect("wait").success(), "daemon side failed");
    result.expect("the daemon side printed a result")
}

/// Does `action` on the daemon side at once.
fn run(socket: &Path, action: &str) -> Result<String, (u64, String)> {
    let (mut child, stdout) = spawn_daemon_side(socket, action);
    drop(child.stdin.take());
    result_of(child, stdout)
}

#[test]
fn a_helper_killed_mid_request_fails_the_request_and_a_new_one_is_reached() {
    if !rustix::process::geteuid().is_root() || !Path::new("/dev/net/tun").exists() {
        banger_testkit::skip_or_fail("needs root and /dev/net/tun");
        return;
    }
    let ns = NetNs::new("bkill");
    let dir = common::open_tempdir();
    let socket: PathBuf = dir.path().join("run/root.sock");
    let metadata_path = dir.path().join("install.toml");
    let text = common::metadata(&socket).to_toml().expect("toml");
    fs_err::write(&metadata_path, text).expect("metadata");
    fs_err::set_permissions(&metadata_path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let log = dir.path().join("helper.log");

    let mut first = start_helper(&ns, &metadata_path, &socket, &log);
    run(&socket, "bridge").expect("bridge");
    let kept = run(&socket, "take").expect("a TAP");
    assert_eq!(taps_in(&ns), BTreeSet::from([kept.clone()]));

    // Connected and ready; the helper freezes, the request goes out, the
    // helper is SIGKILLed while it is outstanding.
    let (mut child, mut stdout) = spawn_daemon_side(&socket, "take");
    let mut ready = String::new();
    while !ready.contains("READY") {
        ready.clear();
        assert!(stdout.read_line(&mut ready).expect("read") > 0, "no READY");
    }
    signal(&first, Signal::STOP);
    writeln!(child.stdin.take().expect("stdin")).expect("go");
    std::thread::sleep(Duration::from_millis(300));
    signal(&first, Signal::KILL);
    first.wait().expect("reap the killed helper");
    let (ms, text) = result_of(child, stdout).expect_err("its helper died");
    println!("request outstanding at the kill failed after {ms} ms: {text}");
    assert!(Duration::from_millis(ms) < PROMPTLY, "took {ms} ms");
    assert!(text.contains(&socket.display().to_string()), "{text}");
    assert!(text.contains("create_tap"), "{text}");
    assert!(socket.exists(), "the killed helper left its socket");

    // No helper: a call fails at once and says how to bring it back.
    let started = Instant::now();
    let (_, text) = run(&socket, "list").expect_err("no helper");
    assert!(started.elapsed() < PROMPTLY);
    assert!(text.contains("sudo banger system restart"), "{text}");

    // A new helper (what systemd's restart does) over the stale socket;
    // every call connects anew, so nothing needs to reconnect.
    let mut second = start_helper(&ns, &metadata_path, &socket, &log);
    let another = run(&socket, "take").expect("a TAP again");
    assert_ne!(another, kept);

    // The worst case of a kill mid-create: the TAP was made, its reply was
    // lost. Made here on purpose so the case is certain.
    run(&socket, "create 9").expect("the lost TAP");
    // A restarted daemon's pool reconciles with the TAPs its VMs claim.
    let index = |name: &str| name.trim_start_matches("bgtap").to_owned();
    let removed = run(
        &socket,
        &format!("reconcile {} {}", index(&kept), index(&another)),
    )
    .expect("reconcile");
    assert_eq!(removed, "bgtap9", "exactly the unclaimed TAP");
    assert_eq!(
        taps_in(&ns),
        BTreeSet::from([kept.clone(), another.clone()]),
        "no half-made TAP is left"
    );

    for tap in [&kept, &another] {
        run(&socket, &format!("delete {}", index(tap))).expect("delete");
    }
    run(&socket, "unbridge").expect("delete the bridge");
    signal(&second, Signal::TERM);
    assert!(second.wait().expect("wait").success());
    assert!(!socket.exists(), "SIGTERM removes the socket");
    let log = fs_err::read_to_string(&log).expect("log");
    assert!(log.contains("bangerd-root serving"), "{log}");
}
