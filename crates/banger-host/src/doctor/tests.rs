//! Doctor tests: every warn/fail carries a fix, and individual checks notice
//! real problems.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use super::*;

fn test_paths(root: &Path) -> Paths {
    Paths {
        config_dir: root.join("config"),
        state_dir: root.join("state"),
        cache_dir: root.join("cache"),
        runtime_dir: root.join("run"),
        home_dir: None,
    }
}

fn default_config(paths: &Paths) -> Config {
    let env = |name: &str| (name == "HOME").then(|| "/home/test".to_owned());
    banger_config::LoadedConfig::from_parts(paths, None, &env)
        .expect("defaults")
        .config
}

#[test]
fn every_warning_and_failure_has_a_fix() {
    let temp = tempfile::tempdir().expect("tempdir");
    let paths = test_paths(temp.path());
    let mut config = default_config(&paths);
    config.qemu_bin = PathBuf::from("no-such-qemu");
    config.firecracker_bin = PathBuf::from("/no/such/firecracker");
    let checks = run(&paths, &config);
    let names: Vec<&str> = checks.iter().map(|check| check.name).collect();
    for expected in [
        "kvm",
        "vmm",
        "firecracker",
        "qemu",
        "vhost-device-vsock",
        "e2fsprogs",
        "busybox-static",
        "tun",
        "nftables",
        "ip-forward",
        "bridge-permissions",
        "disk-space",
        "config-dir",
        "state-dir",
        "cache-dir",
        "runtime-dir",
    ] {
        assert!(
            names.contains(&expected),
            "missing check {expected}: {names:?}"
        );
    }
    for check in &checks {
        if check.status != Status::Pass {
            assert!(
                check.fix.as_deref().is_some_and(|fix| !fix.is_empty()),
                "{check:?}"
            );
        }
    }
    let qemu = checks
        .iter()
        .find(|check| check.name == "qemu")
        .expect("qemu check");
    assert_eq!(qemu.status, Status::Fail);
    assert!(any_failed(&checks));
}

#[test]
fn unwritable_directory_fails_with_the_variable_to_change() {
    let temp = tempfile::tempdir().expect("tempdir");
    let blocker = temp.path().join("file");
    fs_err::write(&blocker, b"").expect("file");
    let mut paths = test_paths(temp.path());
    paths.cache_dir = blocker.join("cache");
    let checks = system::xdg_dir_checks(&paths);
    let cache = checks
        .iter()
        .find(|check| check.name == "cache-dir")
        .expect("cache check");
    assert_eq!(cache.status, Status::Fail, "{cache:?}");
    assert!(
        cache
            .fix
            .as_deref()
            .is_some_and(|fix| fix.contains("BANGER_CACHE_DIR")),
        "{cache:?}"
    );
    let state = checks
        .iter()
        .find(|check| check.name == "state-dir")
        .expect("state check");
    assert_eq!(state.status, Status::Pass, "{state:?}");
    let mode = fs_err::metadata(&paths.state_dir)
        .expect("created")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);
}

#[test]
fn forced_firecracker_without_usable_kvm_fails() {
    let verdict = KvmVerdict {
        accessible: true,
        probe_ran: true,
        can_run_guests: false,
        detail: "pvm".into(),
    };
    let temp = tempfile::tempdir().expect("tempdir");
    let mut config = default_config(&test_paths(temp.path()));
    config.vmm = banger_config::VmmChoice::Firecracker;
    let check = vmm_check(&config, &verdict, true);
    assert_eq!(check.status, Status::Fail);
    assert!(check.detail.contains("pvm"), "{check:?}");
}

#[test]
fn ip_forward_states() {
    let on = system::ip_forward_verdict(Ok(true), false);
    assert_eq!(on.status, Status::Pass, "{on:?}");
    let off_root = system::ip_forward_verdict(Ok(false), true);
    assert_eq!(off_root.status, Status::Pass, "{off_root:?}");
    assert!(off_root.detail.contains("--nat"), "{off_root:?}");
    let off_user = system::ip_forward_verdict(Ok(false), false);
    assert_eq!(off_user.status, Status::Warn, "{off_user:?}");
    assert!(
        off_user
            .fix
            .as_deref()
            .is_some_and(|fix| fix.contains("net.ipv4.ip_forward=1")),
        "{off_user:?}"
    );
    let denied = crate::net::firewall::FirewallError::Forwarding {
        action: "read",
        path: "/proc/sys/net/ipv4/ip_forward".into(),
        source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
    };
    let unreadable = system::ip_forward_verdict(Err(denied), true);
    assert_eq!(unreadable.status, Status::Warn, "{unreadable:?}");
    assert!(
        unreadable.detail.ends_with(": permission denied"),
        "the cause is shown: {unreadable:?}"
    );
    assert!(unreadable.fix.is_some(), "{unreadable:?}");
}

#[test]
fn qemu_major_reads_the_version_line() {
    assert_eq!(
        qemu_major("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)"),
        Some(7)
    );
    assert_eq!(
        qemu_major("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)"),
        Some(10)
    );
    assert_eq!(qemu_major("version unknown"), None);
}
