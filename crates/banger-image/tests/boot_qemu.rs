//! End-to-end boot of the whole chain under QEMU TCG: Debian's cloud kernel, the
//! banger initramfs plus a per-VM config archive, a busybox-only base image on
//! vda (read-only), a fresh upper disk on vdb, a work disk on vdc and the modules
//! disk on vdd. The base image's `/sbin/init` prints markers describing what it
//! sees and powers off; the test asserts them and inspects the disks afterwards.
//!
//! Needs qemu-system-x86_64, e2fsprogs, busybox-static and apt (for the kernel,
//! cached under $XDG_CACHE_HOME/banger); otherwise fails under CI and reports
//! itself SKIPPED elsewhere (`banger_testkit::skip_or_fail`).

#![allow(clippy::unwrap_used)]

mod common;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use banger_image::auth_files::{AuthFile, AuthFileKind};
use banger_image::guest_config::{GuestConfig, NetworkConfig, SshHostKey, write_vm_initrd};
use banger_image::initramfs::{DEFAULT_BUSYBOX, build_initramfs};
use banger_image::modules_disk::{Ext4Options, build_modules_disk, mkfs_ext4};
use common::{Disk, debugfs_cat, fingerprint, marker, run_qemu};

const GUEST_INIT: &str = r#"#!/bin/sh
export PATH=/bin
KVER=$(uname -r)
echo "MARK-HOSTNAME:$(hostname)"
echo "MARK-ETC-HOSTNAME:$(cat /etc/hostname)"
echo "MARK-WORK:$(cat /root/work.txt)"
echo "MARK-ROOTFS:$(grep ' / ' /proc/mounts | cut -d' ' -f1,3)"
echo "MARK-ROOTMNT:$(grep ' /root ' /proc/mounts | cut -d' ' -f1)"
echo "MARK-MODMNT:$(grep " /lib/modules/$KVER " /proc/mounts | cut -d' ' -f1,4 | cut -d, -f1)"
[ -f "/lib/modules/$KVER/modules.dep" ] && echo "MARK-MODDEP:present"
echo "MARK-PREVIOUS:$(cat /written-by-guest 2>/dev/null || echo none)"
echo guest-wrote-this > /written-by-guest && echo "MARK-ROOTWRITE:ok"
echo work-from-guest > /root/from-guest && echo "MARK-WORKWRITE:ok"
echo "MARK-AUTHKEYS:$(stat -c %a:%u /root/.ssh/authorized_keys) $(head -c 11 /root/.ssh/authorized_keys)"
echo "MARK-HOSTKEY:$(stat -c %a /etc/ssh/ssh_host_ed25519_key) $(stat -c %a /etc/ssh/ssh_host_ed25519_key.pub)"
echo "MARK-AGENT:$(stat -c %a /usr/local/bin/banger-vsock-agent)"
echo "MARK-CREDS:$(stat -c %a:%u /root/.claude/.credentials.json) $(stat -c %a /root/.claude) $(cat /root/.claude/.credentials.json)"
echo "MARK-IP:$(ip -4 -o addr show dev eth0 | tr -s ' ' | cut -d' ' -f4)"
echo "MARK-ROUTE:$(ip route show default | cut -d' ' -f1-3)"
echo "MARK-DNS:$(cat /etc/resolv.conf | tr '\n' ' ')"
n=0; while [ ! -f /tmp/agent-ran ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n+1)); done
echo "MARK-AGENT-RAN:$(cat /tmp/agent-ran)"
echo "MARK-DONE"
sync
poweroff -f
"#;

#[test]
fn boots_busybox_image_through_banger_initramfs() {
    for tool in ["qemu-system-x86_64", "mkfs.ext4", "debugfs"] {
        if !common::have(tool) {
            banger_testkit::skip_or_fail(format!("{tool} not installed"));
            return;
        }
    }
    if !Path::new(DEFAULT_BUSYBOX).exists() {
        banger_testkit::skip_or_fail("busybox-static not installed");
        return;
    }
    let Some(kernel) = common::debian_kernel() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // Shared per-kernel artifacts.
    let t = Instant::now();
    let initramfs = d.join("initramfs.img");
    let info = build_initramfs(
        Path::new(DEFAULT_BUSYBOX),
        &kernel.modules_dir,
        &kernel.version,
        &initramfs,
    )
    .unwrap();
    eprintln!(
        "initramfs: {} bytes, modules {:?} ({:?})",
        info.size,
        info.modules,
        t.elapsed()
    );
    let t = Instant::now();
    let modules_img = d.join("modules.ext4");
    build_modules_disk(&kernel.modules_dir, &modules_img).unwrap();
    eprintln!("modules disk built in {:?}", t.elapsed());

    // Base image (vda), upper (vdb), work (vdc).
    let rootfs = d.join("rootfs");
    common::busybox_rootfs(&rootfs, GUEST_INIT);
    let base = d.join("base.ext4");
    mkfs_ext4(
        &base,
        64 << 20,
        &Ext4Options {
            populate_from: Some(&rootfs),
            label: Some("base"),
            journal: false,
        },
    )
    .unwrap();
    let upper = d.join("upper.ext4");
    mkfs_ext4(
        &upper,
        256 << 20,
        &Ext4Options {
            journal: true,
            ..Default::default()
        },
    )
    .unwrap();
    let work_tree = d.join("work");
    fs_err::create_dir_all(&work_tree).unwrap();
    fs_err::write(work_tree.join("work.txt"), "persistent-work-42\n").unwrap();
    let work = d.join("work.ext4");
    mkfs_ext4(
        &work,
        64 << 20,
        &Ext4Options {
            populate_from: Some(&work_tree),
            journal: true,
            ..Default::default()
        },
    )
    .unwrap();
    let base_before = fingerprint(&base);

    let mac = "02:fc:ac:1e:00:07";
    let config = GuestConfig {
        hostname: "banger-test-vm".into(),
        network: Some(NetworkConfig {
            address: Ipv4Addr::new(172, 30, 0, 7),
            prefix_len: 24,
            gateway: Some(Ipv4Addr::new(172, 30, 0, 1)),
            dns: vec!["172.30.0.1".parse().unwrap()],
            mac: Some(mac.into()),
            iface: None,
            mtu: None,
        }),
        authorized_keys: vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAItest test@host".into()],
        ssh_host_keys: vec![SshHostKey {
            key_type: "ed25519".into(),
            private_key:
                "-----BEGIN OPENSSH PRIVATE KEY-----\nfake\n-----END OPENSSH PRIVATE KEY-----\n"
                    .into(),
            public_key: "ssh-ed25519 AAAAfake root@banger-test-vm".into(),
        }],
        // A stand-in agent: proves /init started it, chrooted into the new root.
        agent: Some(b"#!/bin/sh\necho \"root=$(cat /etc/hostname)\" > /tmp/agent-ran\n".to_vec()),
        auth_files: vec![AuthFile {
            kind: AuthFileKind::Claude,
            contents: b"claude-token".to_vec(),
        }],
    };
    let initrd = d.join("vm.initrd");
    write_vm_initrd(&initramfs, &config, &initrd).unwrap();

    let console_log = d.join("console.log");
    let run = run_qemu(
        &kernel.vmlinuz,
        &initrd,
        "console=ttyS0 panic=-1 loglevel=4",
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
        &console_log,
        Duration::from_secs(120),
    );
    eprintln!("QEMU boot-to-poweroff took {:?}", run.elapsed);
    let c = &run.console;
    for line in c
        .lines()
        .filter(|l| l.contains("banger-init:") || l.contains("MARK-"))
    {
        eprintln!("  | {line}");
    }
    let ctx = || format!("\n--- console ---\n{c}\n---------------");
    assert!(!run.timed_out, "QEMU timed out after 120 s{}", ctx());
    assert!(!c.contains("banger-init: FATAL"), "init failed{}", ctx());
    assert!(
        c.contains("banger-init: switching root to /sbin/init"),
        "{}",
        ctx()
    );
    assert!(
        c.contains("MARK-DONE"),
        "guest init did not finish{}",
        ctx()
    );

    assert_eq!(
        marker(c, "MARK-HOSTNAME:"),
        Some("banger-test-vm"),
        "{}",
        ctx()
    );
    assert_eq!(marker(c, "MARK-ETC-HOSTNAME:"), Some("banger-test-vm"));
    assert_eq!(marker(c, "MARK-WORK:"), Some("persistent-work-42"));
    assert_eq!(marker(c, "MARK-ROOTFS:"), Some("overlay overlay"));
    assert_eq!(marker(c, "MARK-ROOTMNT:"), Some("/dev/vdc"));
    assert_eq!(marker(c, "MARK-MODMNT:"), Some("/dev/vdd ro"));
    assert_eq!(marker(c, "MARK-MODDEP:"), Some("present"));
    assert_eq!(marker(c, "MARK-ROOTWRITE:"), Some("ok"));
    assert_eq!(marker(c, "MARK-WORKWRITE:"), Some("ok"));
    assert_eq!(marker(c, "MARK-AUTHKEYS:"), Some("600:0 ssh-ed25519"));
    assert_eq!(marker(c, "MARK-HOSTKEY:"), Some("600 644"));
    assert_eq!(marker(c, "MARK-AGENT:"), Some("755"));
    assert_eq!(marker(c, "MARK-CREDS:"), Some("600:0 700 claude-token"));
    assert_eq!(marker(c, "MARK-IP:"), Some("172.30.0.7/24"));
    assert_eq!(marker(c, "MARK-ROUTE:"), Some("default via 172.30.0.1"));
    assert_eq!(marker(c, "MARK-DNS:"), Some("nameserver 172.30.0.1"));
    assert_eq!(marker(c, "MARK-PREVIOUS:"), Some("none"));
    assert_eq!(marker(c, "MARK-AGENT-RAN:"), Some("root=banger-test-vm"));

    // The base image was attached read-only and must be byte-identical; the
    // guest's writes landed in the upper layer and on the work disk.
    assert_eq!(fingerprint(&base), base_before, "base image was modified");
    assert_eq!(debugfs_cat(&base, "/etc/hostname"), "base-image\n");
    assert_eq!(
        debugfs_cat(&upper, "/upper/written-by-guest"),
        "guest-wrote-this\n"
    );
    assert_eq!(
        debugfs_cat(&upper, "/upper/etc/hostname"),
        "banger-test-vm\n"
    );
    assert_eq!(debugfs_cat(&work, "/from-guest"), "work-from-guest\n");

    // Second boot of the same VM with a renamed hostname: the upper layer
    // persisted (reused overlay workdir included) and the config is re-applied.
    let renamed = GuestConfig {
        hostname: "banger-test-vm2".into(),
        ..config
    };
    write_vm_initrd(&initramfs, &renamed, &initrd).unwrap();
    let run = run_qemu(
        &kernel.vmlinuz,
        &initrd,
        "console=ttyS0 panic=-1 loglevel=4",
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
        &d.join("console2.log"),
        Duration::from_secs(120),
    );
    eprintln!("second boot took {:?}", run.elapsed);
    let c = &run.console;
    assert!(
        !run.timed_out && c.contains("MARK-DONE"),
        "second boot failed:\n{c}"
    );
    assert_eq!(marker(c, "MARK-PREVIOUS:"), Some("guest-wrote-this"), "{c}");
    assert_eq!(marker(c, "MARK-HOSTNAME:"), Some("banger-test-vm2"));
    assert_eq!(marker(c, "MARK-ETC-HOSTNAME:"), Some("banger-test-vm2"));
    assert_eq!(marker(c, "MARK-WORK:"), Some("persistent-work-42"));
    assert_eq!(fingerprint(&base), base_before, "base image was modified");
}

#[test]
fn missing_disk_prints_reason_and_powers_off() {
    for tool in ["qemu-system-x86_64", "mkfs.ext4"] {
        if !common::have(tool) {
            banger_testkit::skip_or_fail(format!("{tool} not installed"));
            return;
        }
    }
    let Some(kernel) = common::debian_kernel() else {
        return;
    };
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
    let rootfs = d.join("rootfs");
    common::busybox_rootfs(&rootfs, "#!/bin/sh\necho SHOULD-NOT-RUN\n");
    let base = d.join("base.ext4");
    mkfs_ext4(
        &base,
        32 << 20,
        &Ext4Options {
            populate_from: Some(&rootfs),
            ..Default::default()
        },
    )
    .unwrap();
    let initrd = d.join("vm.initrd");
    let config = GuestConfig {
        hostname: "lonely".into(),
        ..GuestConfig::default()
    };
    write_vm_initrd(&initramfs, &config, &initrd).unwrap();
    // Only vda is attached: /init must report the missing upper disk and power off.
    let run = run_qemu(
        &kernel.vmlinuz,
        &initrd,
        "console=ttyS0 panic=-1 loglevel=4 banger.wait=2",
        &[Disk {
            path: &base,
            read_only: true,
        }],
        "02:fc:ac:1e:00:08",
        &d.join("console.log"),
        Duration::from_secs(120),
    );
    let c = &run.console;
    assert!(!run.timed_out, "VM did not power off:\n{c}");
    assert!(
        c.contains("banger-init: FATAL: overlay upper disk /dev/vdb did not appear within 2s"),
        "console:\n{c}"
    );
    assert!(c.contains("banger-init: powering off"), "console:\n{c}");
    assert!(!c.contains("Kernel panic"), "console:\n{c}");
    assert!(!c.contains("SHOULD-NOT-RUN"));
    eprintln!("failure path powered off after {:?}", run.elapsed);
}
