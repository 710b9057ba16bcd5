//! Bad `vm` input gets a clear error and leaves nothing behind. No guest is
//! booted here; an unmanaged image made of empty ext4 files is enough.

use std::process::{Output, Stdio};

use banger_testkit::TestEnv;
use banger_testkit::netns::NetNs;

#[test]
fn bad_vm_requests_are_refused_and_leave_nothing_behind() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs root (it creates a network namespace)"
    );
    let env = TestEnv::new().with_shared_cache();
    let netns = NetNs::new("err");
    let run = |args: &[&str], extra_env: &[(&str, &str)]| -> Output {
        let mut command = env.banger();
        command.args(args);
        for (key, value) in extra_env {
            command.env(key, value);
        }
        netns
            .wrap(&command)
            .stdin(Stdio::null())
            .output()
            .expect("banger runs")
    };
    let ok = |args: &[&str]| {
        let output = run(args, &[]);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let fails = |args: &[&str], expected: &str| {
        let output = run(args, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(
            stderr.contains(expected),
            "{args:?}: expected {expected:?} in {stderr}"
        );
    };

    ok(&["kernel", "pull", "debian-cloud-amd64"]);
    let rootfs = env.root().join("root.ext4");
    let seed = env.root().join("seed.ext4");
    banger_testkit::mkfs_ext4(&rootfs, "64M");
    banger_testkit::mkfs_ext4(&seed, "64M");
    let register_tiny = || {
        ok(&[
            "image",
            "register",
            "--name",
            "tiny",
            "--rootfs",
            rootfs.to_str().expect("utf-8"),
            "--work-seed",
            seed.to_str().expect("utf-8"),
        ])
    };
    register_tiny();

    fails(
        &["vm", "create", "--name", "../x", "--image", "tiny"],
        "VM name \"../x\"",
    );
    fails(
        &[
            "vm",
            "create",
            "--name",
            &"a".repeat(300),
            "--image",
            "tiny",
        ],
        "300 characters long",
    );
    fails(
        &["vm", "create", "--name", "x", "--image", "nope"],
        "image nope does not exist",
    );
    fails(
        &[
            "vm", "create", "--name", "x", "--image", "tiny", "--memory", "100",
        ],
        "at least 256 MiB",
    );
    fails(
        &[
            "vm",
            "create",
            "--name",
            "x",
            "--image",
            "tiny",
            "--disk-size",
            "16M",
        ],
        "smaller than image tiny's work seed",
    );
    fails(&["vm", "ssh", "nope"], "VM nope does not exist");

    // A watcher of the daemon's events sees what follows.
    let mut watch_command = env.banger();
    watch_command.args(["daemon", "events"]);
    let watcher = netns
        .wrap(&watch_command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("banger daemon events");
    std::thread::sleep(std::time::Duration::from_millis(500));

    // A VM created without starting: a taken name is refused.
    ok(&[
        "vm",
        "create",
        "--name",
        "idle",
        "--image",
        "tiny",
        "--no-start",
        "--disk-size",
        "128M",
    ]);
    fails(
        &[
            "vm",
            "create",
            "--name",
            "idle",
            "--image",
            "tiny",
            "--no-start",
        ],
        "already exists",
    );
    fails(
        &["vm", "ssh", "idle", "--", "true"],
        "VM idle is created; start it",
    );
    fails(&["vm", "set", "idle", "--disk-size", "96M"], "only grows");
    ok(&[
        "vm",
        "set",
        "idle",
        "--vcpu",
        "1",
        "--memory",
        "512",
        "--disk-size",
        "256M",
    ]);
    let shown: serde_json::Value =
        serde_json::from_str(&ok(&["vm", "show", "idle", "--json"])).expect("JSON");
    assert_eq!(shown["vcpus"], 1);
    assert_eq!(shown["memory_mib"], 512);
    assert_eq!(shown["disk_bytes"], 256 << 20);
    let idle_dir = std::path::PathBuf::from(shown["dir"].as_str().expect("dir"));
    assert_eq!(
        fs_err::metadata(idle_dir.join("work.ext4"))
            .expect("work disk")
            .len(),
        256 << 20
    );

    // Stopping the daemon ends the event stream: the watcher saw the VM
    // recorded, as NDJSON, and exits cleanly.
    ok(&["daemon", "stop"]);
    let watched = watcher.wait_with_output().expect("the watcher ends");
    assert!(
        watched.status.success(),
        "{}",
        String::from_utf8_lossy(&watched.stderr)
    );
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&watched.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON event per line"))
        .collect();
    assert!(
        events
            .iter()
            .any(|event| event["event"] == serde_json::json!({"type": "vm_created", "vm": "idle"})),
        "{events:?}"
    );

    // Missing VMM binary, and Firecracker forced where KVM cannot run guests:
    // both refused before anything is made. (A new daemon reads the variables.)
    ok(&["daemon", "stop"]);
    let output = run(
        &["vm", "create", "--name", "x", "--image", "tiny"],
        &[
            ("BANGER_QEMU_BIN", "/nonexistent/qemu"),
            ("BANGER_VMM", "qemu"),
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/nonexistent/qemu was not found"),
        "{stderr}"
    );
    ok(&["daemon", "stop"]);
    let kvm_usable = banger_host::kvm::probe().can_run_guests;
    if !kvm_usable {
        let output = run(
            &["vm", "create", "--name", "x", "--image", "tiny"],
            &[("BANGER_VMM", "firecracker")],
        );
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("Firecracker needs a KVM that runs guests"),
            "{stderr}"
        );
        ok(&["daemon", "stop"]);
    }
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&["vm", "list", "--json"])).expect("JSON");
    let names: Vec<&str> = listed
        .as_array()
        .expect("array")
        .iter()
        .map(|vm| vm["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["idle"], "failed creates leave no VM");
    let dirs: Vec<String> = fs_err::read_dir(env.paths().state_dir.join("vms"))
        .expect("vms dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(dirs, ["idle"], "failed creates leave no files");

    // The database is lost (moved away, as the newer-schema error advises):
    // the VM's directory is an orphan now. A create of that name refuses to
    // touch it and names the fix; `vm adopt` brings the VM back with its
    // disks.
    ok(&["daemon", "stop"]);
    let database = env.paths().database();
    let file_name = database
        .file_name()
        .expect("db name")
        .to_string_lossy()
        .into_owned();
    for suffix in ["", "-wal", "-shm"] {
        let from = database.with_file_name(format!("{file_name}{suffix}"));
        if from.exists() {
            fs_err::rename(&from, env.root().join(format!("lost{suffix}"))).expect("move the db");
        }
    }
    ok(&["kernel", "pull", "debian-cloud-amd64"]);
    register_tiny();
    fails(
        &[
            "vm",
            "create",
            "--name",
            "idle",
            "--image",
            "tiny",
            "--no-start",
        ],
        "banger vm adopt",
    );
    assert!(
        idle_dir.join("work.ext4").exists(),
        "the refused create kept the orphan's disk"
    );
    ok(&[
        "vm",
        "adopt",
        idle_dir.to_str().expect("utf-8"),
        "--image",
        "tiny",
    ]);
    let adopted: serde_json::Value =
        serde_json::from_str(&ok(&["vm", "show", "idle", "--json"])).expect("JSON");
    assert_eq!(adopted["state"], "created");
    assert_eq!(adopted["disk_bytes"], 256 << 20, "disk size from work.ext4");
    fails(
        &["vm", "adopt", idle_dir.to_str().expect("utf-8")],
        "already owns",
    );

    ok(&["vm", "delete", "idle"]);
    // The image cannot go while... nothing uses it now, so it can.
    ok(&["image", "delete", "tiny"]);
    assert!(rootfs.exists(), "unmanaged files are kept");
}
