//! The daemon SIGKILLed at each step of `vm create` (docs/reliability.md,
//! "Fault matrix: the daemon"): a real `bangerd` started with
//! `BANGER_FAULT=<point>` kills itself at that step (a hook that exists
//! only in debug builds, `bangerd::fault`), the create dies with it, and a
//! daemon started again without the fault must leave every VM running
//! (adopted), stopped, or in error with a reason, or remove a create that
//! never finished; nothing may leak (TAPs, nftables rules, files under the
//! state and runtime dirs, rows, VMM/helper processes), and a create of
//! the same name again works or says exactly why not.
//!
//! Then a host reboot is simulated: with a VM running, everything is
//! SIGKILLed (daemon, VMM, helpers), the bridge, TAPs and nftables rules
//! are deleted, and a new daemon must show the VM stopped; `vm start`
//! rebuilds the bridge, the VM's TAP and its rules and runs its VMM again.
//!
//! No guest needs to boot: the image is two empty ext4 files, so QEMU
//! (TCG) runs a kernel that never reaches SSH, which is all the kill
//! points before SSH need. Everything runs in a network namespace the test
//! creates; the daemon's TAP pool is 0 so every TAP belongs to a VM.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::vm_suite::Suite;

/// The fault points of `bangerd::fault::POINTS`, in the order a create
/// reaches them, each with the VM name its case uses.
const POINTS: &[(&str, &str)] = &[
    ("create.after_row", "f-row"),
    ("create.after_disks", "f-disks"),
    ("boot.after_tap", "f-tap"),
    ("boot.after_vmm_spawn", "f-spawn"),
    ("boot.before_ssh", "f-ssh"),
];

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Every VM as `vm list --json` shows it, by name.
fn vms(suite: &Suite) -> Vec<serde_json::Value> {
    suite
        .json(&["vm", "list", "--json"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Pids of processes whose command line names a path inside `dir/`.
fn processes_naming(dir: &Path) -> Vec<u32> {
    let mut prefix = dir.as_os_str().as_encoded_bytes().to_vec();
    prefix.push(b'/');
    let mut found = Vec::new();
    for pid in banger_host::process::all_pids() {
        let Ok(cmdline) = fs_err::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        // Zombies keep no command line; only live processes count.
        if cmdline
            .windows(prefix.len())
            .any(|window| window == prefix.as_slice())
        {
            found.push(pid);
        }
    }
    found
}

/// The daemon's nftables rules in the namespace (empty when it has none).
fn nft_rules(suite: &Suite) -> String {
    let output = suite
        .netns
        .wrap(Command::new("nft").args(["list", "ruleset"]))
        .output()
        .expect("nft runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Checks what a daemon restart must leave: every VM running, stopped or
/// in error with a reason; TAPs, rules, files and processes only for what
/// the records say exists.
fn assert_nothing_leaked(suite: &Suite, context: &str) {
    let vms = vms(suite);
    let paths = suite.env.paths();
    let mut names = BTreeSet::new();
    let mut running_taps = BTreeSet::new();
    for vm in &vms {
        let name = vm["name"].as_str().expect("name").to_owned();
        let state = vm["state"].as_str().expect("state");
        match state {
            "running" => {
                if let Some(tap) = vm["tap"].as_str() {
                    running_taps.insert(tap.to_owned());
                }
            }
            "stopped" | "created" => {}
            "error" => assert!(
                vm["last_error"]
                    .as_str()
                    .is_some_and(|reason| !reason.is_empty()),
                "{context}: VM {name} is in error without a reason: {vm}"
            ),
            other => panic!("{context}: VM {name} is {other} after a restart: {vm}"),
        }
        if state != "running" {
            let leftovers = processes_naming(&paths.runtime_dir.join("vms").join(&name));
            assert!(
                leftovers.is_empty(),
                "{context}: VM {name} is {state} but processes {leftovers:?} still use its runtime dir"
            );
            assert!(
                !paths.runtime_dir.join("vms").join(&name).exists(),
                "{context}: VM {name} is {state} but its runtime dir is left"
            );
        }
        names.insert(name);
    }
    // Directories: exactly the VMs' own.
    let dirs: BTreeSet<String> = fs_err::read_dir(paths.state_dir.join("vms"))
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(dirs, names, "{context}: VM directories and VM rows differ");
    let run_dirs: BTreeSet<String> = fs_err::read_dir(paths.runtime_dir.join("vms"))
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        run_dirs.is_subset(&names),
        "{context}: runtime dirs {run_dirs:?} of VMs that do not exist ({names:?})"
    );
    // No marker of an unfinished create outlives the restart.
    for name in &names {
        assert!(
            !paths
                .state_dir
                .join("vms")
                .join(name)
                .join(".banger-creating")
                .exists(),
            "{context}: VM {name} still has its create-in-progress marker"
        );
    }
    // TAPs (the pool is 0): exactly the running VMs'.
    let taps: BTreeSet<String> = suite.taps().into_iter().collect();
    assert_eq!(
        taps, running_taps,
        "{context}: TAPs in the namespace are not those of running VMs"
    );
    // Rules name no TAP that is not a running VM's.
    let rules = nft_rules(suite);
    for word in rules.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')) {
        // `bgtap*` (any TAP) is the anti-spoofing rule's wildcard.
        if word.starts_with("bgtap") && word != "bgtap" {
            assert!(
                running_taps.contains(word),
                "{context}: nftables still names TAP {word}:\n{rules}"
            );
        }
    }
}

#[test]
fn daemon_killed_at_each_step_of_create_then_a_host_reboot_leave_nothing_behind() {
    let mut suite = Suite::new("flt");
    suite.vars.push(("BANGER_VMM".into(), "qemu".into()));
    suite.vars.push(("BANGER_TAP_POOL_SIZE".into(), "0".into()));
    suite.ok(&["kernel", "pull", "debian-cloud-amd64"]);
    let rootfs = suite.env.root().join("root.ext4");
    let seed = suite.env.root().join("seed.ext4");
    banger_testkit::mkfs_ext4(&rootfs, "64M");
    banger_testkit::mkfs_ext4(&seed, "64M");
    suite.ok(&[
        "image",
        "register",
        "--name",
        "tiny",
        "--rootfs",
        rootfs.to_str().expect("utf-8"),
        "--work-seed",
        seed.to_str().expect("utf-8"),
    ]);

    for (point, name) in POINTS {
        let started = Instant::now();
        // A daemon of its own, with the fault set.
        suite.ok(&["daemon", "stop"]);
        let mut create = suite.banger(&["vm", "create", "--name", name, "--image", "tiny"]);
        create.env("BANGER_FAULT", point);
        let crashed = create.output().expect("banger runs");
        assert!(
            !crashed.status.success(),
            "{point}: the create succeeded although its daemon was to die"
        );
        assert!(
            suite.env.wait_for_no_daemon(Duration::from_secs(10)),
            "{point}: the daemon did not die at its fault point ({})",
            stderr(&crashed)
        );
        // A daemon without the fault starts and reconciles.
        let context = format!("after a kill at {point}");
        assert_nothing_leaked(&suite, &context);
        let after: Vec<serde_json::Value> = vms(&suite)
            .into_iter()
            .filter(|vm| vm["name"] == *name)
            .collect();
        // A VM that does not run has no process left (a VMM spawned but not
        // recorded included), whether it was kept or removed.
        if after.first().is_none_or(|vm| vm["state"] != "running") {
            let paths = suite.env.paths();
            for dir in [
                paths.runtime_dir.join("vms").join(name),
                paths.state_dir.join("vms").join(name),
            ] {
                let leftovers = processes_naming(&dir);
                assert!(
                    leftovers.is_empty(),
                    "{point}: {name} does not run, yet processes {leftovers:?} name {}",
                    dir.display()
                );
            }
        }
        // The same name again: works, or says why not.
        let again = suite.run(&[
            "vm",
            "create",
            "--name",
            name,
            "--image",
            "tiny",
            "--no-start",
        ]);
        match after.first() {
            None => assert!(
                again.status.success(),
                "{point}: the interrupted create was removed, yet {name} cannot be created again: {}",
                stderr(&again)
            ),
            Some(vm) => {
                assert!(
                    !again.status.success(),
                    "{point}: a second {name} was created"
                );
                let message = stderr(&again);
                assert!(
                    message.contains(&format!("a VM named {name} already exists")),
                    "{point}: unclear refusal: {message}"
                );
                println!("{point}: VM {name} kept as {}", vm["state"]);
            }
        }
        suite.ok(&["vm", "delete", "--force", name]);
        assert_nothing_leaked(&suite, &format!("{context} and a delete"));
        assert!(
            processes_naming(&suite.env.paths().state_dir.join("vms").join(name)).is_empty(),
            "{point}: processes of {name} outlived its delete"
        );
        println!(
            "{point}: {} after the restart, checked in {:.1} s",
            after
                .first()
                .map_or("removed".to_owned(), |vm| vm["state"].to_string()),
            started.elapsed().as_secs_f64()
        );
    }
    println!("{}", start_killed_after_its_vmm_spawn_keeps_the_vm(&suite));
    println!("{}", host_reboot_is_survived(&suite));
}

/// Starts `banger args` in the background (a create or start that waits
/// for an SSH that never answers here).
fn spawn(suite: &Suite, args: &[&str]) -> Child {
    suite
        .banger(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("banger runs")
}

/// Waits until VM `name` is `running` (its VMM recorded) and returns its
/// `vm show` JSON.
fn wait_running(suite: &Suite, name: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let shown = suite.run(&["vm", "show", name, "--json"]);
        if shown.status.success() {
            let vm: serde_json::Value = serde_json::from_slice(&shown.stdout).expect("VM JSON");
            if vm["state"] == "running" {
                return vm;
            }
        }
        assert!(
            Instant::now() < deadline,
            "VM {name} did not become running: {}",
            String::from_utf8_lossy(&shown.stdout)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// SIGKILLs each of `pids` (processes this test's banger started).
fn kill_pids(pids: impl IntoIterator<Item = u32>) {
    for pid in pids {
        if let Some(pid) = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

/// The namespace's links, one name per entry.
fn links(suite: &Suite) -> BTreeSet<String> {
    suite
        .in_netns("ip", &["-br", "link"])
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(|name| name.split('@').next().unwrap_or(name).to_owned())
        .collect()
}

/// A `vm start` (not a create) whose daemon dies right after spawning the
/// VMM: the VM is kept, `stopped` with why, its unrecorded VMM and helpers
/// are killed, and it starts again. Returns what it measured.
fn start_killed_after_its_vmm_spawn_keeps_the_vm(suite: &Suite) -> String {
    let started = Instant::now();
    let name = "f-start";
    suite.ok(&[
        "vm",
        "create",
        "--name",
        name,
        "--image",
        "tiny",
        "--no-start",
    ]);
    suite.ok(&["daemon", "stop"]);
    let mut start = suite.banger(&["vm", "start", name]);
    start.env("BANGER_FAULT", "boot.after_vmm_spawn");
    let crashed = start.output().expect("banger runs");
    assert!(
        !crashed.status.success(),
        "the start succeeded although its daemon died"
    );
    assert!(
        suite.env.wait_for_no_daemon(Duration::from_secs(10)),
        "the daemon did not die at boot.after_vmm_spawn ({})",
        stderr(&crashed)
    );
    let paths = suite.env.paths();
    let run_dir = paths.runtime_dir.join("vms").join(name);
    assert!(
        !processes_naming(&run_dir).is_empty(),
        "the unrecorded VMM should still run while no daemon does"
    );
    let vm = suite.json(&["vm", "show", name, "--json"]);
    assert_eq!(vm["state"], "stopped", "a killed start keeps its VM: {vm}");
    assert!(
        vm["last_error"]
            .as_str()
            .is_some_and(|reason| !reason.is_empty()),
        "the stopped VM says why: {vm}"
    );
    assert!(
        processes_naming(&run_dir).is_empty(),
        "the unrecorded VMM outlived the restart"
    );
    assert_nothing_leaked(suite, "after a start killed after its VMM spawn");
    let mut again = spawn(suite, &["vm", "start", name]);
    wait_running(suite, name);
    suite.ok(&["vm", "delete", "--force", name]);
    let _ = again.wait();
    assert_nothing_leaked(suite, "after the restarted VM's delete");
    format!(
        "vm start killed after its VMM spawn: kept stopped, VMM killed, started again, in {:.1} s",
        started.elapsed().as_secs_f64()
    )
}

/// A host reboot (see the module doc) with one VM running; returns what
/// it measured.
fn host_reboot_is_survived(suite: &Suite) -> String {
    let started = Instant::now();
    let name = "f-reboot";
    // Created, then started: a create whose guest never answered would be
    // an interrupted create, removed by the next daemon (see above).
    suite.ok(&[
        "vm",
        "create",
        "--name",
        name,
        "--image",
        "tiny",
        "--no-start",
    ]);
    let mut first_start = spawn(suite, &["vm", "start", name]);
    wait_running(suite, name);
    // The reboot: every process of this environment dies at once, and the
    // kernel's network state (bridge, TAPs, rules) is gone.
    let daemons: Vec<u32> = suite
        .env
        .daemon_pids()
        .into_iter()
        .filter_map(|pid| u32::try_from(pid).ok())
        .collect();
    kill_pids(daemons);
    kill_pids(processes_naming(suite.env.root()));
    let _ = first_start.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_naming(suite.env.root()).is_empty() {
        assert!(Instant::now() < deadline, "the VM's processes did not die");
        std::thread::sleep(Duration::from_millis(100));
    }
    for link in links(suite) {
        if link == "banger0" || link.starts_with("bgtap") {
            suite.in_netns("ip", &["link", "del", &link]);
        }
    }
    suite.in_netns("nft", &["flush", "ruleset"]);

    // A new daemon: the VM is stopped, with why.
    let vm = suite.json(&["vm", "show", name, "--json"]);
    assert_eq!(vm["state"], "stopped", "after the reboot: {vm}");
    assert!(
        vm["last_error"]
            .as_str()
            .is_some_and(|reason| reason.contains("not running")),
        "after the reboot the VM says why it stopped: {vm}"
    );
    assert_nothing_leaked(suite, "after the reboot");

    // vm start rebuilds the network and runs the VMM again.
    let mut start = spawn(suite, &["vm", "start", name]);
    let vm = wait_running(suite, name);
    let tap = vm["tap"]
        .as_str()
        .expect("a running VM has a TAP")
        .to_owned();
    let present = links(suite);
    assert!(
        present.contains("banger0"),
        "no bridge after vm start: {present:?}"
    );
    assert!(
        present.contains(&tap),
        "no TAP {tap} after vm start: {present:?}"
    );
    let master = suite.in_netns("ip", &["-o", "link", "show", &tap]);
    assert!(
        master.contains("master banger0"),
        "TAP {tap} is not on the bridge: {master}"
    );
    let rules = nft_rules(suite);
    assert!(
        rules.contains(&format!("\"{tap}\"")),
        "the rules do not name the VM's TAP {tap}:\n{rules}"
    );
    let pid = vm["pid"].as_u64().expect("a running VM has a VMM pid");
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "VMM {pid} does not run"
    );
    suite.ok(&["vm", "delete", "--force", name]);
    let _ = start.wait();
    assert_nothing_leaked(suite, "after the reboot and a delete");
    format!(
        "host reboot: stopped, then started with bridge, TAP {tap} and rules, in {:.1} s",
        started.elapsed().as_secs_f64()
    )
}
