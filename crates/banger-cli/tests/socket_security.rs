//! The API socket is private: 0600 in a 0700 directory, and a process of
//! another uid is refused even when it can get past file permissions.
//!
//! Needs root (to create the second user and switch to it). When not run as
//! root the test fails with an explanation instead of silently passing.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use banger_testkit::{TestEnv, workspace_binary};

const OTHER_USER: &str = "banger-test-other";

fn ensure_other_user() -> u32 {
    let lookup = || {
        Command::new("id")
            .args(["-u", OTHER_USER])
            .output()
            .expect("id runs")
    };
    let mut output = lookup();
    if !output.status.success() {
        let created = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                OTHER_USER,
            ])
            .status()
            .expect("useradd runs");
        // Another test process may have created it concurrently.
        output = lookup();
        assert!(
            output.status.success(),
            "cannot create user {OTHER_USER} (useradd: {created})"
        );
    }
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("numeric uid")
}

#[test]
fn other_uid_is_refused_by_permissions_and_by_peer_credentials() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test must run as root to create a second user; run the test suite as root (CI does)"
    );
    let other_uid = ensure_other_user();
    let env = TestEnv::new();
    let output = env
        .banger()
        .args(["daemon", "start"])
        .stdin(Stdio::null())
        .output()
        .expect("start");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let mode =
        |path: &std::path::Path| fs_err::metadata(path).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&env.paths().runtime_dir), 0o700, "runtime dir");
    assert_eq!(mode(&env.paths().socket()), 0o600, "socket");

    // A copy of the CLI the other user can execute.
    let tools = tempfile::Builder::new()
        .prefix("bgt-bin")
        .tempdir_in("/tmp")
        .expect("tempdir");
    fs_err::set_permissions(tools.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod dir");
    let banger = tools.path().join("banger");
    banger_testkit::install_executable(&workspace_binary("banger"), &banger);

    let as_other = |extra_caps: bool| {
        let mut command = env.command("setpriv");
        command.args([
            format!("--reuid={other_uid}"),
            format!("--regid={other_uid}"),
            "--clear-groups".to_owned(),
        ]);
        if extra_caps {
            // Lets the process through the 0700/0600 permissions, so only
            // the daemon's SO_PEERCRED check stands in its way.
            command.args(["--inh-caps=+dac_override", "--ambient-caps=+dac_override"]);
        }
        command
            .arg(&banger)
            .args(["daemon", "status"])
            .env("BANGER_DAEMON_BIN", "/nonexistent");
        command.stdin(Stdio::null()).output().expect("setpriv runs")
    };

    let plain = as_other(false);
    assert!(
        !plain.status.success(),
        "other user must not reach the socket"
    );
    let message = String::from_utf8_lossy(&plain.stderr);
    assert!(
        message.contains("Permission denied"),
        "file permissions stop it: {message}"
    );

    let privileged = as_other(true);
    assert!(
        !privileged.status.success(),
        "other uid must be refused by the daemon"
    );
    let message = String::from_utf8_lossy(&privileged.stderr);
    assert!(
        message.contains(&format!("connections from uid {other_uid} are refused")),
        "the daemon's peer check refuses it: {message}"
    );
    assert_eq!(env.daemon_pids().len(), 1, "the daemon keeps running");
}
