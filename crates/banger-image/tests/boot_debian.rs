//! Boots a real Debian 12 (debootstrap minbase + systemd + openssh-server) image
//! through the banger boot chain under QEMU TCG and checks, from a systemd unit
//! baked into the test image, that systemd came up on the overlay root with the
//! per-VM hostname, static IP and SSH host key, that sshd is running, and that
//! the image's own `modprobe` loads a module from the modules disk.
//!
//! The image is built once with debootstrap (~50 s, needs root and a Debian
//! mirror) and cached as `<cache>/test-images/`; when it cannot be built the
//! test fails under CI and reports itself SKIPPED elsewhere
//! (`banger_testkit::skip_or_fail`). Boot to poweroff takes ~30-60 s under TCG.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use banger_image::guest_config::{GuestConfig, NetworkConfig, SshHostKey, write_vm_initrd};
use banger_image::initramfs::{DEFAULT_BUSYBOX, build_initramfs};
use banger_image::modules_disk::{Ext4Options, build_modules_disk, mkfs_ext4};
use common::{Disk, marker, run_qemu};

/// Bump when the image recipe below changes, so the cache is rebuilt.
const IMAGE_NAME: &str = "debian-bookworm-minbase-banger-test-v2.ext4";
const IMAGE_PREFIX: &str = "debian-bookworm-minbase-banger-test-";
const MIRROR: &str = "http://deb.debian.org/debian";

const REPORT: &str = r#"#!/bin/sh
echo "MARK-DEB-HOSTNAME:$(hostname)"
echo "MARK-DEB-ROOTFS:$(grep ' / ' /proc/mounts | cut -d' ' -f3)"
echo "MARK-DEB-WORK:$(cat /root/work.txt)"
echo "MARK-DEB-IP:$(ip -4 -o addr show dev eth0 | tr -s ' ' | cut -d' ' -f4)"
echo "MARK-DEB-SSH:$(systemctl is-active ssh)"
echo "MARK-DEB-HOSTKEY:$(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f2)"
# Log in over SSH to the guest itself with the key pair the test put on the
# work disk, checking sshd accepts the installed authorized_keys (StrictModes)
# and presents the installed host key.
echo "MARK-DEB-SSHLOGIN:$(ssh -i /root/client_key -o BatchMode=yes -o StrictHostKeyChecking=yes \
    -o UserKnownHostsFile=/root/known_hosts root@127.0.0.1 'echo logged-in-as-$(id -un)' 2>&1)"
echo "MARK-DEB-MODPROBE:$(modprobe nf_tables && grep -c '^nf_tables ' /proc/modules)"
echo "MARK-DEB-STATE:$(systemctl is-system-running)"
echo "MARK-DEB-DONE"
systemctl poweroff --no-block
"#;

const UNIT: &str = "[Unit]
Description=banger boot test report
After=ssh.service systemd-user-sessions.service

[Service]
Type=oneshot
StandardOutput=tty
TTYPath=/dev/ttyS0
ExecStart=/usr/local/sbin/banger-test-report

[Install]
WantedBy=multi-user.target
";

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Returns the cached Debian test image, building it on first use.
fn debian_image() -> Option<PathBuf> {
    let dir = common::cache_dir().join("test-images");
    let image = dir.join(IMAGE_NAME);
    if image.exists() {
        return Some(image);
    }
    if !is_root() || !common::have("debootstrap") {
        banger_testkit::skip_or_fail("building the Debian test image needs root and debootstrap");
        return None;
    }
    fs_err::create_dir_all(&dir).unwrap();
    // Drop images built from older recipes.
    for entry in fs_err::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with(IMAGE_PREFIX) && name != IMAGE_NAME {
            let _ = fs_err::remove_file(&path);
        }
    }
    let scratch = tempfile::tempdir_in(&dir).unwrap();
    let tree = scratch.path().join("tree");
    let start = Instant::now();
    let status = Command::new("debootstrap")
        .args([
            "--variant=minbase",
            "--include=systemd-sysv,openssh-server,iproute2,kmod",
            "bookworm",
        ])
        .arg(&tree)
        .arg(MIRROR)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    if !status.success() {
        banger_testkit::skip_or_fail(format!("debootstrap failed ({status}); no Debian mirror?"));
        return None;
    }
    banger_testkit::write_executable(&tree.join("usr/local/sbin/banger-test-report"), REPORT);
    fs_err::write(tree.join("etc/systemd/system/banger-test.service"), UNIT).unwrap();
    let wants = tree.join("etc/systemd/system/multi-user.target.wants");
    fs_err::create_dir_all(&wants).unwrap();
    fs_err::os::unix::fs::symlink("../banger-test.service", wants.join("banger-test.service"))
        .unwrap();
    let tmp_image = scratch.path().join("image.ext4");
    mkfs_ext4(
        &tmp_image,
        1 << 30,
        &Ext4Options {
            populate_from: Some(&tree),
            label: Some("debian"),
            journal: true,
        },
    )
    .unwrap();
    fs_err::rename(&tmp_image, &image).unwrap();
    eprintln!("Debian test image built in {:?}", start.elapsed());
    Some(image)
}

fn host_key(dir: &Path) -> (SshHostKey, String) {
    let path = dir.join("hostkey");
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "root@deb-vm", "-f"])
        .arg(&path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "ssh-keygen failed");
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(path.with_extension("pub"))
        .output()
        .unwrap();
    let fingerprint = String::from_utf8_lossy(&out.stdout)
        .split(' ')
        .nth(1)
        .unwrap()
        .to_owned();
    let key = SshHostKey {
        key_type: "ed25519".into(),
        private_key: fs_err::read_to_string(&path).unwrap(),
        public_key: fs_err::read_to_string(path.with_extension("pub")).unwrap(),
    };
    (key, fingerprint)
}

#[test]
fn boots_debian_image_with_systemd_and_sshd() {
    for tool in ["qemu-system-x86_64", "mkfs.ext4", "ssh-keygen"] {
        if !common::have(tool) {
            banger_testkit::skip_or_fail(format!("{tool} not installed"));
            return;
        }
    }
    let Some(kernel) = common::debian_kernel() else {
        return;
    };
    let Some(base) = debian_image() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let initramfs = d.join("initramfs.img");
    build_initramfs(
        Path::new(DEFAULT_BUSYBOX),
        &kernel.modules_dir,
        &kernel.version,
        &initramfs,
    )
    .unwrap();
    let modules_img = d.join("modules.ext4");
    build_modules_disk(&kernel.modules_dir, &modules_img).unwrap();
    let upper = d.join("upper.ext4");
    mkfs_ext4(
        &upper,
        1 << 30,
        &Ext4Options {
            journal: true,
            ..Default::default()
        },
    )
    .unwrap();
    let work_tree = d.join("work");
    fs_err::create_dir_all(&work_tree).unwrap();
    fs_err::write(work_tree.join("work.txt"), "debian-work\n").unwrap();
    let (key, fingerprint) = host_key(d);
    fs_err::write(
        work_tree.join("known_hosts"),
        format!("127.0.0.1 {}", key.public_key),
    )
    .unwrap();
    let client_key = work_tree.join("client_key");
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test@host", "-f"])
        .arg(&client_key)
        .status()
        .unwrap()
        .success();
    assert!(ok, "ssh-keygen failed");
    let client_pub = fs_err::read_to_string(client_key.with_extension("pub")).unwrap();
    let work = d.join("work.ext4");
    mkfs_ext4(
        &work,
        256 << 20,
        &Ext4Options {
            populate_from: Some(&work_tree),
            journal: true,
            ..Default::default()
        },
    )
    .unwrap();

    let mac = "02:fc:ac:1e:00:09";
    let config = GuestConfig {
        hostname: "deb-vm".into(),
        network: Some(NetworkConfig {
            address: Ipv4Addr::new(172, 30, 0, 9),
            prefix_len: 24,
            gateway: Some(Ipv4Addr::new(172, 30, 0, 1)),
            dns: vec!["172.30.0.1".parse().unwrap()],
            mac: Some(mac.into()),
            iface: None,
            mtu: None,
        }),
        authorized_keys: vec![client_pub.trim().to_owned()],
        ssh_host_keys: vec![key],
        agent: None,
        auth_files: Vec::new(),
    };
    let initrd = d.join("vm.initrd");
    write_vm_initrd(&initramfs, &config, &initrd).unwrap();

    let run = run_qemu(
        &kernel.vmlinuz,
        &initrd,
        "console=ttyS0 panic=-1 loglevel=4 net.ifnames=0",
        &[
            Disk {
                path: &base,
                read_only: true,
            },
            Disk {
                path: &upper,
                read_only: false,
            },
            Disk {
                path: &work,
                read_only: false,
            },
            Disk {
                path: &modules_img,
                read_only: true,
            },
        ],
        mac,
        &d.join("console.log"),
        Duration::from_secs(240),
    );
    let c = &run.console;
    eprintln!("Debian boot to poweroff took {:?}", run.elapsed);
    for line in c
        .lines()
        .filter(|l| l.contains("banger-init:") || l.contains("MARK-DEB"))
    {
        eprintln!("  | {line}");
    }
    assert!(!run.timed_out, "timed out:\n{c}");
    assert!(c.contains("MARK-DEB-DONE"), "report did not run:\n{c}");
    assert_eq!(marker(c, "MARK-DEB-HOSTNAME:"), Some("deb-vm"));
    assert_eq!(marker(c, "MARK-DEB-ROOTFS:"), Some("overlay"));
    assert_eq!(marker(c, "MARK-DEB-WORK:"), Some("debian-work"));
    assert_eq!(marker(c, "MARK-DEB-IP:"), Some("172.30.0.9/24"));
    assert_eq!(marker(c, "MARK-DEB-SSH:"), Some("active"));
    assert_eq!(marker(c, "MARK-DEB-HOSTKEY:"), Some(fingerprint.as_str()));
    assert_eq!(marker(c, "MARK-DEB-SSHLOGIN:"), Some("logged-in-as-root"));
    assert_eq!(marker(c, "MARK-DEB-MODPROBE:"), Some("1"));
}
