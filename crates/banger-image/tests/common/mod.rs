//! Shared helpers for the integration tests: the cached Debian kernel, tiny
//! rootfs trees, and a QEMU (TCG) runner with a hard timeout that captures the
//! serial console to a file.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use banger_image::kernel::{self, Kernel};

/// Serialises kernel fetching between tests of one binary.
static FETCH: Mutex<()> = Mutex::new(());

/// banger's cache dir ($XDG_CACHE_HOME/banger or ~/.cache/banger).
pub fn cache_dir() -> PathBuf {
    banger_image::default_cache_dir().unwrap_or_else(|| std::env::temp_dir().join("banger-cache"))
}

/// True when `tool` can be run (tests without it call
/// `banger_testkit::skip_or_fail`).
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The Debian cloud kernel from the cache, downloaded with apt on first use.
/// None (after `skip_or_fail`) when apt is not available on this host.
pub fn debian_kernel() -> Option<Kernel> {
    if !have("apt-get") || !have("dpkg-deb") {
        banger_testkit::skip_or_fail("apt-get/dpkg-deb not available");
        return None;
    }
    let _guard = FETCH.lock().unwrap_or_else(|e| e.into_inner());
    let start = Instant::now();
    let k = kernel::fetch_debian_kernel(&cache_dir(), kernel::DEBIAN_CLOUD_METAPACKAGE).unwrap();
    eprintln!("kernel {} ready in {:?}", k.version, start.elapsed());
    Some(k)
}

/// Makes a busybox-only root tree at `root` whose `/sbin/init` is `init_script`.
pub fn busybox_rootfs(root: &Path, init_script: &str) {
    for d in [
        "bin", "sbin", "etc", "proc", "sys", "dev", "root", "tmp", "lib", "run",
    ] {
        fs_err::create_dir_all(root.join(d)).unwrap();
    }
    fs_err::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "mount", "hostname", "cat", "grep", "cut", "ls", "stat", "ip", "poweroff", "echo",
        "uname", "sync", "head", "tr", "sleep",
    ] {
        fs_err::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    fs_err::write(root.join("etc/hostname"), "base-image\n").unwrap();
    banger_testkit::write_executable(&root.join("sbin/init"), init_script);
}

/// One virtio disk for QEMU, attached in order (vda, vdb, ...).
pub struct Disk<'a> {
    pub path: &'a Path,
    pub read_only: bool,
}

/// Result of a QEMU run.
pub struct Run {
    pub console: String,
    pub elapsed: Duration,
    pub timed_out: bool,
}

/// Boots `kernel` + `initrd` under QEMU TCG with the given disks and one
/// virtio-net NIC without a backend (enough for static IP configuration), and
/// waits until the guest powers off or `timeout` passes (then QEMU is killed).
pub fn run_qemu(
    kernel: &Path,
    initrd: &Path,
    cmdline: &str,
    disks: &[Disk<'_>],
    mac: &str,
    console_log: &Path,
    timeout: Duration,
) -> Run {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-M",
        "q35",
        "-accel",
        "tcg",
        "-m",
        "512",
        "-smp",
        "1",
        "-nographic",
        "-no-reboot",
    ])
    .args(["-monitor", "none"])
    .arg("-serial")
    .arg(format!("file:{}", console_log.display()))
    .arg("-kernel")
    .arg(kernel)
    .arg("-initrd")
    .arg(initrd)
    .arg("-append")
    .arg(cmdline);
    for d in disks {
        let ro = if d.read_only { ",readonly=on" } else { "" };
        cmd.arg("-drive").arg(format!(
            "file={},format=raw,if=virtio{ro}",
            d.path.display()
        ));
    }
    cmd.args([
        "-nic",
        "none",
        "-device",
        &format!("virtio-net-pci,mac={mac}"),
    ]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn qemu-system-x86_64");
    let mut timed_out = false;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > timeout {
            timed_out = true;
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let elapsed = start.elapsed();
    let console = fs_err::read_to_string(console_log).unwrap_or_default();
    Run {
        console,
        elapsed,
        timed_out,
    }
}

/// Value after `prefix` on the first console line containing it.
pub fn marker<'a>(console: &'a str, prefix: &str) -> Option<&'a str> {
    console.lines().find_map(|l| {
        l.split_once(prefix)
            .map(|(_, v)| v.trim_end_matches('\r').trim())
    })
}

/// `debugfs -R "cat <file>"` on an ext4 image (no mount needed).
pub fn debugfs_cat(image: &Path, file: &str) -> String {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("cat {file}"))
        .arg(image)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A cheap content fingerprint of a file (to prove a disk was not written).
pub fn fingerprint(path: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    fs_err::read(path).unwrap().hash(&mut h);
    h.finish()
}

/// A QEMU process that is killed when dropped (so a failing test never leaves
/// a guest running).
pub struct QemuGuard {
    pub child: std::process::Child,
    pub started: Instant,
}

impl QemuGuard {
    /// True once QEMU has exited.
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }

    /// Waits up to `timeout` for QEMU to exit; kills it after that. Returns
    /// true when it exited by itself.
    pub fn wait_or_kill(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.exited() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for QemuGuard {
    fn drop(&mut self) {
        if !self.exited() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts QEMU TCG (2 vCPUs, 1 GiB) with the given disks in order and one
/// virtio-net NIC on QEMU's user-mode network (guest 10.0.2.15/24, gateway
/// 10.0.2.2, DNS 10.0.2.3), forwarding `127.0.0.1:<ssh_port>` to the guest's
/// port 22. Does not wait; the serial console goes to `console_log`.
pub fn spawn_qemu_usernet(
    kernel: &Path,
    initrd: &Path,
    cmdline: &str,
    disks: &[Disk<'_>],
    mac: &str,
    console_log: &Path,
    ssh_port: u16,
) -> QemuGuard {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-M", "q35", "-accel", "tcg", "-m", "1024", "-smp", "2"])
        .args(["-nographic", "-no-reboot", "-monitor", "none"])
        .arg("-serial")
        .arg(format!("file:{}", console_log.display()))
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(cmdline);
    for d in disks {
        let ro = if d.read_only { ",readonly=on" } else { "" };
        cmd.arg("-drive").arg(format!(
            "file={},format=raw,if=virtio{ro}",
            d.path.display()
        ));
    }
    cmd.arg("-netdev")
        .arg(format!("user,id=n0,hostfwd=tcp:127.0.0.1:{ssh_port}-:22"))
        .arg("-device")
        .arg(format!("virtio-net-pci,netdev=n0,mac={mac}"));
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let started = Instant::now();
    let child = cmd.spawn().expect("spawn qemu-system-x86_64");
    QemuGuard { child, started }
}

/// Generates an ed25519 key pair at `path` / `path.pub` with ssh-keygen.
pub fn ssh_keygen(path: &Path, comment: &str) {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "ssh-keygen failed for {}", path.display());
}

/// True when running as root.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
