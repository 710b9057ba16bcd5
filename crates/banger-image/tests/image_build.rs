//! Builds banger's default Debian image with `image_build::build_debian_image`
//! (mmdebstrap; needs root and a Debian mirror) and boots it ONCE under QEMU
//! TCG through the banger boot chain (cached initramfs and modules disk, per-VM
//! config initrd, sparse upper disk, work disk cloned from the work seed), then
//! logs in from the host over real SSH through a QEMU user-mode port forward
//! and checks the image: tools present, work seed on /root, hostname applied,
//! sshd serving the injected host key (StrictHostKeyChecking), no baked-in host
//! keys, keys-only root login, a getty on the serial console.
//!
//! The built image is cached in `<cache>/test-images/image-build-<key>/`, keyed
//! by the package list and the customisation version, so only the first run
//! pays for the build (~2-3 min cold). Boot to SSH takes ~30-60 s under TCG.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use banger_image::artifacts::{DEFAULT_CMDLINE, prepare_boot_artifacts};
use banger_image::guest_config::{GuestConfig, NetworkConfig, SshHostKey, write_vm_initrd};
use banger_image::image_build::{
    self, BuildMode, DEFAULT_PACKAGES, ImageBuildError, ImageBuildSpec, build_debian_image,
};
use banger_image::initramfs::DEFAULT_BUSYBOX;
use banger_image::modules_disk::{Ext4Options, mkfs_ext4};
use common::Disk;

const CACHE_PREFIX: &str = "image-build-";

/// True when this host can build the image; otherwise `skip_or_fail`.
fn can_build() -> bool {
    if !common::is_root() {
        banger_testkit::skip_or_fail("building the image in root mode needs root");
        return false;
    }
    for tool in ["mmdebstrap", "mkfs.ext4", "du"] {
        if !common::have(tool) {
            banger_testkit::skip_or_fail(format!("{tool} not installed"));
            return false;
        }
    }
    true
}

/// The cached image directory (rootfs.ext4 + work-seed.ext4), built on first use.
fn cached_image() -> Option<PathBuf> {
    let packages = image_build::parse_package_list(DEFAULT_PACKAGES, "built-in").unwrap();
    let key = image_build::image_key(image_build::DEFAULT_SUITE, &packages);
    let base = common::cache_dir().join("test-images");
    let dir = base.join(format!("{CACHE_PREFIX}{key}"));
    if dir.join("rootfs.ext4").exists() && dir.join("work-seed.ext4").exists() {
        return Some(dir);
    }
    if !can_build() {
        return None;
    }
    fs_err::create_dir_all(&base).unwrap();
    for entry in fs_err::read_dir(&base).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with(CACHE_PREFIX) && path != dir {
            let _ = fs_err::remove_dir_all(&path);
        }
    }
    let scratch = tempfile::tempdir_in(&base).unwrap();
    let out = scratch.path().join("image");
    let log = scratch.path().join("build.log");
    let mut stages = Vec::new();
    let result = build_debian_image(
        &ImageBuildSpec::default(),
        &out,
        &common::cache_dir(),
        &log,
        &mut |stage, msg| {
            eprintln!("  build: [{stage}] {msg}");
            stages.push(stage.to_owned());
        },
    );
    let built = match result {
        Ok(b) => b,
        Err(ImageBuildError::Mmdebstrap { tail, .. })
            if [
                "Failed to fetch",
                "Temporary failure resolving",
                "Could not connect",
            ]
            .iter()
            .any(|m| tail.contains(m)) =>
        {
            banger_testkit::skip_or_fail(format!("no Debian mirror reachable: {tail}"));
            return None;
        }
        Err(e) => {
            let text = fs_err::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            panic!(
                "image build failed: {e}\nlog tail:\n{}",
                lines[lines.len().saturating_sub(30)..].join("\n")
            );
        }
    };
    eprintln!(
        "image built in {:?}: tree {} MiB, rootfs {} MiB (apparent), {} installed packages",
        built.elapsed,
        built.tree_bytes >> 20,
        built.rootfs_bytes >> 20,
        built.installed.len()
    );
    assert_eq!(built.mode, BuildMode::Root);
    assert_eq!(built.packages, packages);
    for stage in [
        "resolving packages",
        "downloading",
        "installing",
        "customising",
        "writing rootfs.ext4",
        "writing work-seed.ext4",
        "done",
    ] {
        assert!(
            stages.iter().any(|s| s == stage),
            "no progress stage {stage}: {stages:?}"
        );
    }
    // Nothing but the two images is left in out_dir.
    let mut names: Vec<String> = fs_err::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["rootfs.ext4", "work-seed.ext4"]);
    assert!(
        built
            .installed
            .iter()
            .any(|p| p.starts_with("openssh-server="))
    );
    fs_err::rename(&out, &dir).unwrap();
    Some(dir)
}

fn debugfs(image: &Path, request: &str) -> String {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(request)
        .arg(image)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn failed_build_leaves_out_dir_and_cache_clean() {
    if !can_build() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let cache = dir.path().join("cache");
    let log = dir.path().join("build.log");
    // A file:// mirror that does not exist fails at apt-get update, seconds in.
    let spec = ImageBuildSpec {
        mirror: Some(format!("file://{}/no-mirror", dir.path().display())),
        ..Default::default()
    };
    let err = build_debian_image(&spec, &out, &cache, &log, &mut |_, _| {}).unwrap_err();
    assert!(matches!(err, ImageBuildError::Mmdebstrap { .. }), "{err}");
    assert!(
        err.to_string().contains(&log.display().to_string()),
        "{err}"
    );
    assert!(fs_err::metadata(&log).unwrap().len() > 0);
    assert_eq!(
        fs_err::read_dir(&out).unwrap().count(),
        0,
        "leftovers in out_dir"
    );
    let leftovers: Vec<_> = fs_err::read_dir(cache.join("apt-archives"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, [std::ffi::OsString::from("bookworm")]);

    // Invalid input is refused before anything is created.
    let extra = dir.path().join("extra.txt");
    fs_err::write(&extra, "git\n-o APT::Get::AllowUnauthenticated=1\n").unwrap();
    let spec = ImageBuildSpec {
        extra_packages_file: Some(extra),
        ..Default::default()
    };
    let out2 = dir.path().join("out2");
    let err = build_debian_image(&spec, &out2, &cache, &log, &mut |_, _| {}).unwrap_err();
    assert!(
        matches!(err, ImageBuildError::InvalidPackageName { line: 2, .. }),
        "{err}"
    );
    assert!(!out2.exists());
    let spec = ImageBuildSpec {
        suite: "bookworm;id".into(),
        ..Default::default()
    };
    let err = build_debian_image(&spec, &out2, &cache, &log, &mut |_, _| {}).unwrap_err();
    assert!(matches!(err, ImageBuildError::InvalidSuite { .. }), "{err}");
}

fn ssh(key: &Path, known_hosts: &Path, port: u16, command: &str) -> Output {
    Command::new("ssh")
        .args(["-F", "/dev/null", "-i"])
        .arg(key)
        .args(["-p", &port.to_string()])
        .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
        .args(["-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=10"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args(["-o", "LogLevel=ERROR", "root@127.0.0.1", command])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn field<'a>(out: &'a str, key: &str) -> Vec<&'a str> {
    out.lines()
        .filter_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .collect()
}

const CHECKS: &str = r#"
echo "host=$(hostname)"
for t in git python3 tmux sudo curl less ps ip ping modprobe; do command -v "$t" >/dev/null && echo "have=$t"; done
test -f /root/.bashrc && echo bashrc=yes
echo "sshdir=$(stat -c %a /root/.ssh)"
echo "rootfs=$(findmnt -n -o FSTYPE /)"
echo "work=$(findmnt -n -o SOURCE /root)"
for k in /etc/ssh/ssh_host_*; do echo "hostkey=${k##*/}"; done
sshd -T 2>/dev/null | grep -E '^(permitrootlogin|passwordauthentication|kbdinteractiveauthentication) ' | tr ' ' '=' | sed 's/^/sshd_/'
echo "fstab=$(grep -vc '^#' /etc/fstab)"
echo "getty=$(systemctl is-active serial-getty@ttyS0.service)"
echo "networkd=$(systemctl is-enabled systemd-networkd.service 2>&1)"
echo "ip=$(ip -4 -o addr show dev eth0 | tr -s ' ' | cut -d' ' -f4)"
echo "rootmode=$(stat -c '%a %u' /root)"
echo "image=$(grep customisation /etc/banger/image)"
echo "done=yes"
"#;

#[test]
fn built_image_boots_and_serves_ssh() {
    for tool in ["qemu-system-x86_64", "ssh", "ssh-keygen", "debugfs", "cp"] {
        if !common::have(tool) {
            banger_testkit::skip_or_fail(format!("{tool} not installed"));
            return;
        }
    }
    let Some(image) = cached_image() else { return };
    let rootfs = image.join("rootfs.ext4");
    let seed = image.join("work-seed.ext4");

    // Static checks on the images, without booting.
    let etc_ssh = debugfs(&rootfs, "ls /etc/ssh");
    assert!(
        !etc_ssh.contains("ssh_host_"),
        "host keys baked in: {etc_ssh}"
    );
    let root_dir = debugfs(&rootfs, "ls /root");
    assert!(
        !root_dir.contains(".bashrc"),
        "/root not emptied: {root_dir}"
    );
    let seed_ls = debugfs(&seed, "ls -l /");
    assert!(
        seed_ls.contains(".bashrc") && seed_ls.contains(".profile"),
        "{seed_ls}"
    );
    assert!(
        debugfs(&seed, "stat /").contains("Mode:  0700"),
        "work seed root is not 0700"
    );
    assert!(
        debugfs(&seed, "stat /.ssh").contains("Mode:  0700"),
        "{}",
        debugfs(&seed, "stat /.ssh")
    );

    let Some(kernel) = common::debian_kernel() else {
        return;
    };
    let cache = common::cache_dir();
    let boot = prepare_boot_artifacts(&cache, &kernel, Path::new(DEFAULT_BUSYBOX), false).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let upper = d.join("upper.ext4");
    mkfs_ext4(
        &upper,
        2 << 30,
        &Ext4Options {
            journal: true,
            ..Default::default()
        },
    )
    .unwrap();
    let work = d.join("work.ext4");
    let ok = Command::new("cp")
        .arg("--sparse=always")
        .arg(&seed)
        .arg(&work)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp work seed failed");

    let host_key_path = d.join("hostkey");
    common::ssh_keygen(&host_key_path, "root@img-vm");
    let host_key = SshHostKey {
        key_type: "ed25519".into(),
        private_key: fs_err::read_to_string(&host_key_path).unwrap(),
        public_key: fs_err::read_to_string(host_key_path.with_extension("pub")).unwrap(),
    };
    let client_key = d.join("client");
    common::ssh_keygen(&client_key, "test@host");
    let client_pub = fs_err::read_to_string(client_key.with_extension("pub")).unwrap();
    let port = common::free_port();
    let known_hosts = d.join("known_hosts");
    fs_err::write(
        &known_hosts,
        format!("[127.0.0.1]:{port} {}", host_key.public_key),
    )
    .unwrap();

    let mac = "02:fc:0a:00:02:0f";
    let config = GuestConfig {
        hostname: "img-vm".into(),
        network: Some(NetworkConfig {
            address: Ipv4Addr::new(10, 0, 2, 15),
            prefix_len: 24,
            gateway: Some(Ipv4Addr::new(10, 0, 2, 2)),
            dns: vec!["10.0.2.3".parse().unwrap()],
            mac: Some(mac.into()),
            iface: None,
            mtu: None,
        }),
        authorized_keys: vec![client_pub.trim().to_owned()],
        ssh_host_keys: vec![host_key],
        agent: None,
        auth_files: Vec::new(),
    };
    let initrd = d.join("vm.initrd");
    write_vm_initrd(&boot.initramfs, &config, &initrd).unwrap();

    let console = d.join("console.log");
    let mut qemu = common::spawn_qemu_usernet(
        &boot.vmlinuz,
        &initrd,
        &format!("{DEFAULT_CMDLINE} loglevel=4"),
        &[
            Disk {
                path: &rootfs,
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
                path: &boot.modules_disk,
                read_only: true,
            },
        ],
        mac,
        &console,
        port,
    );
    let show_console = || fs_err::read_to_string(&console).unwrap_or_default();

    // Poll until sshd accepts our key (hard limit: QEMU is killed on drop).
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last = String::new();
    loop {
        assert!(
            !qemu.exited(),
            "QEMU exited before SSH came up:\n{}",
            show_console()
        );
        assert!(
            Instant::now() < deadline,
            "no SSH login within 300 s (last: {last}):\n{}",
            show_console()
        );
        let out = ssh(&client_key, &known_hosts, port, "true");
        if out.status.success() {
            break;
        }
        last = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        std::thread::sleep(Duration::from_secs(2));
    }
    eprintln!("SSH login {:?} after QEMU start", qemu.started.elapsed());

    let out = ssh(&client_key, &known_hosts, port, CHECKS);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("guest report:\n{text}");
    assert!(
        out.status.success(),
        "checks failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(field(&text, "done"), ["yes"]);
    assert_eq!(field(&text, "host"), ["img-vm"]);
    let have = field(&text, "have");
    for t in [
        "git", "python3", "tmux", "sudo", "curl", "less", "ps", "ip", "ping", "modprobe",
    ] {
        assert!(have.contains(&t), "{t} missing in the guest");
    }
    assert_eq!(field(&text, "bashrc"), ["yes"]);
    assert_eq!(field(&text, "sshdir"), ["700"]);
    assert_eq!(field(&text, "rootfs"), ["overlay"]);
    assert_eq!(field(&text, "work"), ["/dev/vdc"]);
    // Only the injected key: the image carries none and the fallback unit did not run.
    assert_eq!(
        field(&text, "hostkey"),
        ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"]
    );
    assert_eq!(field(&text, "sshd_permitrootlogin"), ["without-password"]);
    assert_eq!(field(&text, "sshd_passwordauthentication"), ["no"]);
    assert_eq!(field(&text, "sshd_kbdinteractiveauthentication"), ["no"]);
    assert_eq!(field(&text, "fstab"), ["0"]);
    assert_eq!(field(&text, "networkd"), ["masked"]);
    assert_eq!(field(&text, "ip"), ["10.0.2.15/24"]);
    assert_eq!(field(&text, "getty"), ["active"]);
    assert_eq!(field(&text, "rootmode"), ["700 0"]);
    assert_eq!(
        field(&text, "image"),
        [format!(
            "customisation={}",
            image_build::CUSTOMISATION_VERSION
        )]
    );

    // Password logins are refused outright (no password prompt offered).
    let pw = Command::new("ssh")
        .args(["-F", "/dev/null", "-p", &port.to_string()])
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
        ])
        .args([
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args(["root@127.0.0.1", "true"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!pw.status.success());
    let pw_err = String::from_utf8_lossy(&pw.stderr);
    assert!(pw_err.contains("Permission denied (publickey)"), "{pw_err}");

    let _ = ssh(
        &client_key,
        &known_hosts,
        port,
        "systemctl poweroff --no-block",
    );
    let clean = qemu.wait_or_kill(Duration::from_secs(90));
    let c = show_console();
    assert!(c.contains("banger-init: switching root"), "{c}");
    assert!(
        c.contains("img-vm login:"),
        "no getty prompt on ttyS0:\n{c}"
    );
    assert!(clean, "guest did not power off within 90 s:\n{c}");
    eprintln!("boot + checks + poweroff took {:?}", qemu.started.elapsed());
}
