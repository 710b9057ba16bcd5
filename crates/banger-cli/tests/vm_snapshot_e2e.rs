//! Pause and resume end to end on one shared VM (boots are slow under TCG):
//! a process started before the pause and a file in /tmp (tmpfs: only the
//! saved memory has it) are there after the resume; the guest clock is set
//! from the host at once (within 1 s after a pause of a few seconds: the
//! mechanism is the same for 60 s, the agent sets the clock on every resume
//! whatever the pause lasted); the memory is owner-only and counted in `vm
//! show`; pause/resume refuse the wrong state; a VM paused before a daemon
//! restart is resumed by `vm start` of the new daemon; `vm stop` of a paused
//! VM discards its memory and says so; a fork has the source's memory and
//! its own address, MAC, CID, hostname, host key and machine id while the
//! source runs on; a snapshot with memory restored after changes brings the
//! files and the processes back, and restore refuses a running VM. Real
//! bangerd, real Debian guest under QEMU, inside a network namespace the
//! test creates; `BANGER_VMM=firecracker` on a KVM host drives
//! Firecracker's snapshot API instead.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::vm_suite::Suite;

fn host_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

/// Guest clock minus host clock, in seconds (the ssh round trip counted
/// against the guest: the host time is taken on both sides of it).
fn clock_skew(suite: &Suite, vm: &str) -> f64 {
    let before = host_now();
    let guest: f64 = suite
        .ssh(vm, "date +%s.%N")
        .trim()
        .parse()
        .expect("guest date");
    let after = host_now();
    if guest < before {
        guest - before
    } else if guest > after {
        guest - after
    } else {
        0.0
    }
}

fn memory_dir(vm: &serde_json::Value) -> std::path::PathBuf {
    std::path::Path::new(vm["dir"].as_str().expect("dir")).join("memory")
}

#[test]
fn pause_and_resume_end_to_end() {
    let suite = Suite::bare("snap");
    suite.create_in_host_namespace("parked");
    suite.ok(&["vm", "start", "parked"]);

    // An unknown VM is refused; resuming a running VM changes nothing.
    let refused = suite.run(&["vm", "pause", "nosuch"]);
    assert!(!refused.status.success());
    suite.ok(&["vm", "resume", "parked"]);

    let pid = suite
        .ssh("parked", "sleep 1000 >/dev/null 2>&1 & echo $!")
        .trim()
        .to_owned();
    suite.ssh("parked", "echo only-in-memory > /tmp/marker");

    let paused = suite.ok(&["vm", "pause", "parked"]);
    let vm = suite.json(&["vm", "show", "parked", "--json"]);
    assert_eq!(vm["state"], "paused", "{paused}{vm}");
    assert!(vm["pid"].is_null(), "{vm}");
    let saved = vm["saved_memory_bytes"].as_u64().expect("saved bytes");
    assert!(saved > 1 << 20, "{vm}");
    let memory = memory_dir(&vm);
    assert_eq!(
        fs_err::metadata(&memory)
            .expect("memory dir")
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    for entry in fs_err::read_dir(&memory).expect("list") {
        let entry = entry.expect("entry");
        let mode = entry.metadata().expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", entry.path().display());
    }
    // Paused: no TAP recorded, no VMM; a second pause changes nothing.
    assert!(vm["tap"].is_null(), "{vm}");
    suite.ok(&["vm", "pause", "parked"]);

    std::thread::sleep(Duration::from_secs(5));
    let resumed = std::time::Instant::now();
    suite.ok(&["vm", "resume", "parked"]);
    eprintln!("resume -> SSH took {:?}", resumed.elapsed());
    let skew = clock_skew(&suite, "parked");
    assert!(
        skew.abs() < 1.0,
        "guest clock off by {skew} s after the resume"
    );
    assert_eq!(
        suite
            .ssh("parked", &format!("kill -0 {pid} && cat /tmp/marker"))
            .trim(),
        "only-in-memory"
    );
    assert!(!memory.exists(), "the memory is removed once resumed");
    let vm = suite.json(&["vm", "show", "parked", "--json"]);
    assert_eq!(vm["state"], "running");
    assert!(vm["saved_memory_bytes"].is_null(), "{vm}");
    // The agent answers again over the new vsock device.
    let stats = suite.json(&["vm", "stats", "parked", "--json"]);
    assert!(stats["guest"].is_object(), "{stats}");

    // Paused, then the daemon goes away; the next daemon's `vm start`
    // resumes it.
    suite.ok(&["vm", "pause", "parked"]);
    suite.ok(&["daemon", "stop"]);
    suite.ok(&["vm", "start", "parked"]);
    assert_eq!(
        suite
            .ssh("parked", &format!("kill -0 {pid} && cat /tmp/marker"))
            .trim(),
        "only-in-memory"
    );
    let skew = clock_skew(&suite, "parked");
    assert!(
        skew.abs() < 1.0,
        "guest clock off by {skew} s after the restart"
    );

    // Fork: the copy has the source's memory (the process, the file in
    // /tmp) and its own identity; the source keeps running as it was.
    let source = suite.json(&["vm", "show", "parked", "--json"]);
    let source_machine_id = suite.ssh("parked", "cat /etc/machine-id");
    let forked = std::time::Instant::now();
    let twins = suite.json(&["vm", "fork", "parked", "--name", "twin", "--json"]);
    eprintln!("fork -> SSH took {:?}", forked.elapsed());
    let twin = &twins[0];
    assert_eq!(twin["name"], "twin", "{twins}");
    assert_eq!(twin["state"], "running", "{twins}");
    assert_ne!(twin["ip"], source["ip"]);
    assert_ne!(twin["mac"], source["mac"]);
    assert_ne!(twin["vsock_cid"], source["vsock_cid"]);
    assert_eq!(
        suite
            .ssh("twin", &format!("kill -0 {pid} && cat /tmp/marker"))
            .trim(),
        "only-in-memory"
    );
    // `vm ssh` checks the host key against known_hosts: the fork answers
    // with its own key, the one in its directory.
    let twin_key = suite.ssh("twin", "cat /etc/ssh/ssh_host_ed25519_key.pub");
    let recorded = fs_err::read_to_string(
        std::path::Path::new(twin["dir"].as_str().expect("dir")).join("ssh_host_ed25519_key.pub"),
    )
    .expect("the fork's host key");
    let key_of = |line: &str| {
        line.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(key_of(&twin_key), key_of(&recorded));
    assert_eq!(suite.ssh("twin", "hostname").trim(), "twin");
    let addresses = suite.ssh("twin", "hostname -I");
    assert!(
        addresses
            .split_whitespace()
            .any(|address| Some(address) == twin["ip"].as_str()),
        "{addresses} {twin}"
    );
    assert!(
        !addresses
            .split_whitespace()
            .any(|address| Some(address) == source["ip"].as_str()),
        "{addresses}"
    );
    assert_ne!(suite.ssh("twin", "cat /etc/machine-id"), source_machine_id);
    let stats = suite.json(&["vm", "stats", "twin", "--json"]);
    assert!(
        stats["guest"].is_object(),
        "the fork's agent answers: {stats}"
    );
    assert_eq!(suite.ssh("parked", "hostname").trim(), "parked");
    assert_eq!(
        suite
            .ssh("parked", &format!("kill -0 {pid} && cat /tmp/marker"))
            .trim(),
        "only-in-memory"
    );
    let taken = suite.run(&["vm", "fork", "parked", "--name", "twin"]);
    assert!(!taken.status.success());
    assert!(
        String::from_utf8_lossy(&taken.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&taken.stderr)
    );
    suite.ok(&["vm", "delete", "--force", "twin"]);

    // A snapshot with memory, changes after it, then a restore brings the
    // files and the memory back.
    suite.ssh("parked", "echo before > /root/state-file && sync");
    let taken = suite.json(&[
        "vm", "snapshot", "create", "parked", "--name", "s1", "--json",
    ]);
    assert_eq!(taken["memory"], true, "{taken}");
    assert_eq!(
        suite.json(&["vm", "show", "parked", "--json"])["state"],
        "running"
    );
    suite.ssh(
        "parked",
        "echo after > /root/state-file && rm /tmp/marker && sync",
    );
    let refused = suite.run(&["vm", "snapshot", "restore", "parked", "s1"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("stop it first"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    suite.ok(&["vm", "stop", "parked"]);
    suite.ok(&["vm", "snapshot", "restore", "parked", "s1"]);
    assert_eq!(
        suite
            .ssh(
                "parked",
                &format!("kill -0 {pid} && cat /root/state-file /tmp/marker")
            )
            .trim(),
        "before\nonly-in-memory"
    );
    let listed = suite.json(&["vm", "snapshot", "list", "parked", "--json"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let missing = suite.run(&["vm", "snapshot", "restore", "parked", "nosuch"]);
    assert!(!missing.status.success());
    suite.ok(&["vm", "snapshot", "delete", "parked", "s1"]);

    // auto_resume (the default): using a paused VM resumes it first.
    suite.ok(&["vm", "pause", "parked"]);
    let woken = suite.run(&["vm", "ssh", "parked", "--", "cat /tmp/marker"]);
    assert!(woken.status.success(), "{woken:?}");
    assert_eq!(
        String::from_utf8_lossy(&woken.stdout).trim(),
        "only-in-memory"
    );
    assert!(
        String::from_utf8_lossy(&woken.stderr).contains("resuming it first"),
        "{woken:?}"
    );
    suite.ok(&["vm", "pause", "parked"]);
    let ports = suite.json(&["vm", "ports", "parked", "--json"]);
    assert!(ports.to_string().contains("22"), "{ports}");
    assert_eq!(
        suite.json(&["vm", "show", "parked", "--json"])["state"],
        "running"
    );

    // vm stop of a paused VM discards the memory and says so.
    suite.ok(&["vm", "pause", "parked"]);
    let stopped = suite.run(&["vm", "stop", "parked"]);
    assert!(stopped.status.success());
    let said = String::from_utf8_lossy(&stopped.stderr);
    assert!(said.contains("discarded"), "{said}");
    let vm = suite.json(&["vm", "show", "parked", "--json"]);
    assert_eq!(vm["state"], "stopped");
    assert!(!memory.exists());
    let refused = suite.run(&["vm", "resume", "parked"]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("only a paused VM"), "{said}");
    let refused = suite.run(&["vm", "pause", "parked"]);
    assert!(!refused.status.success());

    suite.ok(&["vm", "delete", "parked"]);
}
