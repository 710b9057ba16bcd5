//! A real guest's VM processes hurt from outside (docs/reliability.md,
//! "Fault matrix: VMM, helpers, disk, PIDs"), on one VM of the bare image
//! under QEMU (boots are slow under TCG: one create, one restart):
//!
//! - `vhost-device-vsock` SIGKILLed: `vm show` says `unhealthy:` within
//!   seconds (or, if QEMU ends with its vsock backend, `stopped` with the
//!   exit), the guest runs on (SSH goes over the network, not vsock), the
//!   guest agent is reported not answering, and `vm restart` brings a new
//!   helper: healthy, agent answering;
//! - QEMU SIGSTOPped: `unhealthy:` within seconds, SIGCONT clears it, and a
//!   `vm stop` of a frozen QEMU continues it and shuts the guest down
//!   cleanly, long before the 60 s stop timeout;
//! - `vm delete` works afterwards.
//!
//! Real bangerd, inside a network namespace the test creates.

mod common;

use std::time::{Duration, Instant};

use common::vm_suite::Suite;

/// What "within seconds" means (health is looked at every second).
const NOTICED_WITHIN: Duration = Duration::from_secs(5);

fn show(suite: &Suite, vm: &str) -> serde_json::Value {
    suite.json(&["vm", "show", vm, "--json"])
}

/// The processes whose command line mentions `needle` and whose command
/// name starts with `comm` (it is cut at 15 characters).
fn pids(comm: &str, needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for pid in banger_host::process::all_pids() {
        let name = fs_err::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let cmdline = fs_err::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if name.trim_end().starts_with(comm) && String::from_utf8_lossy(&cmdline).contains(needle) {
            found.push(pid);
        }
    }
    found
}

fn signal(pid: u32, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid).expect("pid")).expect("pid");
    rustix::process::kill_process(pid, signal).expect("signal");
}

/// Waits until `check` holds for the VM's record; returns it and the wait.
fn wait_for(
    suite: &Suite,
    vm: &str,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> (serde_json::Value, Duration) {
    let started = Instant::now();
    loop {
        let shown = show(suite, vm);
        if check(&shown) {
            return (shown, started.elapsed());
        }
        assert!(
            started.elapsed() < NOTICED_WITHIN,
            "{vm}: not {what} after {NOTICED_WITHIN:?}: {shown}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn reason(shown: &serde_json::Value) -> String {
    shown["last_error"].as_str().unwrap_or_default().to_owned()
}

/// The `banger doctor --json` guest-agent check of `vm`.
fn agent_check(suite: &Suite, vm: &str) -> serde_json::Value {
    let output = suite.run(&["doctor", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("doctor --json");
    let checks = report["checks"].as_array().cloned().unwrap_or_default();
    checks
        .into_iter()
        .find(|check| {
            check["name"] == "guest-agent"
                && check["detail"]
                    .as_str()
                    .is_some_and(|detail| detail.contains(&format!("VM {vm}")))
        })
        .unwrap_or_else(|| panic!("no guest-agent check of {vm}: {report}"))
}

#[test]
fn vsock_helper_and_vmm_faults_on_a_real_guest() {
    let suite = Suite::bare("fvmm");
    let started = Instant::now();
    // The image is built (or found) in the host namespace, which has the
    // Debian mirror; the VM then starts inside the test's namespace.
    suite.create_in_host_namespace("fv");
    suite.ok(&["vm", "start", "fv"]);
    println!("created in {:?}", started.elapsed());
    let shown = show(&suite, "fv");
    assert_eq!(shown["state"], "running", "{shown}");
    if shown["backend"] != "qemu" {
        // Firecracker has no vsock helper; the fakes cover its VMM faults.
        banger_testkit::skip_or_fail("the vsock helper is QEMU's");
        suite.ok(&["vm", "delete", "--force", "fv"]);
        return;
    }
    // Its runtime dir, named in the helper's command line.
    let run_dir = format!("{}/vms/fv/", suite.env.paths().runtime_dir.display());
    assert_eq!(agent_check(&suite, "fv")["status"], "pass");

    // vhost-device-vsock dies.
    let helpers = pids("vhost-device-vs", &run_dir);
    assert_eq!(helpers.len(), 1, "one vsock helper of fv: {helpers:?}");
    signal(helpers[0], rustix::process::Signal::KILL);
    let (shown, took) = wait_for(&suite, "fv", "told of the helper's death", |shown| {
        reason(shown).starts_with("unhealthy:") || shown["state"] == "stopped"
    });
    println!("helper death shown after {took:?}: {}", reason(&shown));
    if shown["state"] == "running" {
        let text = reason(&shown);
        assert!(text.contains("vhost-device-vsock"), "{text}");
        assert!(text.contains("banger vm restart fv"), "{text}");
        // The guest runs on: SSH does not use vsock.
        assert_eq!(suite.ssh("fv", "echo alive").trim(), "alive");
        let check = agent_check(&suite, "fv");
        assert_eq!(check["status"], "warn", "{check}");
        suite.ok(&["vm", "restart", "fv"]);
    } else {
        println!("QEMU ended with its vsock backend: {shown}");
        suite.ok(&["vm", "start", "fv"]);
    }
    let shown = show(&suite, "fv");
    assert_eq!(shown["state"], "running", "{shown}");
    assert!(shown["last_error"].is_null(), "{shown}");
    assert_eq!(pids("vhost-device-vs", &run_dir).len(), 1, "a new helper");
    assert_eq!(agent_check(&suite, "fv")["status"], "pass");

    // QEMU is SIGSTOPped, then continued, then stopped again and `vm stop`ped.
    let qemu = shown["pid"]
        .as_u64()
        .and_then(|pid| u32::try_from(pid).ok());
    let qemu = qemu.expect("the VMM pid");
    signal(qemu, rustix::process::Signal::STOP);
    let (shown, took) = wait_for(&suite, "fv", "told it is frozen", |shown| {
        reason(shown).contains("is stopped (SIGSTOP")
    });
    println!("SIGSTOP shown after {took:?}");
    assert_eq!(shown["state"], "running", "{shown}");
    signal(qemu, rustix::process::Signal::CONT);
    wait_for(&suite, "fv", "healthy again", |shown| {
        shown["last_error"].is_null()
    });
    assert_eq!(suite.ssh("fv", "echo thawed").trim(), "thawed");
    signal(qemu, rustix::process::Signal::STOP);
    wait_for(&suite, "fv", "told it is frozen", |shown| {
        reason(shown).contains("is stopped")
    });
    let stopping = Instant::now();
    suite.ok(&["vm", "stop", "fv"]);
    let took = stopping.elapsed();
    println!("stop of a frozen QEMU took {took:?}");
    assert!(
        took < Duration::from_secs(50),
        "killed at the timeout: {took:?}"
    );
    let shown = show(&suite, "fv");
    assert_eq!(shown["state"], "stopped", "{shown}");
    suite.ok(&["vm", "delete", "fv"]);
    println!("whole test {:?}", started.elapsed());
}
