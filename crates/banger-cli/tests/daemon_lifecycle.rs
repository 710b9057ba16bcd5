//! End-to-end tests of the daemon's lifecycle driven through the real `banger`
//! and `bangerd` binaries in isolated environments: auto-start, the
//! single-daemon guarantee under concurrency, stale sockets, graceful stop,
//! and clear start-up failures.

use std::os::unix::net::UnixListener;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use banger_testkit::TestEnv;

fn run(command: &mut Command) -> Output {
    command.stdin(Stdio::null()).output().expect("command runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn status_pid(env: &TestEnv) -> u32 {
    let output = run(env.banger().args(["daemon", "status", "--json"]));
    assert!(
        output.status.success(),
        "status failed: {}",
        stderr(&output)
    );
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).expect("status JSON");
    u32::try_from(status["pid"].as_u64().expect("pid")).expect("pid fits")
}

#[test]
fn ten_concurrent_clients_start_exactly_one_daemon() {
    let env = TestEnv::new();
    let children: Vec<_> = (0..10)
        .map(|_| {
            env.banger()
                .args(["daemon", "status", "--json"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn banger")
        })
        .collect();
    let mut pids = std::collections::BTreeSet::new();
    for child in children {
        let output = child.wait_with_output().expect("wait");
        assert!(
            output.status.success(),
            "a client failed: {}",
            stderr(&output)
        );
        let status: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
        pids.insert(status["pid"].as_u64().expect("pid"));
    }
    assert_eq!(pids.len(), 1, "all clients talk to one daemon: {pids:?}");
    let running = env.daemon_pids();
    assert_eq!(running.len(), 1, "exactly one bangerd process: {running:?}");
    let pid = pids.into_iter().next().expect("one pid");
    assert_eq!(running.into_iter().next().map(|p| p as u64), Some(pid));
}

#[test]
fn stale_socket_from_a_dead_daemon_is_replaced() {
    let env = TestEnv::new();
    env.paths().prepare_runtime_dir().expect("runtime dir");
    // A listener that dies without removing its file: what a SIGKILLed daemon leaves.
    drop(UnixListener::bind(env.paths().socket()).expect("bind"));
    assert!(env.paths().socket().exists());
    let pid = status_pid(&env);
    assert!(env.daemon_pids().contains(&(pid as i32)));
}

#[test]
fn a_live_daemon_is_never_stolen() {
    let env = TestEnv::new();
    let pid = status_pid(&env);
    let output = run(&mut env.bangerd());
    assert!(
        !output.status.success(),
        "a second daemon must refuse to start"
    );
    let message = stderr(&output);
    assert!(
        message.contains(&format!("already running (pid {pid})")),
        "{message}"
    );
    assert_eq!(status_pid(&env), pid, "the first daemon still serves");
    assert_eq!(env.daemon_pids().len(), 1);
}

/// Kills a daemon that [`TestEnv`] cannot find (it serves another runtime
/// dir) if the test ends before stopping it.
struct KillOnDrop(Option<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = rustix::process::kill_process(rustix_pid(pid), rustix::process::Signal::KILL);
        }
    }
}

#[test]
fn second_daemon_on_the_same_state_dir_refuses_and_names_the_owner() {
    let env = TestEnv::new();
    let first = status_pid(&env);
    let other_runtime = env.root().join("run2");
    let state_dir = env.paths().state_dir.display().to_string();
    let expected = [
        format!("the state directory {state_dir} is in use by bangerd pid {first}"),
        format!("runtime dir {}", env.paths().runtime_dir.display()),
    ];

    // By hand: a daemon with another runtime dir refuses at once.
    let output = run(env.bangerd().env("BANGER_RUNTIME_DIR", &other_runtime));
    assert!(!output.status.success(), "a second daemon must refuse");
    let message = stderr(&output);
    for part in &expected {
        assert!(message.contains(part), "{part:?} missing: {message}");
    }
    // Through the CLI's auto-start: the daemon's refusal is what it reports.
    let output = run(env
        .banger()
        .env("BANGER_RUNTIME_DIR", &other_runtime)
        .args(["daemon", "status"]));
    assert!(!output.status.success(), "auto-start must fail");
    let message = stderr(&output);
    for part in &expected {
        assert!(message.contains(part), "{part:?} missing: {message}");
    }
    assert!(
        !other_runtime.join("bangerd.sock").exists(),
        "the refused daemon never bound a socket"
    );

    // The first daemon is untouched and still serves.
    assert_eq!(status_pid(&env), first);
    assert_eq!(env.daemon_pids().len(), 1);

    // Once it stops, a daemon with the other runtime dir starts.
    assert!(run(env.banger().args(["daemon", "stop"])).status.success());
    let output = run(env
        .banger()
        .env("BANGER_RUNTIME_DIR", &other_runtime)
        .args(["daemon", "status", "--json"]));
    assert!(output.status.success(), "{}", stderr(&output));
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).expect("status JSON");
    let second = u32::try_from(status["pid"].as_u64().expect("pid")).expect("pid fits");
    let mut guard = KillOnDrop(Some(second));
    assert_ne!(second, first);
    let output = run(env
        .banger()
        .env("BANGER_RUNTIME_DIR", &other_runtime)
        .args(["daemon", "stop"]));
    assert!(output.status.success(), "{}", stderr(&output));
    guard.0 = None;
}

#[test]
fn killed_daemon_is_replaced_on_next_use() {
    let env = TestEnv::new();
    let first = status_pid(&env);
    let pid = rustix_pid(first);
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).expect("kill");
    assert!(env.wait_for_no_daemon(Duration::from_secs(5)));
    assert!(
        env.paths().socket().exists(),
        "SIGKILL leaves the socket file behind"
    );
    let second = status_pid(&env);
    assert_ne!(first, second);
}

fn rustix_pid(pid: u32) -> rustix::process::Pid {
    rustix::process::Pid::from_raw(i32::try_from(pid).expect("pid")).expect("non-zero pid")
}

#[test]
fn stop_is_graceful_and_cleans_up() {
    let env = TestEnv::new();
    status_pid(&env);
    let output = run(env.banger().args(["daemon", "stop"]));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("stopped"), "{}", stderr(&output));
    assert!(env.daemon_pids().is_empty());
    assert!(
        !env.paths().socket().exists(),
        "socket removed on graceful stop"
    );
    let log = fs_err::read_to_string(env.paths().log_file()).expect("log");
    for line in log.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|error| panic!("non-JSON log line {line:?}: {error}"));
    }
    assert!(log.contains("bangerd stopped"), "{log}");
    // Stopping again is not an error.
    let output = run(env.banger().args(["daemon", "stop"]));
    assert!(output.status.success());
    assert!(stderr(&output).contains("not running"));
}

#[test]
fn socket_command_prints_the_path_without_starting_anything() {
    let env = TestEnv::new();
    let output = run(env.banger().args(["daemon", "socket"]));
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        env.paths().socket().display().to_string()
    );
    assert!(env.daemon_pids().is_empty());
}

#[test]
fn check_reports_a_healthy_database() {
    let env = TestEnv::new();
    let output = run(env.banger().args(["daemon", "check", "--json"]));
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(report["ok"], true);
}

#[test]
fn bad_config_stops_the_daemon_from_starting_with_a_clear_error() {
    let env = TestEnv::new();
    env.write_config("vmm = \"kvm\"\n");
    let output = run(env.banger().args(["daemon", "status"]));
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains("key `vmm` is \"kvm\"; expected one of auto, firecracker, qemu"),
        "{message}"
    );
    assert!(message.contains("config.toml"), "{message}");
    assert!(env.daemon_pids().is_empty());
}

#[test]
fn missing_daemon_binary_names_the_fix() {
    let env = TestEnv::new();
    let output = run(env
        .banger()
        .env("BANGER_DAEMON_BIN", "/nonexistent/bangerd")
        .args(["daemon", "status"]));
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("/nonexistent/bangerd"), "{message}");
    assert!(message.contains("BANGER_DAEMON_BIN"), "{message}");
}

#[test]
fn database_from_a_newer_banger_is_refused_at_start() {
    let env = TestEnv::new();
    status_pid(&env);
    assert!(run(env.banger().args(["daemon", "stop"])).status.success());
    let sqlite = Command::new("sqlite3")
        .arg(env.paths().database())
        .arg("PRAGMA user_version = 999;")
        .status();
    match sqlite {
        Ok(status) if status.success() => {}
        _ => panic!("sqlite3 is needed for this test (apt-get install sqlite3)"),
    }
    let output = run(env.banger().args(["daemon", "status"]));
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("schema version 999"), "{message}");
    assert!(message.contains("upgrade banger"), "{message}");
}

#[test]
fn truncated_database_with_a_vm_directory_is_refused_at_start_and_kept() {
    let env = TestEnv::new();
    status_pid(&env);
    assert!(run(env.banger().args(["daemon", "stop"])).status.success());
    let database = env.paths().database();
    let bytes = fs_err::read(&database).expect("read the database");
    assert!(bytes.len() > 4096, "{} bytes", bytes.len());
    for suffix in ["-wal", "-shm"] {
        let mut side = database.clone().into_os_string();
        side.push(suffix);
        let _ = fs_err::remove_file(std::path::PathBuf::from(side));
    }
    fs_err::write(&database, &bytes[..4096]).expect("truncate");
    fs_err::create_dir_all(env.paths().state_dir.join("vms/alpha")).expect("VM dir");
    let output = run(env.banger().args(["daemon", "status"]));
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains(&database.display().to_string()),
        "{message}"
    );
    assert!(message.contains("is truncated"), "{message}");
    assert!(message.contains("1 VM directory"), "{message}");
    assert!(
        message.contains("move it away to start with an empty database"),
        "{message}"
    );
    assert!(
        fs_err::read(&database).expect("the database is kept") == bytes[..4096],
        "the database was changed"
    );
    assert!(env.daemon_pids().is_empty());
}
