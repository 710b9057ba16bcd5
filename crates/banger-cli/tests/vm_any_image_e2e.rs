//! Booting pulled images of any init (issue 14, "Boot any image"): one
//! daemon, three real guests under QEMU, one after the other.
//!
//! - `busybox-noinit`: static busybox only, no `/sbin/init`, no sshd,
//!   pulled from an OCI layout (`oci:DIR:TAG`): banger's init is PID 1 and
//!   the agent serves SSH; `vm stop` must be graceful (the power button
//!   reaches banger's init), not the kill after 60 s.
//! - `busybox-init`: the same plus busybox init with an inittab and an rcS
//!   script (the OpenRC/runit-style stand-in: the image's own init runs its
//!   scripts), made by `image build --from-catalog` from an OCI entry of a
//!   catalog file (`BANGER_IMAGE_CATALOG`) naming an OCI layout; the agent
//!   serves SSH and forwards the power button to init.
//!
//! The catalog's `generic-6-12` kernel is pulled too (and must be 6.12):
//! `busybox-noinit` is pulled with `--kernel-ref generic-6-12` and must run
//! 6.12 (QEMU 8 or newer under TCG: QEMU 7.2 crashes it in early boot, see
//! docs/kernel-catalog.md).
//! - `debian-oci`: the default Debian image's rootfs (systemd, OpenSSH),
//!   exported to an OCI layout, pushed to Debian's `docker-registry` on the
//!   namespace's loopback with skopeo and pulled from there.
//!
//! For each: `vm run --image X -- cat /etc/os-release` and
//! `vm ssh X -- echo ok`. The agent must be the static build
//! (`BANGER_AGENT_BIN`, else `scripts/build-agent.sh` is run).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::oci::{oci_layout, tar_layer};
use common::vm_suite::Suite;

/// The static agent, built when `BANGER_AGENT_BIN` does not name one.
fn static_agent() -> PathBuf {
    if let Some(path) = std::env::var_os("BANGER_AGENT_BIN").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = Command::new(root.join("scripts/build-agent.sh"))
        .arg("release")
        .current_dir(&root)
        .output()
        .expect("scripts/build-agent.sh runs");
    assert!(
        output.status.success(),
        "building the static agent failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

fn run(command: &mut Command) -> String {
    let output = command.output().expect("command runs");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A root tree of the host's static busybox with every applet linked
/// (but `init` and `linuxrc` unless `with_init`), root in /etc/passwd and
/// an os-release with `id`.
fn busybox_tree(dir: &Path, id: &str, with_init: bool) {
    for sub in [
        "bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "tmp", "dev", "proc", "sys", "run",
        "var",
    ] {
        fs_err::create_dir_all(dir.join(sub)).expect("mkdir");
    }
    fs_err::copy("/bin/busybox", dir.join("bin/busybox")).expect("copy busybox");
    let applets = run(Command::new("/bin/busybox").arg("--list-full"));
    for applet in applets.lines() {
        if applet == "bin/busybox" || applet == "linuxrc" || (!with_init && applet == "sbin/init") {
            continue;
        }
        let link = dir.join(applet);
        if link.symlink_metadata().is_err() {
            fs_err::os::unix::fs::symlink("/bin/busybox", &link).expect("applet link");
        }
    }
    fs_err::write(
        dir.join("etc/os-release"),
        format!("NAME=\"banger {id}\"\nID={id}\nPRETTY_NAME=\"banger test image {id}\"\n"),
    )
    .expect("os-release");
    fs_err::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    fs_err::write(dir.join("etc/group"), "root:x:0:\ntty:x:5:\n").expect("group");
    if with_init {
        fs_err::create_dir_all(dir.join("etc/init.d")).expect("mkdir");
        fs_err::write(
            dir.join("etc/inittab"),
            "::sysinit:/etc/init.d/rcS\n::shutdown:/bin/sync\n",
        )
        .expect("inittab");
        let rcs = dir.join("etc/init.d/rcS");
        fs_err::write(
            &rcs,
            "#!/bin/sh\nmount -t tmpfs tmpfs /run\necho \"rcS ran as $$ under $(cat /proc/1/comm)\" > /run/rcS.ok\n",
        )
        .expect("rcS");
        run(Command::new("chmod").arg("0755").arg(&rcs));
    }
    run(Command::new("chmod").arg("1777").arg(dir.join("tmp")));
}

/// Debian's `docker-registry` on the namespace's loopback, anonymous.
struct Registry {
    child: std::process::Child,
    port: u16,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_registry(suite: &Suite, dir: &Path) -> Registry {
    let port = 5000;
    let config = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
        dir.join("data").display()
    );
    fs_err::write(dir.join("config.yml"), config).expect("registry config");
    let child = suite
        .netns
        .wrap(
            Command::new("docker-registry")
                .arg("serve")
                .arg(dir.join("config.yml")),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry (apt-get install docker-registry)");
    let registry = Registry { child, port };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let probe = suite
            .netns
            .wrap(Command::new("curl").args([
                "-sf",
                "-o",
                "/dev/null",
                &format!("http://127.0.0.1:{port}/v2/"),
            ]))
            .status()
            .expect("curl runs");
        if probe.success() {
            return registry;
        }
        assert!(Instant::now() < deadline, "the registry did not start");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `vm run --image IMAGE -- cat /etc/os-release`, then `vm ssh -- echo ok`.
fn boot_and_check(suite: &Suite, vm: &str, image: &str, os_id: &str) {
    let started = Instant::now();
    let os_release = suite.ok(&[
        "vm",
        "run",
        "--name",
        vm,
        "--image",
        image,
        "--",
        "cat",
        "/etc/os-release",
    ]);
    eprintln!(
        "{image}: vm run took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        os_release.lines().any(|line| line == format!("ID={os_id}")),
        "{image}: {os_release}"
    );
    assert_eq!(suite.ssh(vm, "echo ok"), "ok\n");
}

/// `vm stop` and how long it took; it must be the guest's own shutdown,
/// well before the daemon's 60 s kill.
fn stop_gracefully(suite: &Suite, vm: &str) {
    let started = Instant::now();
    suite.ok(&["vm", "stop", vm]);
    let took = started.elapsed();
    eprintln!("{vm}: vm stop took {:.1} s", took.as_secs_f64());
    assert!(
        took < Duration::from_secs(40),
        "{vm}: vm stop took {took:?}: the guest did not power off on the power button"
    );
    suite.wait_for_state(vm, "stopped", Duration::from_secs(5));
}

#[test]
fn pulled_images_of_any_init_boot_and_answer_ssh() {
    let agent = static_agent();
    let mut suite = Suite::bare("anyimg");
    suite
        .vars
        .push(("BANGER_AGENT_BIN".to_owned(), agent.into_os_string()));
    let work = tempfile::tempdir().expect("tempdir");

    // The default Debian image and kernel, and the catalog's 6.12 kernel
    // (host namespace: they need the Debian mirror).
    let _ = suite.create_in_host_namespace("seed");
    for args in [&["kernel", "pull", "generic-6-12"][..], &["daemon", "stop"]] {
        let mut host = suite.env.banger();
        host.args(args).stdin(Stdio::null());
        run(&mut host);
    }
    suite.ok(&["vm", "delete", "seed"]);
    let kernels = suite.json(&["kernel", "list", "--json"]);
    let generic = kernels
        .as_array()
        .expect("kernel list")
        .iter()
        .find(|kernel| kernel["name"] == "generic-6-12")
        .unwrap_or_else(|| panic!("generic-6-12 installed: {kernels}"));
    assert!(
        generic["version"]
            .as_str()
            .is_some_and(|version| version.starts_with("6.12.")),
        "{generic}"
    );

    // (a) busybox, no init, no sshd: banger's init and SSH.
    let tree = work.path().join("noinit");
    busybox_tree(&tree, "banger-busybox-noinit", false);
    tar_layer(&tree, &work.path().join("noinit.tar"));
    let layout = work.path().join("layout");
    oci_layout(&layout, "noinit", &work.path().join("noinit.tar"));
    suite.ok(&[
        "image",
        "pull",
        &format!("oci:{}:noinit", layout.display()),
        "--name",
        "busybox-noinit",
        "--kernel-ref",
        "generic-6-12",
    ]);
    boot_and_check(
        &suite,
        "bb-noinit",
        "busybox-noinit",
        "banger-busybox-noinit",
    );
    let release = suite.ssh("bb-noinit", "uname -r");
    assert!(
        release.starts_with("6.12."),
        "generic-6-12 booted: {release}"
    );
    let pid1 = suite.ssh("bb-noinit", "tr '\\0' ' ' < /proc/1/cmdline");
    assert!(pid1.contains("banger-vsock-agent --init"), "{pid1}");
    // Processes the SSH server started are reaped (no zombies pile up).
    suite.ssh(
        "bb-noinit",
        "for i in 1 2 3; do (sleep 0.1 &) ; done; sleep 1",
    );
    let zombies = suite.ssh(
        "bb-noinit",
        "grep -l '^State:.*Z' /proc/[0-9]*/status | wc -l",
    );
    assert_eq!(zombies.trim(), "0", "zombies left");
    stop_gracefully(&suite, "bb-noinit");
    suite.ok(&["vm", "delete", "bb-noinit"]);

    // (b) busybox init with an inittab and rcS (OpenRC/runit-style stand-in).
    let tree = work.path().join("init");
    busybox_tree(&tree, "banger-busybox-init", true);
    tar_layer(&tree, &work.path().join("init.tar"));
    oci_layout(&layout, "init", &work.path().join("init.tar"));
    // Made from an OCI entry of a catalog file (`image build --from-catalog`
    // pulls it as it is: the entry is not provisioned).
    let catalog = work.path().join("catalog.toml");
    fs_err::write(
        &catalog,
        format!(
            "schema = 1\ndefault = \"busybox-init\"\n[[image]]\nname = \"busybox-init\"\n\
             description = \"busybox with its own init\"\noci = \"oci:{}:init\"\n\
             kernel = \"debian-cloud-amd64\"\nprovision = false\ndocker = false\n",
            layout.display()
        ),
    )
    .expect("write the catalog");
    let with_catalog = |args: &[&str]| {
        let mut command = suite.banger(args);
        command.env("BANGER_IMAGE_CATALOG", &catalog);
        run(&mut command)
    };
    let available = with_catalog(&["image", "list", "--available"]);
    assert!(
        available.contains("busybox-init (default)") && available.contains("oci oci:"),
        "{available}"
    );
    with_catalog(&["image", "build", "--from-catalog", "busybox-init"]);
    let pulled = suite.json(&["image", "show", "busybox-init", "--json"]);
    assert_eq!(pulled["kernel"], "debian-cloud-amd64", "{pulled}");
    boot_and_check(&suite, "bb-init", "busybox-init", "banger-busybox-init");
    let rcs = suite.ssh("bb-init", "cat /run/rcS.ok");
    assert!(
        rcs.contains("under init"),
        "the image's init ran rcS: {rcs}"
    );
    stop_gracefully(&suite, "bb-init");
    suite.ok(&["vm", "delete", "bb-init"]);

    // (c) the Debian image, through a registry on the namespace's loopback.
    let shown = suite.json(&["image", "show", common::vm_suite::BARE_IMAGE, "--json"]);
    let rootfs = PathBuf::from(shown["rootfs"].as_str().expect("rootfs path"));
    let mount = work.path().join("debian-root");
    fs_err::create_dir_all(&mount).expect("mkdir");
    run(Command::new("mount")
        .args(["-o", "ro,loop"])
        .arg(&rootfs)
        .arg(&mount));
    let debian_tar = work.path().join("debian.tar");
    let tarred = Command::new("tar")
        .args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "-C"])
        .arg(&mount)
        .arg("-cf")
        .arg(&debian_tar)
        .arg(".")
        .status();
    let _ = Command::new("umount").arg(&mount).status();
    assert!(
        tarred.expect("tar runs").success(),
        "tar of the Debian rootfs"
    );
    let debian_layout = work.path().join("debian-layout");
    oci_layout(&debian_layout, "bookworm", &debian_tar);
    let registry_dir = work.path().join("registry");
    fs_err::create_dir_all(&registry_dir).expect("mkdir");
    let registry = start_registry(&suite, &registry_dir);
    suite.in_netns(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            &format!("oci:{}:bookworm", debian_layout.display()),
            &format!(
                "docker://127.0.0.1:{}/banger/debian:bookworm",
                registry.port
            ),
        ],
    );
    suite.ok(&[
        "image",
        "pull",
        &format!("127.0.0.1:{}/banger/debian:bookworm", registry.port),
        "--name",
        "debian-oci",
    ]);
    boot_and_check(&suite, "deb-oci", "debian-oci", "debian");
    let pid1 = suite.ssh("deb-oci", "cat /proc/1/comm");
    assert_eq!(pid1.trim(), "systemd");
    suite.ok(&["vm", "delete", "--force", "deb-oci"]);
    drop(registry);
}
